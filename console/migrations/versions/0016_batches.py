"""Batches: the jobs of one queue_batch_jobs call, their counts as they end, their callbacks;
a batch's jobs indexed only once failed or cancelled

Revision ID: 0016_batches
Revises: 0014_rate_limits
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0016_batches"
down_revision = "0014_rate_limits"
branch_labels = None
depends_on = None
FAILURES = sa.text("batch_id IS NOT NULL AND status IN ('failed', 'cancelled')")


def upgrade():
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("on_complete", sa.Text(), nullable=True),
        sa.Column("on_success", sa.Text(), nullable=True),
        sa.Column("callback_job_ids", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_created", "batches", ["created_at", "id"])
    op.create_index("ix_batches_tenant_created", "batches", ["tenant_id", "created_at", "id"])
    # Every job of a batch in an index cost each of its status changes a B-tree write; the
    # batch's page needs its failed and cancelled jobs only.
    op.drop_index("ix_jobs_batch", table_name="jobs")
    op.create_index("ix_jobs_batch_failures", "jobs", ["batch_id", "id"],
                    sqlite_where=FAILURES, postgresql_where=FAILURES)


def downgrade():
    op.drop_index("ix_jobs_batch_failures", table_name="jobs")
    op.create_index("ix_jobs_batch", "jobs", ["batch_id", "id"],
                    sqlite_where=sa.text("batch_id IS NOT NULL"),
                    postgresql_where=sa.text("batch_id IS NOT NULL"))
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    op.drop_index("ix_batches_created", table_name="batches")
    op.drop_table("batches")
