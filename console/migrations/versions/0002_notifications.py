"""Notifications: sent-message records (never send twice) and the SMS/push outbox

Revision ID: 0002_notifications
Revises: f874a38ff3b7
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_notifications"
down_revision = "f874a38ff3b7"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sent_messages",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "message_id"),
    )
    op.create_index("ix_sent_messages_job", "sent_messages", ["job_id"], unique=False)
    op.create_index("ix_sent_messages_sent_at", "sent_messages", ["sent_at"], unique=False)

    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_tenant_created", "outbox_messages", ["tenant_id", "created_at"],
                    unique=False)
    op.create_index("ix_outbox_created", "outbox_messages", ["created_at"], unique=False)


def downgrade():
    op.drop_index("ix_outbox_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_tenant_created", table_name="outbox_messages")
    op.drop_table("outbox_messages")
    op.drop_index("ix_sent_messages_sent_at", table_name="sent_messages")
    op.drop_index("ix_sent_messages_job", table_name="sent_messages")
    op.drop_table("sent_messages")
