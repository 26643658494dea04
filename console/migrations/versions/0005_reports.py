"""Reports (report_generator's CSV output); outbox indexes for the console's filters

Revision ID: 0005_reports
Revises: 0004_users
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_reports"
down_revision = "0004_users"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("report_type", sa.String(length=32), nullable=False),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reports_created", "reports", ["created_at", "id"], unique=False)
    op.create_index("ix_reports_tenant_created", "reports", ["tenant_id", "created_at", "id"],
                    unique=False)
    op.create_index("uq_reports_job_range", "reports", ["job_id", "range_start", "range_end"],
                    unique=True)

    # The outbox screen filters by tenant and channel and pages on (created_at, id).
    op.drop_index("ix_outbox_tenant_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_created", table_name="outbox_messages")
    op.create_index("ix_outbox_tenant_created", "outbox_messages",
                    ["tenant_id", "created_at", "id"], unique=False)
    op.create_index("ix_outbox_created", "outbox_messages", ["created_at", "id"], unique=False)
    op.create_index("ix_outbox_channel_created", "outbox_messages",
                    ["channel", "created_at", "id"], unique=False)
    op.create_index("ix_outbox_tenant_channel_created", "outbox_messages",
                    ["tenant_id", "channel", "created_at", "id"], unique=False)
    # A message is kept once (the sent-message record already ensured it for SMS and push).
    op.create_index("uq_outbox_tenant_message", "outbox_messages", ["tenant_id", "message_id"],
                    unique=True)


def downgrade():
    op.drop_index("uq_outbox_tenant_message", table_name="outbox_messages")
    op.drop_index("ix_outbox_tenant_channel_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_channel_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_tenant_created", table_name="outbox_messages")
    op.create_index("ix_outbox_tenant_created", "outbox_messages", ["tenant_id", "created_at"],
                    unique=False)
    op.create_index("ix_outbox_created", "outbox_messages", ["created_at"], unique=False)
    op.drop_index("uq_reports_job_range", table_name="reports")
    op.drop_index("ix_reports_tenant_created", table_name="reports")
    op.drop_index("ix_reports_created", table_name="reports")
    op.drop_table("reports")
