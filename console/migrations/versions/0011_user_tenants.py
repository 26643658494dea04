"""Console users bound to tenants

Revision ID: 0011_user_tenants
Revises: 0007_alerts
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_user_tenants"
down_revision = "0010_audit"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_tenants",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("user_id", "tenant_id"),
    )


def downgrade():
    op.drop_table("user_tenants")
