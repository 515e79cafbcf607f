"""SQLA_JOBQUEUE_TEST_SERVER: a run that demands a kind of server never gets another."""

from __future__ import annotations

import pytest

from sqla_jobqueue.errors import JobQueueError
from sqla_jobqueue.testing.server import postgres_server, required_server_kind

URL = "postgresql://postgres@127.0.0.1:1/nowhere"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SQLA_JOBQUEUE_TEST_SERVER", "SQLA_JOBQUEUE_TEST_DATABASE_URL",
                     "DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    # A Docker address nothing answers on: docker_available() is False, quickly.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")


def test_unset_means_any(monkeypatch: pytest.MonkeyPatch) -> None:
    assert required_server_kind() is None
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_SERVER", " Embedded ")
    assert required_server_kind() == "embedded"


def test_an_unknown_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_SERVER", "container")
    with pytest.raises(JobQueueError, match="url, docker, embedded"):
        required_server_kind()


def test_url_demanded_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_SERVER", "url")
    with pytest.raises(JobQueueError, match="neither SQLA_JOBQUEUE_TEST_DATABASE_URL"):
        required_server_kind()
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_DATABASE_URL", URL)
    assert required_server_kind() == "url"


@pytest.mark.parametrize("variable", ["SQLA_JOBQUEUE_TEST_DATABASE_URL", "DATABASE_URL"])
def test_embedded_demanded_while_a_url_is_set(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_SERVER", "embedded")
    monkeypatch.setenv(variable, URL)
    with pytest.raises(JobQueueError, match=f"\\${variable} names a server"):
        required_server_kind()


def test_docker_demanded_where_none_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLA_JOBQUEUE_TEST_SERVER", "docker")
    with pytest.raises(JobQueueError, match="no Docker engine answers"), postgres_server():
        pytest.fail("a server was yielded")
