"""The one dialect-specific statement alerting needs, for SQLite and PostgreSQL alike."""
from __future__ import annotations

from sqlalchemy import Connection, Table


def insert_unless_present(conn: Connection, table: Table, key_columns: list[str]):
    """``INSERT … ON CONFLICT (key) DO NOTHING``: a row another process stored first (by the
    key's UNIQUE index) is left alone, with no error; add ``.returning(…)`` to learn which."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=key_columns)
