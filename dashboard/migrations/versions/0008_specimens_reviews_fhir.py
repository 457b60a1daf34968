"""specimens (classifications.specimen_id), reviewers' reviews, FHIR pushes of final specimen reports

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("classifications") as batch:
        batch.add_column(sa.Column("specimen_id", sa.String(64), nullable=True))
    op.create_index("ix_classifications_specimen_id", "classifications", ["specimen_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "classification_id", sa.Integer(), sa.ForeignKey("classifications.id", ondelete="CASCADE"),
            nullable=False, unique=True,
        ),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("agrees", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("sampled", sa.Boolean(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_reviews_device_id", "reviews", ["device_id"])
    op.create_index("ix_reviews_reviewed_at", "reviews", ["reviewed_at"])
    op.create_table(
        "fhir_pushes",
        sa.Column("specimen_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_fhir_pushes_next_attempt_at", "fhir_pushes", ["next_attempt_at"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_fhir_pushes_next_attempt_at", table_name="fhir_pushes")
    op.drop_table("fhir_pushes")
    op.drop_index("ix_reviews_reviewed_at", table_name="reviews")
    op.drop_index("ix_reviews_device_id", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_classifications_specimen_id", table_name="classifications")
    with op.batch_alter_table("classifications") as batch:
        batch.drop_column("specimen_id")
