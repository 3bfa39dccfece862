"""Several instances on one database: a shared Japan Post budget, one owner for daily work, heartbeats."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import TextClause, delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import __version__
from notifier.store.database import READ_ONLY, Database, dialect_insert
from notifier.store.orm import Instance, RequestBudget, WorkLease

logger = logging.getLogger(__name__)

DAILY_WORK = "daily"
STALE_INSTANCE = dt.timedelta(days=1)
BUDGET_SHARED = "shared"
BUDGET_PER_INSTANCE = "per_instance"

# One statement decides and records: the slot is free when the last one was taken at least an
# interval ago and no pause holds; then it is taken now and the next one is an interval later.
# Otherwise nothing changes and the caller learns how long to wait. The row lock orders the
# instances, and a request goes out right after its slot is taken (never after a sleep that a
# stalled process could overrun), so two requests are never much closer than the interval. The
# times are the database's (naive UTC like every column here): the instances' clocks never meet.
_TAKE_SLOT = text(
    """
    UPDATE request_budget
    SET next_slot = CASE WHEN GREATEST(next_slot, COALESCE(not_before, next_slot))
                              <= clock_timestamp() AT TIME ZONE 'UTC'
                         THEN clock_timestamp() AT TIME ZONE 'UTC' + make_interval(secs => :interval)
                         ELSE next_slot END,
        last_grant = CASE WHEN GREATEST(next_slot, COALESCE(not_before, next_slot))
                               <= clock_timestamp() AT TIME ZONE 'UTC'
                          THEN :token ELSE last_grant END
    WHERE host = :host
    RETURNING last_grant = :token,
              EXTRACT(EPOCH FROM (GREATEST(next_slot, COALESCE(not_before, next_slot))
                                  - clock_timestamp() AT TIME ZONE 'UTC'))::float8
    """
)
_PAUSED_FOR = text(
    """
    SELECT EXTRACT(EPOCH FROM (not_before - clock_timestamp() AT TIME ZONE 'UTC'))::float8
    FROM request_budget WHERE host = :host
    """
)
_PAUSE = text(
    """
    UPDATE request_budget
    SET not_before = GREATEST(COALESCE(not_before, '-infinity'),
                              clock_timestamp() AT TIME ZONE 'UTC' + make_interval(secs => :seconds)),
        pause_reason = :reason, paused_by = :owner
    WHERE host = :host
      AND COALESCE(not_before, '-infinity') < clock_timestamp() AT TIME ZONE 'UTC' + make_interval(secs => :seconds)
    """
)
_ENSURE = text(
    "INSERT INTO request_budget (host, next_slot) VALUES (:host, clock_timestamp() AT TIME ZONE 'UTC') "
    "ON CONFLICT (host) DO NOTHING"
)


def budget_host(base_url: str) -> str:
    """The key of a remote site's budget: its host (and port, when one is given)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


class SharedPacer:
    """A `RequestPacer` whose budget is one row in PostgreSQL, shared by every instance.

    A caller takes a slot when one is free and otherwise sleeps until the row says the next one
    will be, then tries again: a pause another instance writes meanwhile (Retry-After, an open
    circuit) holds it too, so one 429 stops every instance."""

    def __init__(self, engine: AsyncEngine, host: str, interval: float, owner: str) -> None:
        self.engine = engine
        self.host = host
        self.interval = interval
        self.owner = owner
        self._lock = asyncio.Lock()
        self._serial = 0
        self.round_trips = 0
        self.budget_seconds = 0.0
        """Time spent in budget statements (not in sleeping for a slot): the shared budget's cost."""

    async def ensure(self) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(_ENSURE, {"host": self.host})

    async def _row(self, statement: TextClause, **params: object) -> tuple[Any, ...] | None:
        started = time.perf_counter()
        async with self.engine.begin() as connection:
            found = (await connection.execute(statement, params)).first()
        self.round_trips += 1
        self.budget_seconds += time.perf_counter() - started
        return None if found is None else tuple(found)

    async def wait(self) -> None:
        async with self._lock:
            while True:
                self._serial += 1
                token = f"{self.owner}#{self._serial}"[-250:]
                row = await self._row(_TAKE_SLOT, host=self.host, interval=self.interval, token=token)
                if row is None:  # the row is gone (a restored backup): make it again
                    await self.ensure()
                    continue
                granted, wait = bool(row[0]), float(row[1] or 0.0)
                if granted:
                    return
                # A floor keeps a clock tie from spinning; the cap re-reads a long pause now and
                # then, so one lifted by hand (or shortened) is seen.
                await asyncio.sleep(min(60.0, max(0.002, wait)))

    async def pause(self, seconds: float, reason: str = "Retry-After") -> None:
        """Nobody on this database asks the site before `seconds` from now (kept over restarts)."""
        started = time.perf_counter()
        async with self.engine.begin() as connection:
            await connection.execute(
                _PAUSE, {"host": self.host, "seconds": seconds, "reason": reason[:200], "owner": self.owner}
            )
        self.round_trips += 1
        self.budget_seconds += time.perf_counter() - started

    async def paused_for(self) -> float:
        """Seconds until the shared pause ends (0 when there is none)."""
        row = await self._row(_PAUSED_FOR, host=self.host)
        return max(0.0, float(row[0])) if row is not None and row[0] is not None else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRow:
    owner: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    version: str
    alive: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetRow:
    host: str
    next_slot: dt.datetime
    not_before: dt.datetime | None
    pause_reason: str | None
    paused_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationState:
    """What `notifier status` shows of the instances sharing this database."""

    instances: tuple[InstanceRow, ...]
    daily_owner: str | None
    daily_lease_until: dt.datetime | None
    budgets: tuple[BudgetRow, ...]


