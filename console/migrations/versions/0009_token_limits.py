"""API tokens that expire, and a request rate per token (its sliding window's count)

Revision ID: 0009_token_limits
Revises: 0007_alerts
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_token_limits"
down_revision = "0008_sign_in"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rate_window", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rate_used", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("rate_previous", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade():
    with op.batch_alter_table("api_tokens") as batch:
        for column in ("rate_previous", "rate_used", "rate_window", "rate_limit", "expires_at"):
            batch.drop_column(column)
