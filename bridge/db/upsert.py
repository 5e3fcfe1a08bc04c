"""INSERT ... ON CONFLICT for both dialects (the statements differ only by import)."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(dialect_name: str, table: Any) -> Any:
    dialect_insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    return dialect_insert(table).on_conflict_do_nothing()


def upsert(dialect_name: str, table: Any, key: list[str], *, exclude: set[str]) -> Any:
    """Insert, or on a conflict with ``key`` overwrite every column but ``exclude`` with the new values."""
    dialect_insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    statement = dialect_insert(table)
    updated = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in exclude}
    return statement.on_conflict_do_update(index_elements=key, set_=updated)
