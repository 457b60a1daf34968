"""phased rollouts: phases after the canary, soak time, health gate, schedule, phase log; target phase and activation time

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def rollout_columns() -> tuple[sa.Column, ...]:  # type: ignore[type-arg]
    """Fresh column objects each time (a Column belongs to one table)."""
    return (
        sa.Column("phases", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("soak_s", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("health_gate", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("phase", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("soak_until", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("phase_log", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("model_change_confirmed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("rollouts") as batch:
        for column in rollout_columns():
            batch.add_column(column)
    with op.batch_alter_table("rollout_targets") as batch:
        batch.add_column(sa.Column("phase", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("activated_at", sa.DateTime(), nullable=True))
    # Rollouts made before phases: the canary is phase 0 and everyone else phase 1.
    op.execute("UPDATE rollout_targets SET phase = CASE WHEN is_canary THEN 0 ELSE 1 END")
    op.execute("UPDATE rollouts SET phase = 1 WHERE state IN ('ROLLING', 'COMPLETED')")


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("rollout_targets") as batch:
        batch.drop_column("activated_at")
        batch.drop_column("phase")
    with op.batch_alter_table("rollouts") as batch:
        for column in reversed(rollout_columns()):
            batch.drop_column(column.name)
