"""lti: registrations, deployments, login states, launches, LTI users and contexts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TIME = sa.DateTime(timezone=True)
_STATUS = "status IN ('active', 'pending', 'disabled')"


def _registration(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["registration_id"],
        ["lti_registrations.id"],
        name=op.f(f"fk_{table}_registration_id_lti_registrations"),
    )


def upgrade() -> None:
    op.create_table(
        "lti_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("auth_login_url", sa.String(length=1024), nullable=False),
        sa.Column("auth_token_url", sa.String(length=1024), nullable=False),
        sa.Column("auth_audience", sa.String(length=1024), nullable=True),
        sa.Column("key_set_url", sa.String(length=1024), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.CheckConstraint(_STATUS, name=op.f("ck_lti_registrations_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_registrations")),
        sa.UniqueConstraint("issuer", "client_id", name=op.f("uq_lti_registrations_issuer_client_id")),
    )
    op.create_table(
        "lti_deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("decided_at", _TIME, nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.CheckConstraint(_STATUS, name=op.f("ck_lti_deployments_status")),
        _registration("lti_deployments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_deployments")),
        sa.UniqueConstraint(
            "registration_id", "deployment_id", name=op.f("uq_lti_deployments_registration_id_deployment_id")
        ),
    )
    op.create_table(
        "lti_login_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        _registration("lti_login_states"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_lti_login_states")),
    )
    op.create_index(op.f("ix_lti_login_states_expires_at"), "lti_login_states", ["expires_at"])
    op.create_table(
        "lti_launches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("message_type", sa.String(length=64), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=True),
        sa.Column("learner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("context_id", sa.String(length=255), nullable=True),
        sa.Column("course", sa.String(length=255), nullable=True),
        sa.Column("roles", _JSON, nullable=False),
        sa.Column("claims", _JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        _registration("lti_launches"),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_lti_launches_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_launches")),
    )
    op.create_index(op.f("ix_lti_launches_expires_at"), "lti_launches", ["expires_at"])
    op.create_table(
        "lti_users",
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("learner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
        _registration("lti_users"),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_lti_users_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("registration_id", "sub", name=op.f("pk_lti_users")),
    )
    op.create_index(op.f("ix_lti_users_learner_id"), "lti_users", ["learner_id"])
    op.create_table(
        "lti_contexts",
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("context_id", sa.String(length=255), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("course", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("memberships_url", sa.Text(), nullable=True),
        sa.Column("lineitems_url", sa.Text(), nullable=True),
        sa.Column("ags_scopes", _JSON, nullable=False),
        sa.Column("grade_sync", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("line_item_url", sa.Text(), nullable=True),
        sa.Column("roster_synced_at", _TIME, nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
        _registration("lti_contexts"),
        sa.PrimaryKeyConstraint("registration_id", "context_id", name=op.f("pk_lti_contexts")),
    )
    op.create_index("ix_lti_contexts_course", "lti_contexts", ["platform", "course"])


def downgrade() -> None:
    op.drop_index("ix_lti_contexts_course", table_name="lti_contexts")
    op.drop_table("lti_contexts")
    op.drop_index(op.f("ix_lti_users_learner_id"), table_name="lti_users")
    op.drop_table("lti_users")
    op.drop_index(op.f("ix_lti_launches_expires_at"), table_name="lti_launches")
    op.drop_table("lti_launches")
    op.drop_index(op.f("ix_lti_login_states_expires_at"), table_name="lti_login_states")
    op.drop_table("lti_login_states")
    op.drop_table("lti_deployments")
    op.drop_table("lti_registrations")
