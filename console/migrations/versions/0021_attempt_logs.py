"""Attempt logs: the lines each attempt logged, kept with it (job_attempt_lines)

Revision ID: 0021_attempt_logs
Revises: 0020_queue_function
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

revision = "0021_attempt_logs"
down_revision = "0020_queue_function"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_attempt_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("logger", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attempt_lines_job", "job_attempt_lines", ["job_id", "attempt", "id"])


def downgrade():
    op.drop_index("ix_attempt_lines_job", table_name="job_attempt_lines")
    op.drop_table("job_attempt_lines")
