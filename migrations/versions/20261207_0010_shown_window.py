"""shipments.window_*: the delivery window a customer was last shown, for our published accuracy

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00.000000

Four nullable columns: the earliest and latest date of the window last shown in a customer email
or on the tracking page, its basis ("prior" or "lane") and when it was shown. `/metrics` counts,
per lane, the deliveries whose date fell inside it. Existing rows were never shown one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("window_earliest", sa.Date(), nullable=True))
        batch.add_column(sa.Column("window_latest", sa.Date(), nullable=True))
        batch.add_column(sa.Column("window_basis", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("window_shown_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("window_shown_at")
        batch.drop_column("window_basis")
        batch.drop_column("window_latest")
        batch.drop_column("window_earliest")
