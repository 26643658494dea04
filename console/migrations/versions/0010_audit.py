"""Audit trail: who changed what, when (console users and API tokens), and sign-ins

Revision ID: 0010_audit
Revises: 0007_alerts
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_audit"
down_revision = "0009_token_limits"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_name", sa.String(length=100), nullable=False),
        sa.Column("actor_address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("target_type", sa.String(length=20), nullable=True),
        sa.Column("target_id", sa.String(length=100), nullable=True),
        sa.Column("job_ids", sa.Text(), nullable=True),
        sa.Column("job_count", sa.Integer(), nullable=True),
        sa.Column("value_before", sa.Text(), nullable=True),
        sa.Column("value_after", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_created", "audit_entries", ["created_at", "id"])
    op.create_index("ix_audit_tenant_created", "audit_entries", ["tenant_id", "created_at", "id"])
    op.create_index("ix_audit_actor_created", "audit_entries", ["actor_name", "created_at", "id"])
    op.create_index("ix_audit_action_created", "audit_entries", ["action", "created_at", "id"])


def downgrade():
    op.drop_table("audit_entries")
