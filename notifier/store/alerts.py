"""Operator alerts: raised (alone or inside another unit of work), listed, resolved, acknowledged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.views import (
    AlertView,
)
from notifier.store.database import Database
from notifier.store.orm import (
    Alert,
)
from notifier.store.rows import (
    alert_view_of,
)


class Alerts:
    """The alerts aggregate; raise_in joins a caller's transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def raise_in(
        self,
        session: AsyncSession,
        kind: str,
        message: str,
        now: dt.datetime,
        subject: str,
        shipment_id: int | None,
    ) -> None:
        statement = (
            self._db.insert(Alert)
            .values(
                kind=kind,
                subject=subject,
                shipment_id=shipment_id,
                message=message,
                first_seen_at=now,
                last_seen_at=now,
                count=1,
            )
            .on_conflict_do_update(
                index_elements=["kind", "subject"],
                index_where=text("acknowledged_at IS NULL"),
                set_={"message": message, "last_seen_at": now, "count": Alert.count + 1},
            )
        )
        await session.execute(statement)

    async def raise_alert(
        self, kind: str, message: str, *, now: dt.datetime, subject: str = "", shipment_id: int | None = None
    ) -> None:
        """Record an operator alert; an open alert of the same kind and subject counts up instead."""
        async with self._db.write() as session:
            await self.raise_in(session, kind, message, now, subject, shipment_id)

    async def alerts(self, *, include_acknowledged: bool = False) -> list[AlertView]:
        async with self._db.reads() as session:
            query = select(Alert).order_by(Alert.last_seen_at.desc(), Alert.id.desc())
            if not include_acknowledged:
                query = query.where(Alert.acknowledged_at.is_(None))
            return [alert_view_of(row) for row in (await session.execute(query)).scalars()]

    async def alert_summary(self) -> tuple[int, AlertView | None]:
        """How many alerts are open, and the newest of them: for a status line, in two small queries."""
        async with self._db.reads() as session:
            open_ = Alert.acknowledged_at.is_(None)
            count = int((await session.execute(select(func.count()).where(open_))).scalar_one())
            newest = (
                await session.execute(
                    select(Alert).where(open_).order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(1)
                )
            ).scalar_one_or_none()
            return count, None if newest is None else alert_view_of(newest)

    async def alerts_after(self, alert_id: int, *, limit: int = 500) -> list[AlertView]:
        """Alerts created after `alert_id` (acknowledged ones included), oldest first."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Alert).where(Alert.id > alert_id).order_by(Alert.id).limit(limit)
            )
            return [alert_view_of(row) for row in rows.scalars()]

    async def last_alert_id(self) -> int:
        async with self._db.reads() as session:
            return int((await session.execute(select(func.coalesce(func.max(Alert.id), 0)))).scalar_one())

    async def resolve_alert(
        self, kind: str, *, now: dt.datetime, notice_kind: str, notice: str, subject: str = ""
    ) -> bool:
        """Close the open (kind, subject) alert and record `notice` as an already-closed alert,
        in one transaction: the operator hears of the recovery without another alert to clear.
        Returns whether such an alert was open."""
        async with self._db.write() as session:
            closed = await session.execute(
                update(Alert)
                .where(Alert.kind == kind, Alert.subject == subject, Alert.acknowledged_at.is_(None))
                .values(acknowledged_at=now)
            )
            if not closed.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(
                Alert(
                    kind=notice_kind,
                    subject=subject,
                    message=notice,
                    first_seen_at=now,
                    last_seen_at=now,
                    count=1,
                    acknowledged_at=now,
                )
            )
            return True

    async def acknowledge(self, alert_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        """Acknowledge the given alerts, or every open one when `alert_ids` is None."""
        async with self._db.write() as session:
            statement = update(Alert).where(Alert.acknowledged_at.is_(None)).values(acknowledged_at=now)
            if alert_ids is not None:
                statement = statement.where(Alert.id.in_(list(alert_ids)))
            result = await session.execute(statement)
            return int(result.rowcount)  # type: ignore[attr-defined]
