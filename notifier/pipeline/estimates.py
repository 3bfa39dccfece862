"""The delivery estimate of one shipment now: the lanes' statistics (LaneCache) and the model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from notifier.core.eta import Estimate, estimate
from notifier.core.model import TrackingEvent
from notifier.core.views import ShipmentView
from notifier.core.windows import (
    Shown,
    WindowSettings,
    for_page,
    journey_of,
    local_today,
    model_now,
    withheld_reason,
)
from notifier.core.zones import country_zones
from notifier.pipeline.lanes import JourneySource, LaneCache


class Estimator:
    """One LaneCache over the store and the [estimates] settings, shared by everything that
    shows a window (messages, tracking page, board, status)."""

    def __init__(
        self, source: JourneySource, settings: WindowSettings, *, lanes: LaneCache | None = None
    ) -> None:
        self.settings = settings
        self.lanes = lanes if lanes is not None else LaneCache(source)

    async def estimate(
        self,
        *,
        number: str,
        item_type: str | None,
        origin: str,
        destination: str | None,
        history: Sequence[TrackingEvent],
        now: dt.datetime,
    ) -> Estimate:
        """The estimate at `now` (aware) from the shipment's history and its lane's statistics."""
        stats = await self.lanes.stats(now)
        journey = journey_of(
            number=number, item_type=item_type, origin=origin, destination=destination, events=history
        )
        return estimate(
            journey, stats, now=model_now(now, destination), calibration=self.settings.calibration
        )

    async def for_view(
        self, view: ShipmentView, history: Sequence[TrackingEvent], *, now: dt.datetime
    ) -> Estimate:
        return await self.estimate(
            number=view.number,
            item_type=view.item_type,
            origin=view.origin,
            destination=view.destination,
            history=history,
            now=now,
        )


async def shown_windows(
    estimator: Estimator,
    views: Sequence[ShipmentView],
    histories: Mapping[int, Sequence[TrackingEvent]],
    *,
    now: dt.datetime,
) -> dict[int, Shown]:
    """For each shipment: the window a page, the board or `status` shows now (any basis; the
    reader's "today" is the destination's), or None and why it is withheld."""
    found: dict[int, Shown] = {}
    for view in views:
        estimated = await estimator.for_view(view, histories.get(view.id, ()), now=now)
        today = local_today(now, country_zones().get((view.destination or "").upper()))
        found[view.id] = (
            for_page(estimated, view.stage, today),
            withheld_reason(estimated, view.stage, today),
        )
    return found
