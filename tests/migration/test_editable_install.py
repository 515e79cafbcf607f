"""``pip install -e`` exposes sqla_jobqueue to type checkers.

setuptools installs a project in editable mode through a plain ``.pth`` file only when
every package sits at its natural path under one root (``package-dir = {"" = "."}``);
otherwise it installs an import-hook finder, which mypy and pyright cannot follow, and an
application that type-checks strictly reports ``Cannot find implementation or library
stub for module named "sqla_jobqueue"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from .typecheck import PACKAGE_ROOT

APP = """
from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, Session

from sqla_jobqueue import JobMixin, JobQueue


class Base(DeclarativeBase):
    pass


class Job(JobMixin, Base):
    __tablename__ = "jobs"


def enqueue(session: Session) -> None:
    JobQueue(session, Job).enqueue("send_receipt", {"order_id": 7})
"""


def test_this_editable_install_is_a_plain_path() -> None:
    """What ``pip install -e`` wrote into this environment (cheap; the slow test below
    builds a throw-away one)."""
    # Not metadata.distribution(): a sqla_jobqueue.egg-info left in the checkout (by
    # setuptools) may shadow what pip installed.
    editable = [
        distribution
        for distribution in metadata.distributions(name="sqla-jobqueue")
        if json.loads(distribution.read_text("direct_url.json") or "{}")
        .get("dir_info", {})
        .get("editable")
    ]
    if not editable:
        pytest.skip("sqla_jobqueue is not installed in editable mode in this environment")
    distribution = editable[0]
    files = distribution.files or []
    finders = [f.name for f in files if f.name.startswith("__editable__") and f.suffix == ".py"]
    assert finders == [], (
        f"setuptools installed an import-hook finder ({finders}) that type checkers cannot "
        "follow: keep every package at its natural path, or reinstall with pip install -e"
    )
    (pth,) = [f for f in files if f.suffix == ".pth"]
    paths = Path(str(distribution.locate_file(pth))).read_text().split()
    assert [Path(p).resolve() for p in paths] == [PACKAGE_ROOT]


@pytest.mark.slow
def test_mypy_strict_finds_the_package_of_a_fresh_editable_install(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE_ROOT / name, project / name)
    shutil.copytree(
        PACKAGE_ROOT / "sqla_jobqueue",
        project / "sqla_jobqueue",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (SQLAlchemy, Alembic) come from this environment's site-packages,
    # added as a plain path: .pth files found there (this environment's own install of
    # sqla_jobqueue) are not read, by Python or by mypy.
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "dependencies.pth").write_text("\n".join(sorted(here)) + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr

    app = tmp_path / "app"
    app.mkdir()
    (app / "models.py").write_text(textwrap.dedent(APP))
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python), "models.py"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "MYPYPATH"},
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr
