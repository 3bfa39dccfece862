"""page_wordings: the other language's page, kept for the customer tracking page

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:15:00.000000

The Japanese detail page is read only when a change is announced to a Japanese customer; the
tracking page shows that customer the same wording afterwards. One row per shipment and
language, replaced at each read. A new table only: nothing existing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "page_wordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=2), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_page_wordings_shipment_id_shipments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_wordings")),
        sa.UniqueConstraint("shipment_id", "locale", name=op.f("uq_page_wordings_shipment_id_locale")),
    )


def downgrade() -> None:
    op.drop_table("page_wordings")
