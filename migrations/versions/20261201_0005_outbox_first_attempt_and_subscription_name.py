"""outbox.first_attempt_at (the Date header's time) and subscriptions.name (the greeting name)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 10:10:00.000000

Both nullable: existing messages get their Date fixed at their first attempt like new ones,
and existing subscriptions have no name until the configuration or an import gives one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_attempt_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("name")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("first_attempt_at")
