"""shipment_suppressions: unsubscribing from one parcel's mail

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:00:00.000000

The web face's unsubscribe page offers "this parcel" beside "all mail": an (address, tracking
number) the outbox skips at send time. A new table only: nothing existing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shipment_suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_suppressions")),
        sa.UniqueConstraint("email", "number", name=op.f("uq_shipment_suppressions_email_number")),
    )


def downgrade() -> None:
    op.drop_table("shipment_suppressions")
