"""telemetry retention: per-minute and per-hour roll-ups of Life telemetry and the retention job's state

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ROLLUPS = ("telemetry_minute", "telemetry_hour")


def _rollup_table(name: str) -> None:
    """One roll-up table: means over a bucket per device, unique per (device, bucket)."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("cpu_percent", sa.Double(), nullable=False),
        sa.Column("memory_percent", sa.Double(), nullable=False),
        sa.Column("disk_percent", sa.Double(), nullable=False),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.Column("inference_ms_mean", sa.Double(), nullable=True),
        sa.Column("outbox_depth", sa.Double(), nullable=False),
        sa.Column("max_temperature_c", sa.Double(), nullable=True),
        sa.Column("max_outbox_depth", sa.Integer(), nullable=False),
        sa.UniqueConstraint("device_id", "bucket", name=f"uq_{name}_device_bucket"),
    )


def upgrade() -> None:
    """Apply this revision."""
    for name in ROLLUPS:
        _rollup_table(name)
    op.create_table(
        "retention_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rolled_up_to", sa.DateTime(), nullable=True),
        sa.Column("rolled_up_id", sa.Integer(), nullable=True),
        sa.Column("raw_pruned_before", sa.DateTime(), nullable=True),
        sa.Column("minute_pruned_before", sa.DateTime(), nullable=True),
        sa.Column("hour_pruned_before", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("retention_state")
    for name in reversed(ROLLUPS):
        op.drop_table(name)
