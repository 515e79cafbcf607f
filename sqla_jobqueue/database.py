"""Database URLs: where they come from and how SQLAlchemy wants them spelled."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url

__all__ = ["ENVIRONMENT_VARIABLE", "sqlalchemy_url", "url_from_environment"]

ENVIRONMENT_VARIABLE = "DATABASE_URL"


def sqlalchemy_url(url: str | URL) -> URL:
    """Make ``url`` use the psycopg 3 driver.

    ``postgres://``, ``postgresql://`` and libpq-style URLs (as printed by most tools and
    by the embedded server) become ``postgresql+psycopg://``. Other drivers are kept.
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    parsed = make_url(text)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def url_from_environment() -> str | None:
    """The ``DATABASE_URL`` environment variable, when it is set and not empty."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return value or None
