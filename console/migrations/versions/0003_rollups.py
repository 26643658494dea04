"""Hourly rollups of jobs and attempts, of errors by type; attempts by duration; jobs by change

Revision ID: 0003_rollups
Revises: 0002_notifications
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_rollups"
down_revision = "0002_notifications"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_succeeded", sa.Integer(), nullable=False),
        sa.Column("attempts_failed", sa.Integer(), nullable=False),
        sa.Column("attempts_timed_out", sa.Integer(), nullable=False),
        sa.Column("attempts_lost", sa.Integer(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.Column("wait_ms_sum", sa.Float(), nullable=False),
        sa.Column("jobs_created", sa.Integer(), nullable=False),
        sa.Column("jobs_completed", sa.Integer(), nullable=False),
        sa.Column("jobs_failed", sa.Integer(), nullable=False),
        sa.Column("jobs_cancelled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "tenant_id", "handler", "job_type"),
    )
    op.create_index("ix_rollups_tenant_hour", "job_rollups", ["tenant_id", "hour"])
    op.create_index("ix_rollups_handler_hour", "job_rollups", ["handler", "hour"])
    op.create_table(
        "job_duration_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("duration_bucket", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_succeeded", sa.Integer(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "tenant_id", "handler", "job_type", "duration_bucket"),
    )
    op.create_index("ix_duration_rollups_handler", "job_duration_rollups",
                    ["handler", "job_type", "hour", "duration_bucket", "attempts",
                     "attempts_succeeded", "duration_ms_sum"])
    op.create_index("ix_duration_rollups_tenant", "job_duration_rollups",
                    ["tenant_id", "hour", "duration_bucket", "attempts"])
    op.create_table(
        "job_totals",
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("duration_bucket", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("attempts_failed", sa.BigInteger(), nullable=False),
        sa.Column("attempts_timed_out", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.Column("jobs_created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("handler", "job_type", "duration_bucket"),
    )
    op.create_table(
        "error_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("hour", "tenant_id", "handler", "job_type", "error_type"),
    )
    op.create_index("ix_error_rollups_tenant_hour", "error_rollups", ["tenant_id", "hour"])
    op.create_index("ix_error_rollups_handler_hour", "error_rollups",
                    ["handler", "job_type", "hour"])
    op.create_table(
        "queue_depth_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("waiting_sum", sa.BigInteger(), nullable=False),
        sa.Column("waiting_max", sa.Integer(), nullable=False),
        sa.Column("running_sum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "tenant_id"),
    )
    op.create_index("ix_attempts_handler_duration", "job_attempts",
                    ["handler", "job_type", "duration_ms"])
    op.create_index("ix_jobs_updated", "jobs", ["updated_at", "id"])


def downgrade():
    op.drop_table("queue_depth_rollups")
    op.drop_index("ix_jobs_updated", table_name="jobs")
    op.drop_index("ix_attempts_handler_duration", table_name="job_attempts")
    op.drop_index("ix_error_rollups_handler_hour", table_name="error_rollups")
    op.drop_index("ix_error_rollups_tenant_hour", table_name="error_rollups")
    op.drop_table("error_rollups")
    op.drop_table("job_totals")
    op.drop_index("ix_duration_rollups_tenant", table_name="job_duration_rollups")
    op.drop_index("ix_duration_rollups_handler", table_name="job_duration_rollups")
    op.drop_table("job_duration_rollups")
    op.drop_index("ix_rollups_handler_hour", table_name="job_rollups")
    op.drop_index("ix_rollups_tenant_hour", table_name="job_rollups")
    op.drop_table("job_rollups")
