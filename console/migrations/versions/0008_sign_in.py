"""Sign-in: users' session version (revocable sessions), the sign-in throttle

Revision ID: 0008
Revises: 0007_alerts
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_sign_in"
down_revision = "0007_alerts"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), server_default="1",
                                   nullable=False))
    op.create_table(
        "sign_in_throttles",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sign_in_throttles_last_failure_at", "sign_in_throttles",
                    ["last_failure_at"])


def downgrade():
    op.drop_index("ix_sign_in_throttles_last_failure_at", table_name="sign_in_throttles")
    op.drop_table("sign_in_throttles")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
