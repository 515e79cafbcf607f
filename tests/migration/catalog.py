"""What a schema holds, read from PostgreSQL's catalogue, to compare two databases."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

__all__ = ["SNAPSHOT", "snapshot"]

SNAPSHOT = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
               column_default
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1""",
    "storage": """
        SELECT relname, reloptions FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid), obj_description(oid, 'pg_proc'),
               proacl::text
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1""",
    "version": "SELECT version_num FROM alembic_version",
}
"""One query per kind of object of the ``public`` schema, each row all that defines one."""


def snapshot(url: URL) -> dict[str, list[tuple[object, ...]]]:
    """The rows of each query of :data:`SNAPSHOT` in the database at ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name: [tuple(row) for row in connection.execute(text(query))]
                for name, query in SNAPSHOT.items()
            }
    finally:
        engine.dispose()
