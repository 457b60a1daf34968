"""alert thresholds per site set on the admin page, notifications of alerts (e-mail, webhook) with retries

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "alert_settings",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("alert_id", "channel", "target", name="uq_notification_alert_channel_target"),
    )
    op.create_index("ix_notification_due", "notifications", ["state", "next_attempt_at"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("notified", sa.Boolean(), nullable=False, server_default=sa.true()))
    # Alerts from before notifications existed are not sent now; new ones start unsent.
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("notified", existing_type=sa.Boolean(), server_default=sa.false())


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("notified")
    op.drop_index("ix_notification_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("alert_settings")