def heartbeat_period(tick: float) -> float:
    """How often an instance beats: its poll tick, within 0.5 s to 10 s."""
    return min(10.0, max(0.5, tick))


def lease_time(tick: float) -> dt.timedelta:
    """How long the daily-work lease and a heartbeat stay good: six beats, at least 3 s. A
    killed owner's daily work moves to another instance within this."""
    return dt.timedelta(seconds=max(3.0, 6 * heartbeat_period(tick)))


class Coordination:
    """This instance's heartbeat row and its claim on the daily work.

    Its writes go through the store's `Database`, so on SQLite they queue on the same write
    lock as the store's own: a writer of this process that holds SQLite's lock longer than the
    busy timeout then delays a heartbeat instead of failing it with "database is locked"."""

    def __init__(self, database: Database, owner: str, *, tick: float) -> None:
        self.database = database
        self.owner = owner
        self.tick = tick
        self.owns_daily = False
        self.started_at: dt.datetime | None = None
        self._beats = 0

    @property
    def dialect(self) -> str:
        return self.database.dialect

    def pacer(self, base_url: str, interval: float, budget: str) -> SharedPacer | None:
        """The shared pacer, on PostgreSQL with a shared budget; None means the in-process one."""
        if self.dialect != "postgresql" or budget != BUDGET_SHARED:
            return None
        return SharedPacer(self.database.engine, budget_host(base_url), interval, self.owner)

    async def beat(self, now: dt.datetime) -> bool:
        """Record this instance alive and keep or take the daily work. True when it was just taken."""
        self.started_at = self.started_at or now
        until = now + lease_time(self.tick)
        heartbeat = dialect_insert(self.dialect, Instance).values(
            owner=self.owner, started_at=self.started_at, heartbeat_at=now, version=__version__
        )
        lease = dialect_insert(self.dialect, WorkLease).values(
            name=DAILY_WORK, owner=self.owner, lease_until=until, acquired_at=now
        )
        async with self.database.write_connection() as connection:
            await connection.execute(
                heartbeat.on_conflict_do_update(
                    index_elements=["owner"], set_={"heartbeat_at": now, "version": __version__}
                )
            )
            held = (
                await connection.execute(
                    lease.on_conflict_do_update(
                        index_elements=["name"],
                        set_={
                            "owner": self.owner,
                            "lease_until": until,
                            # Renewing keeps the time it was taken; taking over starts it anew.
                            "acquired_at": text(
                                "CASE WHEN work_leases.owner = excluded.owner "
                                "THEN work_leases.acquired_at ELSE excluded.acquired_at END"
                            ),
                        },
                        where=(WorkLease.owner == self.owner) | (WorkLease.lease_until < now),
                    ).returning(WorkLease.owner)
                )
            ).scalar_one_or_none()
        owned, self.owns_daily = self.owns_daily, held == self.owner
        self._beats += 1
        if self.owns_daily and (not owned or self._beats % 1000 == 0):
            # Killed instances never remove their row: the daily owner forgets them after a day.
            await forget_stale_instances(self.database, now=now, after=STALE_INSTANCE)
        if self.owns_daily and not owned:
            logger.info(
                "daily work (digest, housekeeping) now runs on this instance",
                extra={"action": "daily_work_taken", "owner": self.owner},
            )
        elif owned and not self.owns_daily:
            logger.warning(
                "daily work taken over by another instance (this one missed its heartbeats)",
                extra={"action": "daily_work_lost", "owner": self.owner},
            )
        return self.owns_daily and not owned

    async def stop(self) -> None:
        """A clean stop hands the daily work on at once and leaves the instance list."""
        async with self.database.write_connection() as connection:
            await connection.execute(delete(Instance).where(Instance.owner == self.owner))
            await connection.execute(
                delete(WorkLease).where(WorkLease.name == DAILY_WORK, WorkLease.owner == self.owner)
            )
        self.owns_daily = False


