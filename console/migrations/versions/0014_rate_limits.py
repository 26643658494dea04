"""Rate limits: a tenant's starts per period, operators' limits on handlers, and the starts
they count

Revision ID: 0014_rate_limits
Revises: 0013_job_links
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_rate_limits"
down_revision = "0013_job_links"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable columns without a default: no table rewrite.
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("rate_limit_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rate_limit_period_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))
    # tier1's preset (console/jobs/limits.py) for its tenants stored before it existed: no
    # custom_settings could override it yet, so every one of them has the preset.
    op.execute("UPDATE tenants SET rate_limit_count = 60, rate_limit_period_seconds = 60 "
               "WHERE tier = 'tier1'")
    op.create_table(
        "handler_rate_limits",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("rate_limit_count", sa.Integer(), nullable=False),
        sa.Column("rate_limit_period_seconds", sa.Float(), nullable=False),
        sa.Column("rate_limit_burst", sa.Integer(), nullable=True),
        sa.Column("set_by", sa.String(length=100), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "rate_limit_starts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("starts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "started_at"),
    )


def downgrade():
    op.drop_table("rate_limit_starts")
    op.drop_table("handler_rate_limits")
    with op.batch_alter_table("tenants") as batch:
        for column in ("rate_limit_burst", "rate_limit_period_seconds", "rate_limit_count"):
            batch.drop_column(column)
