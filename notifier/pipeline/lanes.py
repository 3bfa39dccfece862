"""The lanes' statistics for the running daemon: built from the store, rebuilt when stale."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

from notifier.core.eta import Journey, LaneStats, lane_stats


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
            utc = now.replace(tzinfo=None)
            self._stats = lane_stats(
                journeys, as_of=utc + dt.timedelta(days=1), censor_at=utc - dt.timedelta(hours=12)
            )
            self._built_at = now
        return self._stats
