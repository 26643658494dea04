"""Scale with what is shown: the duration histogram by day; exact percentiles from the index

Revision ID: 0022_daily_duration_rollups
Revises: 0021_attempt_logs
Create Date: 2026-12-06

Found at 10,000,000 jobs (benchmarks/analytics.py and console_pages.py, issue 18):

- ``job_duration_rollups_daily``: the hourly histogram summed by UTC day, kept by the same
  writers (``RollupBatch``). A month's p95 or a tenant's month of daily charts read 720 hours
  × tenants × buckets of the hourly table (over half a million rows for one busy handler,
  ~250 ms on SQLite); by day it is 30 days and the hours at either end. Filled here from the
  hourly rows, so every figure reads the same before and after.
- ``ix_attempts_handler_duration_finished`` replaces ``ix_attempts_handler_duration``: the
  exact percentile counts and ranks the attempts of one duration bucket within a range; with
  ``finished_at`` in the index that is an index-only read, instead of a table read for every
  attempt in the bucket over all history (0.4–0.9 s at 11.6 million attempts).
"""
import sqlalchemy as sa
from alembic import op

revision = "0022_daily_duration_rollups"
down_revision = "0021_attempt_logs"
branch_labels = None
depends_on = None

COLUMNS = "tenant_id, handler, job_type, duration_bucket"


def upgrade():
    op.create_table(
        "job_duration_rollups_daily",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("duration_bucket", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_succeeded", sa.Integer(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "tenant_id", "handler", "job_type", "duration_bucket"),
    )
    if op.get_bind().dialect.name == "postgresql":
        day = "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:   # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        day = "substr(hour, 1, 10) || ' 00:00:00.000000'"
    op.execute(f"INSERT INTO job_duration_rollups_daily (day, {COLUMNS}, attempts, "
               f"attempts_succeeded, duration_ms_sum) SELECT {day}, {COLUMNS}, SUM(attempts), "
               f"SUM(attempts_succeeded), SUM(duration_ms_sum) FROM job_duration_rollups "
               f"GROUP BY {day}, {COLUMNS}")
    op.create_index("ix_daily_duration_rollups_handler", "job_duration_rollups_daily",
                    ["handler", "job_type", "day", "duration_bucket", "attempts",
                     "attempts_succeeded", "duration_ms_sum"])
    op.create_index("ix_daily_duration_rollups_tenant", "job_duration_rollups_daily",
                    ["tenant_id", "day", "duration_bucket", "attempts"])
    op.create_index("ix_attempts_handler_duration_finished", "job_attempts",
                    ["handler", "job_type", "duration_ms", "finished_at"])
    op.drop_index("ix_attempts_handler_duration", table_name="job_attempts")


def downgrade():
    op.create_index("ix_attempts_handler_duration", "job_attempts",
                    ["handler", "job_type", "duration_ms"])
    op.drop_index("ix_attempts_handler_duration_finished", table_name="job_attempts")
    op.drop_table("job_duration_rollups_daily")
