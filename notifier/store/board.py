"""Operations board reads: counts, queue depth, the latest poll error and last sending."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, func, select

from notifier.core.views import (
    WAITING_STATES,
    OpsCounts,
)
from notifier.store.database import Database
from notifier.store.orm import (
    Alert,
    OutboxMessage,
    Shipment,
)


class Board:
    """Read-only counts and facts for the status board, health and metrics."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ops_counts(self, *, now: dt.datetime, overdue_before: dt.datetime) -> OpsCounts:
        """Shipments by stage with their due and overdue counts, the outbox by state and its
        oldest waiting message, and the open alerts: four grouped statements in one read,
        whatever the number of shipments and messages."""
        async with self._db.reads() as session:
            shipments = await session.execute(
                select(
                    Shipment.stage,
                    func.count(),
                    func.sum(case((Shipment.next_poll_at <= now, 1), else_=0)),
                    func.sum(case((Shipment.next_poll_at <= overdue_before, 1), else_=0)),
                )
                .where(Shipment.active.is_(True))
                .group_by(Shipment.stage)
            )
            stages: dict[str, int] = {}
            due = overdue = 0
            for stage, count, stage_due, stage_overdue in shipments:
                stages[str(stage)] = int(count)
                due += int(stage_due or 0)
                overdue += int(stage_overdue or 0)
            # Counted from the (state, next_attempt_at) index alone; the oldest waiting message
            # reads only the rows of the waiting states, not the sent history with its bytes.
            messages = await session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            outbox = {str(state): int(count) for state, count in messages}
            oldest = (
                await session.execute(
                    select(func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.state.in_(sorted(WAITING_STATES))
                    )
                )
            ).scalar_one()
            open_alerts = (
                await session.execute(select(func.count()).where(Alert.acknowledged_at.is_(None)))
            ).scalar_one()
            return OpsCounts(
                stages=stages,
                due=due,
                overdue=overdue,
                outbox=outbox,
                oldest_waiting=oldest,
                open_alerts=int(open_alerts),
            )

    async def count_active(self) -> int:
        async with self._db.reads() as session:
            result = await session.execute(
                select(func.count()).select_from(Shipment).where(Shipment.active.is_(True))
            )
            return int(result.scalar_one())

    async def latest_poll_error(self) -> str | None:
        """The error of the most recent failed poll still unresolved, if any."""
        async with self._db.reads() as session:
            return (
                await session.execute(
                    select(Shipment.last_error)
                    .where(Shipment.consecutive_failures > 0, Shipment.last_error.is_not(None))
                    .order_by(Shipment.last_polled_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def outbox_depth(self) -> dict[str, int]:
        async with self._db.reads() as session:
            rows = await session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            return {state: int(count) for state, count in rows}

    async def last_sent_at(self) -> dt.datetime | None:
        """When the latest message went out (None: never); a send ends an SMTP pause."""
        async with self._db.reads() as session:
            return (await session.execute(select(func.max(OutboxMessage.sent_at)))).scalar_one()
