"""shipments.watched_by: who decides a shipment is watched (the config's watchlist or the CLI)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:10:00.000000

Existing rows become "cli": nothing is unwatched by the upgrade, and the daemon's first watch
sync takes back every number its configuration lists. Rows left with no due time by
`notifier poll` (an old defect) are made due again, except those the policy gave up on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("watched_by", sa.String(length=10), server_default=sa.text("'cli'"), nullable=False)
        )
    # A shipment the daemon gave up on has a `gave_up` alert; one `notifier poll` stranded has
    # none. Due at its last poll: the daemon polls it once and the policy schedules it again.
    op.execute(
        sa.text(
            "UPDATE shipments SET next_poll_at = COALESCE(last_polled_at, created_at) "
            "WHERE active AND next_poll_at IS NULL AND retired_at IS NULL "
            "AND number NOT IN (SELECT subject FROM alerts WHERE kind = 'gave_up')"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_column("watched_by")
