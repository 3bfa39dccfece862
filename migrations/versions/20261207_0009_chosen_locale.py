"""subscriptions.chosen_locale: the language a customer chose on the tracking page

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:00:00.000000

A nullable column beside `locale` (same size, a two-letter code): the watchlist keeps setting
`locale`, and the customer's own choice, when there is one, wins. Existing rows have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("chosen_locale", sa.String(length=2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("chosen_locale")
