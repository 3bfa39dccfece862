"""The progress tracker's model: which step of the journey each stage is, for every message, page and language."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping

from notifier.core.stages import Stage

# The stations a customer is shown, in order. Captions live in each locale's _wording.j2 (`step`);
# the keys are the same in every language, so a stage is at the same station in all of them.
INTERNATIONAL_STEPS: tuple[str, ...] = (
    "accepted",
    "left_japan",
    "arrived",
    "customs",
    "delivery_office",
    "delivery",
    "delivered",
)
DOMESTIC_STEPS: tuple[str, ...] = ("accepted", "on_the_way", "delivery_office", "delivery", "delivered")
RETURN_STEPS: tuple[str, ...] = ("accepted", "returning", "returned")

_DELIVERY_BAND = (
    Stage.OUT_FOR_DELIVERY,
    Stage.ATTEMPTED_DELIVERY,
    Stage.REDELIVERY_REQUESTED,
    Stage.RETENTION,
    Stage.READY_FOR_PICKUP,
)

# Where each stage puts the parcel. Stages missing here (pending, investigation, forwarding,
# unknown wordings) say nothing of where it is: the furthest station reached before them stands.
INTERNATIONAL: Mapping[Stage, str] = types.MappingProxyType(
    {
        Stage.ACCEPTED: "accepted",
        # Relays inside Japan before the exchange office; imports reuse the same wordings after
        # arrival, which the furthest-station rule keeps from moving the tracker back.
        Stage.IN_TRANSIT: "accepted",
        Stage.OUTWARD_EXCHANGE: "accepted",
        Stage.DEPARTED_ORIGIN: "left_japan",
        Stage.INWARD_EXCHANGE: "arrived",
        Stage.CUSTOMS_PRESENTED: "customs",
        Stage.CUSTOMS_CLEARED: "customs",
        # After customs, on the way to the delivering office: customs is the last station passed.
        Stage.INLAND_TRANSIT: "customs",
        Stage.AT_DELIVERY_OFFICE: "delivery_office",
        **dict.fromkeys(_DELIVERY_BAND, "delivery"),
        Stage.DELIVERED: "delivered",
    }
)
DOMESTIC: Mapping[Stage, str] = types.MappingProxyType(
    {
        Stage.ACCEPTED: "accepted",
        **dict.fromkeys(
            (
                Stage.IN_TRANSIT,
                Stage.OUTWARD_EXCHANGE,
                Stage.DEPARTED_ORIGIN,
                Stage.INWARD_EXCHANGE,
                Stage.CUSTOMS_PRESENTED,
                Stage.CUSTOMS_CLEARED,
                Stage.INLAND_TRANSIT,
            ),
            "on_the_way",
        ),
        Stage.AT_DELIVERY_OFFICE: "delivery_office",
        **dict.fromkeys(_DELIVERY_BAND, "delivery"),
        Stage.DELIVERED: "delivered",
    }
)
# On the way back every forward stage only tells that the parcel had been handed over.
RETURN: Mapping[Stage, str] = types.MappingProxyType(
    {**dict.fromkeys(DOMESTIC, "accepted"), Stage.RETURNING: "returning", Stage.RETURNED: "returned"}
)
_RETURNS = frozenset({Stage.RETURNING, Stage.RETURNED})


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One station of the progress tracker: `key` names its caption in the wording."""

    key: str
    state: str  # "done", "current" or "todo"


def _stage(value: str) -> Stage | None:
    try:
        return Stage(value)
    except ValueError:
        return None


def steps_for(stages: Iterable[str], international: bool) -> list[Step]:
    """The tracker for a parcel that went through `stages` (oldest first, the current one last).

    The current station is the furthest one reached, so a later scan that names an earlier place
    (a relay wording reused abroad, an investigation) never moves the tracker back. A parcel whose
    last placed stage is a return is shown on the way back. [] when no stage says where it is.
    """
    known = [s for s in (_stage(v) for v in stages) if s is not None]
    placed = [s for s in known if s in RETURN]
    if not placed:
        return []
    if placed[-1] in _RETURNS:
        keys, table = RETURN_STEPS, RETURN
    elif international:
        keys, table = INTERNATIONAL_STEPS, INTERNATIONAL
    else:
        keys, table = DOMESTIC_STEPS, DOMESTIC
    position = max(keys.index(table[s]) for s in placed if s in table)
    return [
        Step(key, "done" if i < position else "current" if i == position else "todo")
        for i, key in enumerate(keys)
    ]


def current_step(stages: Iterable[str], international: bool) -> str | None:
    """The key of the station marked "now", or None when the tracker is not shown."""
    return next((s.key for s in steps_for(stages, international) if s.state == "current"), None)
