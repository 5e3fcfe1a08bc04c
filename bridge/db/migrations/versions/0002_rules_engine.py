"""rules engine: tiers, prerequisites, approvals, audit log, course members, award provenance

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:59:44.344895
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from bridge.db.pseudonyms import new_pseudonym

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "course_members",
        sa.Column("learner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("course", sa.String(length=255), nullable=False),
        sa.Column("section", sa.String(length=255), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_course_members_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("learner_id", "course", name=op.f("pk_course_members")),
    )
    with op.batch_alter_table("course_members", schema=None) as batch_op:
        batch_op.create_index("ix_course_members_course", ["course", "learner_id"], unique=False)

    op.create_table(
        "approvals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("learner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("badge_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=16), server_default="", nullable=False),
        sa.Column("criteria_version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("course", sa.String(length=255), nullable=True),
        sa.Column("earned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("award_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f("ck_approvals_status")),
        sa.ForeignKeyConstraint(["award_id"], ["awards.id"], name=op.f("fk_approvals_award_id_awards")),
        sa.ForeignKeyConstraint(["badge_id"], ["badges.id"], name=op.f("fk_approvals_badge_id_badges")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_approvals_event_id_events")),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_approvals_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "learner_id", "badge_id", "tier", name=op.f("uq_approvals_learner_id_badge_id_tier")
        ),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index("ix_approvals_status", ["status", "id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("learner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("badge_id", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("award_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["award_id"], ["awards.id"], name=op.f("fk_audit_log_award_id_awards")),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_audit_log_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_learner_id", ["learner_id", "id"], unique=False)

    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "event_ids",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("points", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("course", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("earned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("granted_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_awards_badge_id", ["badge_id", "awarded_at"], unique=False)
        batch_op.create_index("ix_awards_course", ["course", "awarded_at"], unique=False)

    with op.batch_alter_table("badges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("criteria_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "tiers",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "prerequisites",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("requires_approval", sa.Boolean(), server_default=sa.text("(false)"), nullable=False)
        )
        batch_op.add_column(sa.Column("expires_after_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expires_on", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "definition",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("source", sa.String(length=8), server_default="file", nullable=False))

    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("pseudonym", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("leaderboard_opt_out", sa.Boolean(), server_default=sa.text("(false)"), nullable=False)
        )

    with op.batch_alter_table("progress", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("saturated", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(sa.Column("tier", sa.String(length=16), server_default="", nullable=False))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))

    _backfill()

    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.alter_column("event_ids", nullable=False)
        batch_op.alter_column("earned_at", nullable=False)
    with op.batch_alter_table("badges", schema=None) as batch_op:
        batch_op.alter_column("tiers", nullable=False)
        batch_op.alter_column("prerequisites", nullable=False)
        batch_op.alter_column("definition", nullable=False)
        batch_op.alter_column("criteria_since", nullable=False)
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.alter_column("pseudonym", nullable=False)


def _backfill() -> None:
    """Values for the rows 0001 wrote: what the new columns would have said of them."""
    connection = op.get_bind()
    one_event = (
        "jsonb_build_array(event_id)" if connection.dialect.name == "postgresql" else "json_array(event_id)"
    )
    connection.execute(
        sa.text(
            f"UPDATE awards SET earned_at = awarded_at,"
            f" event_ids = CASE WHEN event_id IS NULL THEN '[]' ELSE {one_event} END"
        )
    )
    connection.execute(
        sa.text(
            "UPDATE badges SET tiers = '[]', prerequisites = '[]', definition = '{}',"
            " criteria_since = created_at"
        )
    )
    learners = connection.execute(sa.text("SELECT id FROM learners")).scalars().all()
    for learner_id in learners:
        connection.execute(
            sa.text("UPDATE learners SET pseudonym = :pseudonym WHERE id = :id"),
            {"pseudonym": new_pseudonym(), "id": learner_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("progress", schema=None) as batch_op:
        batch_op.drop_column("saturated")
        batch_op.drop_column("started_at")
        batch_op.drop_column("tier")

    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.drop_column("leaderboard_opt_out")
        batch_op.drop_column("pseudonym")
        batch_op.drop_column("display_name")

    with op.batch_alter_table("badges", schema=None) as batch_op:
        batch_op.drop_column("source")
        batch_op.drop_column("definition")
        batch_op.drop_column("criteria_since")
        batch_op.drop_column("expires_on")
        batch_op.drop_column("expires_after_days")
        batch_op.drop_column("requires_approval")
        batch_op.drop_column("prerequisites")
        batch_op.drop_column("tiers")

    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.drop_index("ix_awards_course")
        batch_op.drop_index("ix_awards_badge_id")
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("reason")
        batch_op.drop_column("granted_by")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("earned_at")
        batch_op.drop_column("course")
        batch_op.drop_column("points")
        batch_op.drop_column("event_ids")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_learner_id")

    op.drop_table("audit_log")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_status")

    op.drop_table("approvals")
    with op.batch_alter_table("course_members", schema=None) as batch_op:
        batch_op.drop_index("ix_course_members_course")

    op.drop_table("course_members")
