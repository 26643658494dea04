"""Alerts: rules, the alerts they raise (history), and the notification jobs each queued

Revision ID: 0007_alerts
Revises: 0006_api_tokens
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_alerts"
down_revision = "0006_api_tokens"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=True),
        sa.Column("handler", sa.String(length=100), nullable=True),
        sa.Column("limit_name", sa.String(length=40), nullable=True),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("notify_operators", sa.Boolean(), nullable=False),
        sa.Column("notify_tenant", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("muted_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seed_key", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seed_key"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("subject_key", sa.String(length=80), nullable=False),
        sa.Column("open_key", sa.String(length=120), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recommendation", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("notice_due", sa.String(length=16), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index("ix_alerts_fired", "alerts", ["fired_at", "id"], unique=False)
    op.create_index("ix_alerts_state_fired", "alerts", ["state", "fired_at", "id"], unique=False)
    op.create_index("ix_alerts_tenant_fired", "alerts", ["tenant_id", "fired_at", "id"],
                    unique=False)
    op.create_index("ix_alerts_rule_subject_fired", "alerts",
                    ["rule_id", "subject_key", "fired_at"], unique=False)
    op.create_index("ix_alerts_notice_due", "alerts", ["notice_due"], unique=False)
    op.create_table(
        "alert_notifications",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=500), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_alert_notifications_alert", "alert_notifications",
                    ["alert_id", "queued_at"], unique=False)


def downgrade():
    op.drop_index("ix_alert_notifications_alert", table_name="alert_notifications")
    op.drop_table("alert_notifications")
    op.drop_index("ix_alerts_notice_due", table_name="alerts")
    op.drop_index("ix_alerts_rule_subject_fired", table_name="alerts")
    op.drop_index("ix_alerts_tenant_fired", table_name="alerts")
    op.drop_index("ix_alerts_state_fired", table_name="alerts")
    op.drop_index("ix_alerts_fired", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
