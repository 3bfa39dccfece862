"""The audience: subscribers, subscriptions, suppressions, recipients and their language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update

from notifier.store.database import Database
from notifier.store.orm import (
    Shipment,
    ShipmentSuppression,
    Subscriber,
    Subscription,
    Suppression,
)
from notifier.store.rows import (
    READS_IN,
)


class Audience:
    """Who gets mail about a shipment, in which language, and who asked for none."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_subscribers(
        self, shipment_id: int, subscribers: Sequence[tuple[str, str, str | None]], *, now: dt.datetime
    ) -> None:
        """Make these (email, locale, time zone) the shipment's active subscriptions; others stop."""
        wanted = {email.lower(): (locale, zone) for email, locale, zone in subscribers}
        for email, (locale, zone) in wanted.items():
            await self.subscribe(shipment_id, email, locale=locale, now=now, time_zone=zone)
        async with self._db.write() as session:
            rows = await session.execute(
                select(Subscription, Subscriber.email)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.shipment_id == shipment_id)
            )
            for subscription, email in rows:
                subscription.active = email.lower() in wanted

    async def subscribe(
        self, shipment_id: int, email: str, *, locale: str, now: dt.datetime, time_zone: str | None = None
    ) -> None:
        # Upserts, so instances subscribing the same address at the same moment both succeed.
        async with self._db.write() as session:
            subscriber_id = (
                await session.execute(
                    self._db.insert(Subscriber)
                    .values(email=email, locale=locale, created_at=now)
                    .on_conflict_do_nothing(index_elements=["email"])
                    .returning(Subscriber.id)
                )
            ).scalar_one_or_none()
            if subscriber_id is None:
                subscriber_id = (
                    await session.execute(select(Subscriber.id).where(Subscriber.email == email))
                ).scalar_one()
            await session.execute(
                self._db.insert(Subscription)
                .values(
                    subscriber_id=subscriber_id,
                    shipment_id=shipment_id,
                    locale=locale,
                    time_zone=time_zone,
                    created_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["subscriber_id", "shipment_id"],
                    set_={"locale": locale, "time_zone": time_zone, "active": True},
                )
            )

    async def suppress(self, email: str, *, now: dt.datetime, reason: str = "unsubscribed") -> bool:
        async with self._db.write() as session:
            statement = (
                self._db.insert(Suppression)
                .values(email=email.lower(), reason=reason, created_at=now)
                .on_conflict_do_nothing(index_elements=["email"])
            )
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def unsuppress(self, email: str) -> bool:
        async with self._db.write() as session:
            result = await session.execute(delete(Suppression).where(Suppression.email == email.lower()))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def suppressed_among(self, emails: Sequence[str]) -> set[str]:
        """Which of these addresses are on the suppression list (lower-cased), in one query."""
        if not emails:
            return set()
        wanted = sorted({e.lower() for e in emails})
        async with self._db.reads() as session:
            rows = await session.execute(select(Suppression.email).where(Suppression.email.in_(wanted)))
            return {email for (email,) in rows}

    async def suppress_shipment(self, email: str, number: str, *, now: dt.datetime) -> bool:
        """No more mail to `email` about tracking number `number` (True if that is new)."""
        async with self._db.write() as session:
            statement = (
                self._db.insert(ShipmentSuppression)
                .values(email=email.lower(), number=number, created_at=now)
                .on_conflict_do_nothing(index_elements=["email", "number"])
            )
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def unsuppress_shipment(self, email: str, number: str) -> bool:
        async with self._db.write() as session:
            result = await session.execute(
                delete(ShipmentSuppression).where(
                    ShipmentSuppression.email == email.lower(), ShipmentSuppression.number == number
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def suppressed_shipments_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (address, number) pairs are unsubscribed from that parcel (address lower-cased)."""
        emails = sorted({email.lower() for email, number in pairs if number})
        if not emails:
            return set()
        async with self._db.reads() as session:
            rows = await session.execute(
                select(ShipmentSuppression.email, ShipmentSuppression.number).where(
                    ShipmentSuppression.email.in_(emails)
                )
            )
            wanted = {(email.lower(), number) for email, number in pairs}
            return {(str(e), str(n)) for e, n in rows if (e, n) in wanted}

    async def locale_for(self, email: str, number: str) -> str | None:
        """The language `email` reads about `number` (their latest subscription to it, the one
        they chose on the page first), else the one they last subscribed with; None for an
        address never subscribed."""
        async with self._db.reads() as session:
            about = await session.scalar(
                select(READS_IN)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .join(Shipment, Shipment.id == Subscription.shipment_id)
                .where(func.lower(Subscriber.email) == email.lower(), Shipment.number == number)
                .order_by(Subscription.id.desc())
                .limit(1)
            )
            if about is not None:
                return str(about)
            anything = await session.scalar(
                select(READS_IN)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(func.lower(Subscriber.email) == email.lower())
                .order_by(Subscription.id.desc())
                .limit(1)
            )
            return None if anything is None else str(anything)

    async def choose_locale(self, email: str, number: str, locale: str) -> bool:
        """`email` wants mail about `number` in `locale` from now on (True if a subscription
        to it exists). Kept apart from the watchlist's `locale`, so no sync undoes it."""
        async with self._db.write() as session:
            ids = (
                await session.scalars(
                    select(Subscription.id)
                    .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                    .join(Shipment, Shipment.id == Subscription.shipment_id)
                    .where(func.lower(Subscriber.email) == email.lower(), Shipment.number == number)
                )
            ).all()
            if ids:
                await session.execute(
                    update(Subscription).where(Subscription.id.in_(ids)).values(chosen_locale=locale)
                )
            return bool(ids)

    async def subscription_names(self, shipment_id: int) -> dict[int, str]:
        """Subscription id -> greeting name, for the shipment's active subscriptions that have one."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Subscription.id, Subscription.name).where(
                    Subscription.shipment_id == shipment_id,
                    Subscription.active.is_(True),
                    Subscription.name.is_not(None),
                    Subscription.name != "",
                )
            )
            return {int(i): str(name) for i, name in rows}

    async def recipients(self, shipment_id: int) -> list[tuple[int, str, str, str | None]]:
        """(subscription id, email, locale, time zone) of the shipment's active subscriptions."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Subscription.id, Subscriber.email, READS_IN, Subscription.time_zone)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.shipment_id == shipment_id, Subscription.active.is_(True))
                .order_by(Subscription.id)
            )
            return [(int(i), str(e), str(loc), tz) for i, e, loc, tz in rows]

    async def active_subscribers(self) -> dict[int, tuple[str, ...]]:
        """Shipment id -> the addresses of its active subscriptions, for every shipment at once."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Subscription.shipment_id, Subscriber.email)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.active.is_(True))
                .order_by(Subscription.shipment_id, Subscription.id)
            )
            found: dict[int, list[str]] = {}
            for shipment_id, email in rows:
                found.setdefault(int(shipment_id), []).append(str(email))
            return {sid: tuple(emails) for sid, emails in found.items()}

    async def suppressions(self, *, limit: int = 500) -> list[tuple[str, str, dt.datetime]]:
        """(address, reason, since) of the suppression list, newest first."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Suppression.email, Suppression.reason, Suppression.created_at)
                .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                .limit(limit)
            )
            return [(str(email), str(reason), created) for email, reason, created in rows]
