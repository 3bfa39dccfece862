"""intake_*: shop-platform webhooks (event ids seen, numbers per fulfillment, recent calls)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:30:00.000000

Three new tables and a wider shipments.watched_by ("woocommerce" is 11 characters). Going down
hands the intake's watches to the CLI (a reload never unwatches those either) before narrowing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.alter_column(
            "watched_by",
            existing_type=sa.String(length=10),
            type_=sa.String(length=16),
            existing_nullable=False,
            existing_server_default=sa.text("'cli'"),
        )
    op.create_table(
        "intake_events",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "event_id", name=op.f("pk_intake_events")),
    )
    op.create_index(op.f("ix_intake_events_received_at"), "intake_events", ["received_at"])
    op.create_table(
        "intake_numbers",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "reference", "number", name=op.f("pk_intake_numbers")),
    )
    op.create_table(
        "intake_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("topic", sa.String(length=60), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_calls")),
    )


def downgrade() -> None:
    op.drop_table("intake_calls")
    op.drop_table("intake_numbers")
    op.drop_index(op.f("ix_intake_events_received_at"), table_name="intake_events")
    op.drop_table("intake_events")
    op.execute("UPDATE shipments SET watched_by = 'cli' WHERE length(watched_by) > 10")
    with op.batch_alter_table("shipments") as batch:
        batch.alter_column(
            "watched_by",
            existing_type=sa.String(length=16),
            type_=sa.String(length=10),
            existing_nullable=False,
            existing_server_default=sa.text("'cli'"),
        )
