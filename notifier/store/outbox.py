"""The outbox: drafts inserted (alone or inside a poll's transaction), leased, sent, retried, listed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from notifier import hints
from notifier.core.limits import OUTBOX_SUBJECT, fit
from notifier.core.rules import OperatorAlert
from notifier.core.views import (
    AlertView,
    OutboxDraft,
    OutboxItem,
    OutboxState,
)
from notifier.store.alerts import Alerts
from notifier.store.database import QUEUED, Database
from notifier.store.orm import (
    Alert,
    OutboxMessage,
)
from notifier.store.rows import (
    alert_view_of,
    outbox_item_of,
)


class Outbox:
    """The outbox aggregate; insert_drafts joins a caller's transaction."""

    def __init__(self, db: Database, alerts: Alerts) -> None:
        self._db = db
        self._alerts = alerts

    async def insert_drafts(
        self, session: AsyncSession, drafts: Sequence[OutboxDraft], now: dt.datetime, *, held: bool = False
    ) -> int:
        created = 0
        state = OutboxState.HELD if held else OutboxState.PENDING
        batch = [draft.dedup_key for draft in drafts]
        for draft in drafts:
            due = max(now, draft.not_before or now)
            if draft.supersedes and draft.error is None and draft.subscription_id is not None:
                replaced = await self._supersede(session, draft, batch)
                # News merged into this message goes no later than the first of it would have:
                # a parcel scanned every few hours must not push its news back window by window.
                if replaced is not None:
                    due = max(now, min(due, replaced))
            statement = (
                self._db.insert(OutboxMessage)
                .values(
                    dedup_key=draft.dedup_key,
                    shipment_id=draft.shipment_id,
                    subscription_id=draft.subscription_id,
                    recipient=draft.recipient,
                    sender=draft.sender,
                    locale=draft.locale,
                    time_zone=draft.time_zone,
                    rule=draft.rule,
                    template=draft.template,
                    stage=draft.stage,
                    number=draft.number,
                    # Only shown in listings (the bytes carry the real one): a label near its
                    # size limit must not make the insert, and the whole poll, fail.
                    subject=fit(draft.subject, OUTBOX_SUBJECT),
                    message_id=draft.message_id,
                    raw=draft.raw,
                    # A message that could not be built fails alone; held or not.
                    state=str(state if draft.error is None else OutboxState.FAILED),
                    last_error=None if draft.error is None else draft.error[:2000],
                    attempts=0,
                    next_attempt_at=due,
                    created_at=now,
                )
                # The dedup key can exist only once, ever: a replayed poll creates nothing.
                .on_conflict_do_nothing(index_elements=["dedup_key"])
            )
            result = await session.execute(statement)
            new = int(result.rowcount)  # type: ignore[attr-defined]
            created += new
            if new and state is OutboxState.PENDING and draft.error is None:
                session.info[QUEUED] = True
            if new and draft.error is not None:
                # One alert per template and language: a broken template counts up, not floods.
                await self._alerts.raise_in(
                    session,
                    "message_build_failed",
                    f"the {draft.locale} {draft.template} message to {draft.recipient} about "
                    f"{draft.number or '-'} could not be built and was not sent: {draft.error}. It is "
                    f"listed by {hints.command('outbox --state failed')}; later messages are built afresh.",
                    now,
                    f"{draft.locale}/{draft.template}"[:40],
                    draft.shipment_id,
                )
        return created

    async def _supersede(
        self, session: AsyncSession, draft: OutboxDraft, batch: Sequence[str]
    ) -> dt.datetime | None:
        """Retire what still waits for this subscription about this shipment, and return when
        the earliest pending one of them was due (None when none was). Only pending and held
        rows: a message being sent (leased) or sent stays as it is, so no customer gets both nor
        neither. Messages of the same batch (`multi_stage = "all"` asks for each stage) are
        kept, and a replayed poll (its dedup key already queued) supersedes nothing."""
        exists = select(OutboxMessage.id).where(OutboxMessage.dedup_key == draft.dedup_key)
        if (await session.execute(exists)).first() is not None:
            return None
        waiting = (
            OutboxMessage.shipment_id == draft.shipment_id,
            OutboxMessage.subscription_id == draft.subscription_id,
            OutboxMessage.state.in_([str(OutboxState.PENDING), str(OutboxState.HELD)]),
            OutboxMessage.dedup_key.not_in(list(batch)),
        )
        earliest = (
            await session.execute(
                select(func.min(OutboxMessage.next_attempt_at)).where(
                    *waiting, OutboxMessage.state == str(OutboxState.PENDING)
                )
            )
        ).scalar_one_or_none()
        await session.execute(
            update(OutboxMessage)
            .where(*waiting)
            .values(
                state=str(OutboxState.SUPERSEDED),
                last_error=f"superseded by the {draft.template} message ({draft.dedup_key})"[:2000],
            )
        )
        return earliest  # func.min keeps the column's type: an aware UTC datetime

    async def queue_alert_notice(
        self,
        key_prefix: str,
        decide: Callable[[Sequence[AlertView]], OutboxDraft | None],
        *,
        now: dt.datetime,
    ) -> OutboxDraft | None:
        """Queue one message about the alerts created since the last such message.

        The last message's dedup key ends in the highest alert id it covered; `decide` gets the
        alerts after it and returns the message to queue (its dedup key must be `key_prefix` +
        that message's highest alert id), or None to wait. One transaction, holding off alert
        writers while it reads, so an alert committed late with a lower id is never skipped.
        """
        async with self._db.write() as session:
            if self._db.dialect == "postgresql":
                await session.execute(text("LOCK TABLE alerts IN SHARE ROW EXCLUSIVE MODE"))
            last = (
                await session.execute(
                    select(OutboxMessage.dedup_key)
                    .where(OutboxMessage.dedup_key.startswith(key_prefix, autoescape=True))
                    .order_by(OutboxMessage.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            watermark = int(last[len(key_prefix) :]) if last and last[len(key_prefix) :].isdigit() else 0
            rows = await session.execute(
                select(Alert).where(Alert.id > watermark).order_by(Alert.id).limit(500)
            )
            message = decide([alert_view_of(row) for row in rows.scalars()])
            if message is None:
                return None
            await self.insert_drafts(session, [message], now)
            return message

    async def waiting_stages(self, shipment_id: int) -> dict[int, tuple[str, ...]]:
        """Per subscription id, the stages of its messages about this shipment still waiting
        (pending or held), oldest first: what a newer message would supersede."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(OutboxMessage.subscription_id, OutboxMessage.stage)
                .where(
                    OutboxMessage.shipment_id == shipment_id,
                    OutboxMessage.subscription_id.is_not(None),
                    OutboxMessage.state.in_([str(OutboxState.PENDING), str(OutboxState.HELD)]),
                )
                .order_by(OutboxMessage.id)
            )
            waiting: dict[int, list[str]] = {}
            for subscription_id, stage in rows:
                waiting.setdefault(int(subscription_id or 0), []).append(str(stage))
            return {k: tuple(v) for k, v in waiting.items()}

    async def fix_date(self, message_id: int, *, owner: str, raw: bytes, now: dt.datetime) -> bool:
        """Record the first send attempt: the bytes with their final Date, before they are sent."""
        return await self._finish_keep_lease(message_id, owner, raw=raw, first_attempt_at=now)

    async def _finish_keep_lease(self, message_id: int, owner: str, **values: object) -> bool:
        """Update a message being sent, only while we hold its lease (see _finish)."""
        async with self._db.write() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.leased_by == owner,
                    OutboxMessage.state == str(OutboxState.SENDING),
                )
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def deferred_for_quiet_hours(self) -> list[tuple[int, str | None, dt.datetime]]:
        """(id, time zone, next attempt) of pending messages waiting for the end of quiet hours."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(OutboxMessage.id, OutboxMessage.time_zone, OutboxMessage.next_attempt_at).where(
                    OutboxMessage.state == str(OutboxState.PENDING),
                    OutboxMessage.last_error == "quiet hours",
                )
            )
            return [(int(i), zone, due) for i, zone, due in rows]

    async def reschedule_pending(self, moves: Sequence[tuple[int, dt.datetime]]) -> int:
        """Move pending messages' next attempt (quiet hours changed); rows no longer pending are left."""
        moved = 0
        async with self._db.write() as session:
            for message_id, when in moves:
                result = await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id, OutboxMessage.state == str(OutboxState.PENDING))
                    .values(next_attempt_at=when)
                )
                moved += int(result.rowcount)  # type: ignore[attr-defined]
        return moved

    async def enqueue(
        self,
        drafts: Sequence[OutboxDraft],
        *,
        now: dt.datetime,
        alert: OperatorAlert | None = None,
        shipment_id: int | None = None,
        alerts: Sequence[OperatorAlert] = (),
    ) -> int:
        """Queue messages not tied to a poll (time-based rules, digests, tests); returns how many were new.

        `alert` (and each of `alerts`) is raised in the same transaction, and only if a message
        was new: it belongs to them (a stall the customer is told the shop follows up, a parcel
        running late for its route), so it is raised once, however often the time-based rules run.
        """
        async with self._db.write() as session:
            created = await self.insert_drafts(session, drafts, now)
            for each in (*([alert] if alert is not None else []), *alerts):
                if created:
                    await self._alerts.raise_in(
                        session, each.kind, each.message, now, each.subject, shipment_id
                    )
            return created

    async def release_held(self, *, now: dt.datetime) -> int:
        """The kill switch lifted: held messages become pending, due now. Returns how many."""
        async with self._db.write() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.state == str(OutboxState.HELD))
                .values(state=str(OutboxState.PENDING), next_attempt_at=now)
            )
            released = int(result.rowcount)  # type: ignore[attr-defined]
            session.info[QUEUED] = released > 0
            return released

    async def known_dedup_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self._db.reads() as session:
            rows = await session.execute(
                select(OutboxMessage.dedup_key).where(OutboxMessage.dedup_key.in_(list(keys)))
            )
            return {key for (key,) in rows}

    async def claim_outbox(
        self, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[OutboxItem]:
        """Lease due messages: pending ones whose time has come, and sending ones whose owner
        died (lease expired). A claim is not an attempt: mark_* count one when a send was tried,
        so a crash or restart loop does not eat the retry budget."""
        # A customer hears about one parcel in order: no message is claimed while an earlier one
        # to the same subscription about the same shipment still waits or is being sent (by
        # another instance, say), so a later stage never overtakes an earlier one.
        earlier = aliased(OutboxMessage)
        overtaking = (
            select(earlier.id)
            .where(
                earlier.subscription_id == OutboxMessage.subscription_id,
                earlier.shipment_id == OutboxMessage.shipment_id,
                earlier.id < OutboxMessage.id,
                earlier.state.in_(
                    (str(OutboxState.PENDING), str(OutboxState.SENDING), str(OutboxState.HELD))
                ),
            )
            .exists()
        )
        due = (
            select(OutboxMessage.id)
            .where(
                ((OutboxMessage.state == str(OutboxState.PENDING)) & (OutboxMessage.next_attempt_at <= now))
                | ((OutboxMessage.state == str(OutboxState.SENDING)) & (OutboxMessage.lease_until < now)),
                (OutboxMessage.subscription_id.is_(None))
                | (OutboxMessage.shipment_id.is_(None))
                | ~overtaking,
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = await self._db.lease(
            OutboxMessage,
            due,
            state=str(OutboxState.SENDING),
            leased_by=owner,
            lease_until=now + lease,
        )
        return sorted((outbox_item_of(row) for row in rows), key=lambda i: (i.next_attempt_at, i.id))

    async def _finish(self, message_id: int, owner: str, **values: object) -> bool:
        """Move a leased message on and out of our lease, only if we still hold it (a fence
        against a second instance that reclaimed it after our lease expired)."""
        return await self._finish_keep_lease(message_id, owner, leased_by=None, lease_until=None, **values)

    async def mark_sent(self, message_id: int, *, owner: str, now: dt.datetime, reply: str) -> bool:
        return await self._finish(
            message_id,
            owner,
            state=str(OutboxState.SENT),
            sent_at=now,
            server_reply=reply[:500],
            last_error=None,
            attempts=OutboxMessage.attempts + 1,
        )

    async def mark_retry(
        self,
        message_id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: dt.datetime,
        count_attempt: bool = True,
    ) -> bool:
        values: dict[str, object] = {
            "state": str(OutboxState.PENDING),
            "next_attempt_at": next_attempt_at,
            "last_error": error[:2000],
        }
        if count_attempt:
            values["attempts"] = OutboxMessage.attempts + 1
        return await self._finish(message_id, owner, **values)

    async def mark_failed(
        self, message_id: int, *, owner: str, error: str, now: dt.datetime, count_attempt: bool = True
    ) -> bool:
        async with self._db.write() as session:
            row = await session.get(OutboxMessage, message_id)
            if row is None or row.leased_by != owner or row.state != str(OutboxState.SENDING):
                return False
            row.state = str(OutboxState.FAILED)
            row.last_error = error[:2000]
            row.leased_by = None
            row.lease_until = None
            if count_attempt:
                row.attempts += 1
            # The subject column is short; the outbox id fits it whole and is what
            # `notifier outbox show` takes. The Message-ID is in the text, in full.
            await self._alerts.raise_in(
                session,
                "send_failed",
                f"message {row.id} to {row.recipient} about {row.number or '-'} ({row.rule}, "
                f"Message-ID {row.message_id}) failed for good: {error}",
                now,
                f"outbox {row.id}",
                row.shipment_id,
            )
            return True

    async def mark_suppressed(self, message_id: int, *, owner: str) -> bool:
        return await self._finish(message_id, owner, state=str(OutboxState.SUPPRESSED))

    async def outbox(
        self, *, states: Sequence[OutboxState] | None = None, limit: int = 200, rule: str | None = None
    ) -> list[OutboxItem]:
        async with self._db.reads() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
            if states:
                query = query.where(OutboxMessage.state.in_([str(s) for s in states]))
            if rule is not None:
                query = query.where(OutboxMessage.rule == rule)
            return [outbox_item_of(row) for row in (await session.execute(query)).scalars()]

    async def outbox_for(self, number: str, *, limit: int = 200) -> list[OutboxItem]:
        """Every message about `number`, whatever its state, newest first (the board's parcel page)."""
        async with self._db.reads() as session:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.number == number)
                .order_by(OutboxMessage.id.desc())
                .limit(limit)
            )
            return [outbox_item_of(row) for row in (await session.execute(query)).scalars()]

    async def outbox_item(self, message_id: int) -> OutboxItem | None:
        async with self._db.reads() as session:
            row = await session.get(OutboxMessage, message_id)
            return None if row is None else outbox_item_of(row)

    async def retry_failed(self, message_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        """Put failed messages back in the queue (same bytes, same Message-ID)."""
        async with self._db.write() as session:
            statement = (
                update(OutboxMessage)
                .where(OutboxMessage.state == str(OutboxState.FAILED))
                .values(state=str(OutboxState.PENDING), next_attempt_at=now, attempts=0)
            )
            if message_ids is not None:
                statement = statement.where(OutboxMessage.id.in_(list(message_ids)))
            result = await session.execute(statement)
            retried = int(result.rowcount)  # type: ignore[attr-defined]
            session.info[QUEUED] = retried > 0
            return retried
