"""lti grade posts: the points last sent to each LMS gradebook's "Badge points" column

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lti_grade_posts",
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("context_id", sa.String(length=255), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="posted", nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id", "context_id"],
            ["lti_contexts.registration_id", "lti_contexts.context_id"],
            name=op.f("fk_lti_grade_posts_registration_id_lti_contexts"),
        ),
        sa.PrimaryKeyConstraint("registration_id", "context_id", "sub", name=op.f("pk_lti_grade_posts")),
    )


def downgrade() -> None:
    op.drop_table("lti_grade_posts")
