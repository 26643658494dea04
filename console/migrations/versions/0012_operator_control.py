"""Operator control: pauses, and what runners publish with their heartbeat

Revision ID: 0012_operator_control
Revises: 0011_user_tenants
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_operator_control"
down_revision = "0011_user_tenants"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pauses",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("handler", sa.String(length=100), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("paused_by", sa.String(length=100), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resumed_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("runners") as batch:
        batch.add_column(sa.Column("handlers", sa.Text(), nullable=True))
        batch.add_column(sa.Column("busy_threads", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("jobs_held", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("claims_per_minute", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("released_job_ids", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lost_job_ids", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("runners") as batch:
        for column in ("lost_job_ids", "released_job_ids", "stopped_at", "claims_per_minute", "jobs_held",
                       "busy_threads", "handlers"):
            batch.drop_column(column)
    op.drop_table("pauses")
