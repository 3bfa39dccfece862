"""Which lane a shipment travels: the service from its number and class of goods, and its destination."""

from __future__ import annotations

import re

from notifier.core.eta.types import Lane

# Words in the class-of-goods cell (English or Japanese, folded) naming the parcel's carriage.
# Japan Post prints "Parcel" for every international parcel on the pages captured so far
# (japanpost/FORMAT.md section 7), so a parcel's carriage is often unknown: its lane is "parcel".
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ems", ("ems",)),
    ("epacket", ("epacket", "e-packet", "eパケット", "ｅパケット")),
    ("sal", ("sal", "エコノミー航空")),
    ("surface", ("surface", "船便")),
    ("air", ("air", "航空")),
)
# S10 service indicators (UPU S10, first letter): E EMS, C parcels, L ePacket, R registered.
_PREFIXES = {"E": "ems", "C": "parcel", "L": "epacket", "R": "registered"}


_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def _service_from_kind(kind: str) -> str | None:
    # Latin words whole ("ems" is not the end of "items"), Japanese ones anywhere in the cell.
    words = set(_WORD.findall(kind))
    for service, names in _KINDS:
        if any(name in words if name.isascii() else name in kind for name in names):
            return service
    return None


def lane_of(*, number: str, item_type: str | None, origin: str, destination: str | None) -> Lane:
    """The lane of a shipment from what the page and the watch say.

    Services: ems, air, sal, surface (parcels whose carriage is named), parcel (an international
    parcel of unnamed carriage), epacket, registered, domestic, unknown. The class of goods wins
    over the number's prefix when it names a carriage; the destination is "??" when unknown.
    """
    kind = (item_type or "").strip().casefold()
    number = number.strip().upper()
    prefix = number[:1]
    international = len(number) == 13 and number[:2].isalpha() and number[-2:].isalpha()
    if origin.upper() == "JP" and (destination or "JP").upper() == "JP" and not international:
        return Lane(service="domestic", destination="JP")
    service = _service_from_kind(kind)
    if service is None:
        service = _PREFIXES.get(prefix, "unknown") if international else "unknown"
    elif service in ("air", "sal", "surface") and international and prefix not in ("C", ""):
        # "air" in the cell of a letter-post item (e.g. a registered airmail small packet) says
        # nothing about a parcel's carriage: the number's service stands.
        service = _PREFIXES.get(prefix, "unknown")
    return Lane(service=service, destination=(destination or "").strip().upper() or "??")
