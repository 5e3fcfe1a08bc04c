"""INSERT ... ON CONFLICT DO NOTHING for both dialects (the statement differs only by import)."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(dialect_name: str, table: Any) -> Any:
    dialect_insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    return dialect_insert(table).on_conflict_do_nothing()
