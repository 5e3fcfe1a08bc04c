"""The database layer: SQLAlchemy 2.0 models, engine set-up, transactions and Alembic migrations."""

from bridge.db.engine import Database

__all__ = ["Database"]
