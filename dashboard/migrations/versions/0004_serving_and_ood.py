"""devices' serving info (runtime, device, precision) and NO_MODEL reason; results' out-of-distribution fields

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("state_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("runtime", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("inference_device", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("precision", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("serving_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("status_changes") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("classifications") as batch:
        batch.add_column(sa.Column("out_of_distribution", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("ood_score", sa.Double(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("classifications") as batch:
        batch.drop_column("ood_score")
        batch.drop_column("out_of_distribution")
    with op.batch_alter_table("status_changes") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("devices") as batch:
        for column in ("serving_at", "precision", "inference_device", "runtime", "state_reason"):
            batch.drop_column(column)
