"""Workflows on jobs: the batch a job belongs to, the jobs it depends on

Revision ID: 0013_job_links
Revises: 0012_operator_control
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_job_links"
down_revision = "0012_operator_control"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable columns without a default: no table rewrite, however many jobs there are.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("depends_on", sa.Text(), nullable=True))
        batch.add_column(sa.Column("on_dependency_failure", sa.String(length=8), nullable=True))
    op.create_index("ix_jobs_batch", "jobs", ["batch_id", "id"],
                    sqlite_where=sa.text("batch_id IS NOT NULL"),
                    postgresql_where=sa.text("batch_id IS NOT NULL"))


def downgrade():
    op.drop_index("ix_jobs_batch", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("on_dependency_failure", "depends_on", "batch_id"):
            batch.drop_column(column)
