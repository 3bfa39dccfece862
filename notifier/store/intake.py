"""Shop-platform intake: event ids, numbers per fulfillment and the recent calls, each take one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.intake import IntakeOrder
from notifier.store.database import Database
from notifier.store.orm import IntakeCall, IntakeEvent, IntakeNumber, Shipment, Subscriber, Subscription
from notifier.store.watchlist import WATCH_SYNC_LOCK

# Shopify retries for 4 hours; an event id is remembered well beyond that.
EVENT_MEMORY = dt.timedelta(days=3)
# The board shows the newest calls; older ones are pruned at every write, refused ones harder
# (anyone can send a refused call: they must not fill the table).
KEEP_CALLS = 200
KEEP_REFUSED = 20


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What one webhook call did."""

    replayed: bool = False
    watched: tuple[str, ...] = ()
    unwatched: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IntakeCallView:
    at: dt.datetime
    platform: str
    outcome: str
    topic: str
    detail: str


class Intake:
    """take (watch what a webhook carries, committed before the answer), refused, recent_calls."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(
        self,
        platform: str,
        event_id: str | None,
        topic: str,
        orders: Sequence[IntakeOrder],
        *,
        now: dt.datetime,
    ) -> IntakeResult:
        """In one transaction: a seen event id is a replay (nothing else changes); otherwise
        every order's numbers are watched for its email, numbers an update dropped and those of
        a cancelled order are unwatched when the intake started them, and the call is logged."""
        async with self._db.write() as session:
            # The event id's primary key alone decides a replay: no lock is needed for that.
            if event_id:
                await session.execute(delete(IntakeEvent).where(IntakeEvent.received_at < now - EVENT_MEMORY))
                inserted = await session.execute(
                    self._db.insert(IntakeEvent)
                    .values(platform=platform, event_id=event_id[:100], received_at=now)
                    .on_conflict_do_nothing(index_elements=["platform", "event_id"])
                    .returning(IntakeEvent.event_id)
                )
                if inserted.first() is None:
                    await self._log(session, platform, "ignored", topic, f"event {event_id[:60]} again", now)
                    return IntakeResult(replayed=True)
            if self._db.dialect == "postgresql" and orders:
                # Serialized with watchlist syncs and CLI watches: all decide from the newest row.
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WATCH_SYNC_LOCK})
            watched: list[str] = []
            unwatched: list[str] = []
            ignored: list[str] = []
            for order in orders:
                ignored.extend(order.ignored)
                keep = set() if order.cancelled else {n.value for n in order.numbers}
                unwatched.extend(await self._drop(session, platform, order.reference, keep))
                if order.cancelled or order.email is None:
                    continue
                for number in order.numbers:
                    await self._watch(session, platform, order, number.value, number.country, now)
                    watched.append(number.value)
            result = IntakeResult(
                watched=tuple(dict.fromkeys(watched)),
                unwatched=tuple(dict.fromkeys(unwatched)),
                ignored=tuple(dict.fromkeys(ignored)),
            )
            outcome = "accepted" if result.watched or result.unwatched else "ignored"
            await self._log(session, platform, outcome, topic, _describe(result, orders), now)
            return result

    async def _watch(
        self,
        session: AsyncSession,
        platform: str,
        order: IntakeOrder,
        number: str,
        origin: str,
        now: dt.datetime,
    ) -> None:
        newest = (
            await session.execute(
                select(Shipment)
                .where(Shipment.number == number)
                .order_by(Shipment.incarnation.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if newest is None or newest.retired_at is not None:
            # A number Japan Post reused: the shop's new parcel is a new incarnation.
            row = Shipment(
                number=number,
                incarnation=newest.incarnation + 1 if newest is not None else 1,
                label=order.label,
                origin=origin,
                destination=order.destination,
                tags="",
                created_at=now,
                next_poll_at=now,
                watched_by=platform,
            )
            session.add(row)
            await session.flush()
        else:
            row = newest
            row.label = order.label or row.label
            row.destination = order.destination or row.destination
            if not row.active:
                row.active = True
                row.next_poll_at = now
                row.watched_by = platform
        await session.execute(
            self._db.insert(IntakeNumber)
            .values(platform=platform, reference=order.reference[:100], number=number, created_at=now)
            .on_conflict_do_nothing(index_elements=["platform", "reference", "number"])
        )
        email = (order.email or "").lower()
        await session.execute(
            self._db.insert(Subscriber)
            .values(email=email, locale=order.locale, created_at=now)
            .on_conflict_do_nothing(index_elements=["email"])
        )
        subscriber_id = (
            await session.execute(select(Subscriber.id).where(Subscriber.email == email))
        ).scalar_one()
        subscription = (
            await session.execute(
                select(Subscription).where(
                    Subscription.subscriber_id == subscriber_id, Subscription.shipment_id == row.id
                )
            )
        ).scalar_one_or_none()
        if subscription is None:
            session.add(
                Subscription(
                    subscriber_id=subscriber_id, shipment_id=row.id, locale=order.locale, created_at=now
                )
            )
        else:
            subscription.active = True

    async def _drop(self, session: AsyncSession, platform: str, reference: str, keep: set[str]) -> list[str]:
        """Forget the reference's numbers not in `keep`; unwatch those the intake watches and
        no other fulfillment of this platform still holds."""
        held = (
            await session.execute(
                select(IntakeNumber.number).where(
                    IntakeNumber.platform == platform, IntakeNumber.reference == reference[:100]
                )
            )
        ).scalars()
        gone = [number for number in held if number not in keep]
        if not gone:
            return []
        await session.execute(
            delete(IntakeNumber).where(
                IntakeNumber.platform == platform,
                IntakeNumber.reference == reference[:100],
                IntakeNumber.number.in_(gone),
            )
        )
        still = set(
            (
                await session.execute(
                    select(IntakeNumber.number).where(
                        IntakeNumber.platform == platform, IntakeNumber.number.in_(gone)
                    )
                )
            ).scalars()
        )
        unwatched = []
        for number in gone:
            if number in still:
                continue
            row = (
                await session.execute(
                    select(Shipment)
                    .where(Shipment.number == number)
                    .order_by(Shipment.incarnation.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            # A number the configuration or the CLI took over is theirs to stop.
            if row is not None and row.active and row.watched_by == platform:
                row.active = False
                row.leased_by = None
                row.lease_until = None
                unwatched.append(number)
        return unwatched

    async def refused(self, platform: str, topic: str, detail: str, *, now: dt.datetime) -> None:
        """Log a refused call (bad signature, unusable body)."""
        async with self._db.write() as session:
            await self._log(session, platform, "refused", topic, detail, now)

    async def _log(
        self, session: AsyncSession, platform: str, outcome: str, topic: str, detail: str, now: dt.datetime
    ) -> None:
        session.add(
            IntakeCall(at=now, platform=platform, outcome=outcome, topic=topic[:60], detail=detail[:300])
        )
        await session.flush()
        newest = (await session.execute(select(func.max(IntakeCall.id)))).scalar_one()
        await session.execute(delete(IntakeCall).where(IntakeCall.id <= newest - KEEP_CALLS))
        if outcome == "refused":
            cutoff = (
                await session.execute(
                    select(IntakeCall.id)
                    .where(IntakeCall.outcome == "refused")
                    .order_by(IntakeCall.id.desc())
                    .offset(KEEP_REFUSED)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if cutoff is not None:
                await session.execute(
                    delete(IntakeCall).where(IntakeCall.outcome == "refused", IntakeCall.id <= cutoff)
                )

    async def recent_calls(self, limit: int = 20) -> list[IntakeCallView]:
        """The newest calls first."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(
                    IntakeCall.at,
                    IntakeCall.platform,
                    IntakeCall.outcome,
                    IntakeCall.topic,
                    IntakeCall.detail,
                )
                .order_by(IntakeCall.id.desc())
                .limit(limit)
            )
            return [IntakeCallView(*row) for row in rows]


def _describe(result: IntakeResult, orders: Sequence[IntakeOrder]) -> str:
    parts = []
    if result.watched:
        parts.append("watched " + " ".join(result.watched))
    if result.unwatched:
        parts.append("unwatched " + " ".join(result.unwatched))
    if result.ignored:
        parts.append(f"{len(result.ignored)} not Japan Post: " + " ".join(result.ignored))
    if any(o.email is None and o.numbers and not o.cancelled for o in orders):
        parts.append("no customer email")
    if not parts:
        # An order without a number, or a call of a topic that carries no order at all.
        parts.append("no tracking number" if orders else "a topic not read")
    return "; ".join(parts)
