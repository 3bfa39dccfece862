"""request_budget, instances, work_leases: several instances on one database

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:05:00.000000

The Japan Post request budget shared by every instance, a heartbeat row per running instance,
and the lease that gives the daily work one owner. New tables only: nothing existing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_budget",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("next_slot", sa.DateTime(), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("pause_reason", sa.String(length=200), nullable=True),
        sa.Column("paused_by", sa.String(length=200), nullable=True),
        sa.Column("last_grant", sa.String(length=250), nullable=True),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_request_budget")),
    )
    op.create_table(
        "instances",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_instances")),
    )
    op.create_table(
        "work_leases",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_work_leases")),
    )


def downgrade() -> None:
    op.drop_table("work_leases")
    op.drop_table("instances")
    op.drop_table("request_budget")
