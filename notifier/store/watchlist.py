"""The configured watchlist: one transaction brings shipments and subscriptions in line with it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.views import (
    WATCHED_BY_CONFIG,
    ConfiguredWatch,
    WatchSync,
)
from notifier.store.database import Database
from notifier.store.orm import (
    Shipment,
    Subscriber,
    Subscription,
)
from notifier.store.rows import (
    Latest,
)

# pg_advisory_xact_lock key serializing watchlist syncs ("watchsyn" in ASCII).
WATCH_SYNC_LOCK = 0x776174636873796E


class Watchlist:
    """sync_config_watches and its subscription half."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync_config_watches(self, watches: Sequence[ConfiguredWatch], *, now: dt.datetime) -> WatchSync:
        """Make the configuration's watchlist true in one transaction, with a few set-based
        statements whatever its size: listed numbers are watched (and taken over from the CLI),
        their subscriptions are exactly the listed ones, and numbers the configuration watched
        that it no longer lists stop (their history stays). CLI watches are never unwatched."""
        wanted = {w.number.value: w for w in watches}
        async with self._db.write() as session:
            if self._db.dialect == "postgresql":
                # Instances starting or reloading the same configuration together sync one after
                # the other, each seeing what the previous one committed (SQLite's write lock
                # already does this). The inserts below also skip rows a racing writer added.
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WATCH_SYNC_LOCK})
            latest: dict[str, Latest] = {}
            for columns in await session.execute(
                select(
                    Shipment.id,
                    Shipment.number,
                    Shipment.incarnation,
                    Shipment.label,
                    Shipment.destination,
                    Shipment.tags,
                    Shipment.active,
                    Shipment.retired_at,
                    Shipment.watched_by,
                )
            ):
                found = Latest(*columns)
                if found.number not in latest or latest[found.number].incarnation < found.incarnation:
                    latest[found.number] = found
            inserts: list[dict[str, object]] = []
            updates: list[dict[str, object]] = []
            revived: list[dict[str, object]] = []
            added: list[str] = []
            taken_over: list[str] = []
            reused: list[str] = []
            for number, watch in wanted.items():
                row = latest.get(number)
                tags = " ".join(sorted(watch.tags))
                if row is not None and row.retired_at is not None:
                    # Japan Post shows someone else's parcel under this number now: the entry
                    # was for the old one, and its subscribers must not hear about a stranger's.
                    # `notifier watch` starts a new incarnation when the shop means a new parcel.
                    reused.append(number)
                    continue
                if row is None:
                    inserts.append(
                        {
                            "number": number,
                            "incarnation": row.incarnation + 1 if row is not None else 1,
                            "label": watch.label,
                            "origin": watch.number.country,
                            "destination": watch.destination,
                            "tags": tags,
                            "created_at": now,
                            "next_poll_at": now,
                            "watched_by": WATCHED_BY_CONFIG,
                        }
                    )
                    added.append(number)
                    continue
                values: dict[str, object] = {
                    "id": row.id,
                    "label": watch.label or row.label,
                    "destination": watch.destination or row.destination,
                    "tags": tags,
                    "watched_by": WATCHED_BY_CONFIG,
                }
                if row.watched_by != WATCHED_BY_CONFIG and row.active:
                    taken_over.append(number)
                if not row.active:
                    added.append(number)
                    revived.append({**values, "active": True, "next_poll_at": now})
                elif (values["label"], values["destination"], tags, WATCHED_BY_CONFIG) != (
                    row.label,
                    row.destination,
                    row.tags,
                    row.watched_by,
                ):
                    updates.append(values)
            gone = [
                row
                for number, row in latest.items()
                if row.active and row.watched_by == WATCHED_BY_CONFIG and number not in wanted
            ]
            if inserts:
                await session.execute(
                    self._db.insert(Shipment).on_conflict_do_nothing(
                        index_elements=["number", "incarnation"]
                    ),
                    inserts,
                )
            for batch in (updates, revived):
                if batch:
                    await session.execute(update(Shipment), batch)
            if gone:
                await session.execute(
                    update(Shipment),
                    [{"id": row.id, "active": False, "leased_by": None, "lease_until": None} for row in gone],
                )
            await self._sync_subscriptions(session, wanted, now)
        return WatchSync(
            added=tuple(added),
            updated=len(updates),
            unwatched=tuple(sorted(row.number for row in gone)),
            taken_over=tuple(taken_over),
            reused=tuple(reused),
        )

    async def _sync_subscriptions(
        self, session: AsyncSession, wanted: dict[str, ConfiguredWatch], now: dt.datetime
    ) -> None:
        shipment_ids = {
            number: sid
            for sid, number in await session.execute(
                select(Shipment.id, Shipment.number).where(
                    Shipment.watched_by == WATCHED_BY_CONFIG,
                    Shipment.active.is_(True),
                )
            )
            if number in wanted
        }
        # (email, locale, zone) per shipment, lower-cased as `set_subscribers` stores them.
        listed: dict[int, dict[str, tuple[str, str | None]]] = {}
        names: dict[int, str | None] = {}
        for number, watch in wanted.items():
            sid = shipment_ids.get(number)
            if sid is not None:
                listed[sid] = {email.lower(): (locale, zone) for email, locale, zone in watch.subscribers}
                names[sid] = watch.name or None
        people = {email: sid for sid, email in await session.execute(select(Subscriber.id, Subscriber.email))}
        new_people: dict[str, str] = {}
        for subscribers in listed.values():
            for email, (locale, _) in subscribers.items():
                if email not in people:
                    new_people.setdefault(email, locale)
        if new_people:
            await session.execute(
                self._db.insert(Subscriber).on_conflict_do_nothing(index_elements=["email"]),
                [
                    {"email": email, "locale": locale, "created_at": now}
                    for email, locale in new_people.items()
                ],
            )
            people = {
                email: sid for sid, email in await session.execute(select(Subscriber.id, Subscriber.email))
            }
        existing = {
            (shipment_id, subscriber_id): (sub_id, locale, zone, active, name)
            for sub_id, shipment_id, subscriber_id, locale, zone, active, name in await session.execute(
                select(
                    Subscription.id,
                    Subscription.shipment_id,
                    Subscription.subscriber_id,
                    Subscription.locale,
                    Subscription.time_zone,
                    Subscription.active,
                    Subscription.name,
                )
                .join(Shipment, Shipment.id == Subscription.shipment_id)
                .where(Shipment.watched_by == WATCHED_BY_CONFIG, Shipment.active.is_(True))
            )
        }
        inserts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        keep: set[tuple[int, int]] = set()
        for sid, subscribers in listed.items():
            for email, (locale, zone) in subscribers.items():
                key = (sid, people[email])
                keep.add(key)
                current = existing.get(key)
                if current is None:
                    inserts.append(
                        {
                            "subscriber_id": people[email],
                            "shipment_id": sid,
                            "locale": locale,
                            "time_zone": zone,
                            "name": names[sid],
                            "created_at": now,
                        }
                    )
                elif current[1:] != (locale, zone, True, names[sid]):
                    updates.append(
                        {
                            "id": current[0],
                            "locale": locale,
                            "time_zone": zone,
                            "active": True,
                            "name": names[sid],
                        }
                    )
        stopped = [
            {"id": current[0], "active": False}
            for key, current in existing.items()
            if key not in keep and current[3] and key[0] in listed
        ]
        if inserts:
            await session.execute(
                self._db.insert(Subscription).on_conflict_do_nothing(
                    index_elements=["subscriber_id", "shipment_id"]
                ),
                inserts,
            )
        for batch in (updates, stopped):
            if batch:
                await session.execute(update(Subscription), batch)
