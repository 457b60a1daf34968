"""received_at (ingest's clock) beside sent_at (the device's) on telemetry, warnings and update events

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("telemetry", "warnings", "update_events")


def upgrade() -> None:
    """Apply this revision."""
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("received_at", sa.DateTime(), nullable=True))
        # Rows stored before ingest kept its own time: the device's is the best there is.
        op.execute(f"UPDATE {table} SET received_at = sent_at")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("received_at", existing_type=sa.DateTime(), nullable=False)


def downgrade() -> None:
    """Revert this revision."""
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("received_at")
