"""API key scopes: read, write or admin, optionally bound to one platform, with expiry and last use

Keys made before this revision become ``admin`` keys of every platform that never expire: under
``api_access = "write"`` they could already do everything, so nobody loses access by upgrading (and
``api_access`` still caps them all). Operators narrow them by making new keys and revoking the old.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        # The server default fills the existing rows only; it is dropped below, so that a key made later
        # always names its scope.
        batch_op.add_column(sa.Column("scope", sa.String(length=8), server_default="admin", nullable=False))
        batch_op.add_column(sa.Column("platform", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.alter_column("scope", existing_type=sa.String(length=8), server_default=None)
        batch_op.create_check_constraint("scope", "scope IN ('read', 'write', 'admin')")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_constraint("ck_api_keys_scope", type_="check")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("platform")
        batch_op.drop_column("scope")
