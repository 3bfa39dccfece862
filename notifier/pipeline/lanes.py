"""The lanes' statistics for the running daemon: built from the store, rebuilt when stale."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from notifier.core.adaptive import Chance
from notifier.core.eta import Journey, Lane, LaneStats, Scan, change_probability, lane_of, lane_stats
from notifier.core.model import EventTime
from notifier.core.stages import Stage
from notifier.core.views import ShipmentView
from notifier.core.zones import country_zones


class JourneySource(Protocol):
    async def journeys(self, *, since: dt.datetime | None = None) -> list[Journey]: ...


@runtime_checkable
class ImportingSource(JourneySource, Protocol):
    """A source that also says when history was last imported into it (the Store)."""

    async def history_imported_at(self) -> dt.datetime | None: ...


class LaneCache:
    """One LaneStats shared by the poll scheduler, the rules and the renderer.

    Lane statistics move slowly (a lane needs days of deliveries to change its percentiles), so
    they are rebuilt at most every `max_age` rather than on every poll: the hot path stays a
    dictionary lookup. A `notifier history import` from another process is noticed within
    `import_check`: the source's import mark is one primary-key read, made that rarely.
    """

    def __init__(
        self,
        source: JourneySource,
        *,
        max_age: dt.timedelta = dt.timedelta(hours=1),
        history: dt.timedelta = dt.timedelta(days=365),
        import_check: dt.timedelta = dt.timedelta(minutes=1),
    ) -> None:
        self._source = source
        self._max_age = max_age
        self._history = history
        self._import_check = import_check
        self._stats: LaneStats | None = None
        self._built_at: dt.datetime | None = None
        self._imported_at: dt.datetime | None = None
        self._checked_at: dt.datetime | None = None

    def invalidate(self) -> None:
        """Forget the statistics (after a history import)."""
        self._stats = None
        self._built_at = None

    async def stats(self, now: dt.datetime) -> LaneStats:
        """The statistics, rebuilt from the store when older than `max_age` or when history was
        imported since they were built. `now` is aware UTC."""
        if isinstance(self._source, ImportingSource) and (
            self._checked_at is None or now - self._checked_at >= self._import_check
        ):
            self._checked_at = now
            imported = await self._source.history_imported_at()
            if imported != self._imported_at:
                self._imported_at = imported
                self.invalidate()
        if self._stats is None or self._built_at is None or now - self._built_at >= self._max_age:
            journeys = await self._source.journeys(since=now - self._history)
            # Scans carry the local time of where they happened: as_of a day ahead takes in every
            # zone's, and parcels still on their way are censored at UTC-12, the earliest present
            # anywhere, so that none is credited with a wait that has not happened yet.
            # About 0.7 s of CPU for 10,000 shipments (benchmarks/eta.py): in a thread, so the
            # event loop (the web face, the heartbeat) goes on meanwhile.
            utc = now.replace(tzinfo=None)
            self._stats = await asyncio.to_thread(
                lane_stats, journeys, as_of=utc + dt.timedelta(days=1), censor_at=utc - dt.timedelta(hours=12)
            )
            self._built_at = now
        return self._stats


# Stages whose scans Japan Post prints in the origin's local time; later ones are abroad.
_AT_ORIGIN = frozenset(
    {Stage.PENDING, Stage.ACCEPTED, Stage.IN_TRANSIT, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN}
)


def _local_now(now: dt.datetime, country: str | None) -> dt.datetime:
    """`now` (aware) on the wall clock of `country`, as Japan Post prints scans there."""
    zone = country_zones().get((country or "JP").upper(), "Asia/Tokyo")
    return now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


@functools.lru_cache(maxsize=65_536)
def _lane(number: str, item_type: str | None, origin: str, destination: str | None) -> Lane:
    # Asked at every poll with the same answer; the class of goods is read with expressions.
    return lane_of(number=number, item_type=item_type, origin=origin, destination=destination)


def chance_of(view: ShipmentView, stage: Stage, changed: bool, now: dt.datetime, stats: LaneStats) -> Chance:
    """The chance of a new scan of `view` within a given time after `now` (aware UTC), from
    the lane's history: what core.policy.next_poll places an adaptive poll with.

    Quiet time counts from the last scan as printed, read on the wall clock of where it
    happened (the origin's zone before departure, the destination's after). A poll that just
    found news counts it from now; so does a printed time the zone guess puts in the future."""
    lane = _lane(view.number, view.item_type, view.origin, view.destination)
    local = _local_now(now, view.origin if stage in _AT_ORIGIN else view.destination)
    last = local
    if not changed and view.last_event_time:
        when = EventTime.from_iso(view.last_event_time)
        printed = dt.datetime.combine(when.date, when.time or dt.time(0))
        if printed <= local:
            last = printed
        elif view.last_changed_at is not None:
            last = local - max(dt.timedelta(0), now - view.last_changed_at)
    journey = Journey(number=view.number, lane=lane, scans=(Scan(at=last, stage=stage),))

    def chance(within: dt.timedelta) -> float | None:
        return change_probability(journey, stats, now=local, within=within)

    return chance