async def coordination_state(
    engine: AsyncEngine, *, now: dt.datetime, stale_after: dt.timedelta
) -> CoordinationState:
    """The instances (alive = a heartbeat within `stale_after`), the daily work's owner, the budgets.
    A deferred read: on SQLite it takes no write lock, so `status` never waits behind a poll."""
    async with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        instances = tuple(
            InstanceRow(
                owner=row.owner,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                version=row.version,
                alive=now - row.heartbeat_at <= stale_after,
            )
            for row in await connection.execute(
                select(Instance).order_by(Instance.started_at, Instance.owner)
            )
        )
        lease = (
            await connection.execute(
                select(WorkLease.owner, WorkLease.lease_until).where(WorkLease.name == DAILY_WORK)
            )
        ).first()
        budgets = tuple(
            BudgetRow(
                host=row.host,
                next_slot=row.next_slot,
                not_before=row.not_before,
                pause_reason=row.pause_reason,
                paused_by=row.paused_by,
            )
            for row in await connection.execute(select(RequestBudget).order_by(RequestBudget.host))
        )
    owner, until = (lease.owner, lease.lease_until) if lease is not None else (None, None)
    if until is not None and until < now:
        owner = None
    return CoordinationState(instances=instances, daily_owner=owner, daily_lease_until=until, budgets=budgets)


async def forget_stale_instances(database: Database, *, now: dt.datetime, after: dt.timedelta) -> int:
    """Drop heartbeat rows of instances silent for longer than `after` (killed, never stopped)."""
    async with database.write_connection() as connection:
        result = await connection.execute(delete(Instance).where(Instance.heartbeat_at < now - after))
    return int(result.rowcount or 0)


def share_circuit(
    pause_until: dt.datetime | None, shared_for: float, now: dt.datetime
) -> tuple[dt.datetime | None, float]:
    """Merge this instance's open circuit with the shared pause: (open_until for the local
    breaker, seconds to publish as the shared pause, 0 for none)."""
    shared_until = now + dt.timedelta(seconds=shared_for) if shared_for > 0 else None
    local = pause_until if pause_until is not None and pause_until > now else None
    if shared_until is not None and (local is None or shared_until > local):
        return shared_until, 0.0
    if local is not None and (shared_until is None or local > shared_until + dt.timedelta(seconds=1)):
        return local, (local - now).total_seconds()
    return local, 0.0


__all__ = [
    "BUDGET_PER_INSTANCE",
    "BUDGET_SHARED",
    "Coordination",
    "CoordinationState",
    "SharedPacer",
    "budget_host",
    "coordination_state",
    "forget_stale_instances",
    "heartbeat_period",
    "lease_time",
    "share_circuit",
]


def _ago(now: dt.datetime, then: dt.datetime) -> str:
    seconds = (now - then).total_seconds()
    return f"{seconds:.1f}s ago" if seconds >= 0 else f"in {-seconds:.1f}s"


def describe(state: CoordinationState, *, now: dt.datetime) -> list[str]:
    """`notifier status`'s lines about the instances, the daily work and the shared budgets."""
    alive = [i for i in state.instances if i.alive]
    lines = [f"instances alive: {len(alive)}"]
    for row in state.instances:
        mark = "" if row.alive else " (silent: stopped or killed)"
        daily = " [daily work]" if row.owner == state.daily_owner else ""
        lines.append(
            f"  {row.owner}  up since {row.started_at:%Y-%m-%d %H:%M:%S}Z, "
            f"heartbeat {_ago(now, row.heartbeat_at)}{daily}{mark}"
        )
    if state.daily_owner is not None and state.daily_lease_until is not None:
        lines.append(f"daily work: {state.daily_owner} (lease until {state.daily_lease_until:%H:%M:%S}Z)")
    else:
        lines.append("daily work: no owner (taken by the next instance to beat)")
    for budget in state.budgets:
        paused = ""
        if budget.not_before is not None and budget.not_before > now:
            paused = (
                f", PAUSED until {budget.not_before:%Y-%m-%d %H:%M:%S}Z"
                f" ({budget.pause_reason or 'pause'}, by {budget.paused_by or '?'})"
            )
        lines.append(f"Japan Post budget {budget.host}: next slot {_ago(now, budget.next_slot)}{paused}")
    return lines


def state_json(state: CoordinationState, *, now: dt.datetime) -> dict[str, object]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "instances": [
            {
                "owner": i.owner,
                "started_at": iso(i.started_at),
                "heartbeat_at": iso(i.heartbeat_at),
                "version": i.version,
                "alive": i.alive,
            }
            for i in state.instances
        ],
        "daily_work": {"owner": state.daily_owner, "lease_until": iso(state.daily_lease_until)},
        "budgets": [
            {
                "host": b.host,
                "next_slot": iso(b.next_slot),
                "not_before": iso(b.not_before),
                "paused": b.not_before is not None and b.not_before > now,
                "pause_reason": b.pause_reason,
                "paused_by": b.paused_by,
            }
            for b in state.budgets
        ],
    }
