"""Runners publish how far their clock is off the database's

Revision ID: 0019_runner_clock
Revises: 0018_webhooks
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0019_runner_clock"
down_revision = "0018_webhooks"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("runners") as batch:
        batch.add_column(sa.Column("clock_skew_seconds", sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table("runners") as batch:
        batch.drop_column("clock_skew_seconds")
