"""Which post office contacts a customer is shown, and their phone numbers in a form they can dial."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from notifier.core.journey import current_step
from notifier.core.messages import ContactLine

# A Japanese number as Japan Post prints it: trunk prefix 0, groups joined by hyphens, 10 digits
# (landlines) or 11 (mobiles, 050 IP phones).
_JAPANESE = re.compile(r"0\d{1,4}-\d{1,4}-\d{3,4}")
# Free-dial and navi-dial numbers cannot be called from outside Japan at all.
_NOT_FROM_ABROAD = ("0120", "0800", "0570")
_ACCEPTANCE = frozenset({"acceptance", "引受"})
# Stations reached once the parcel is in the destination country (or on its way back).
_ABROAD = frozenset(
    {"arrived", "customs", "delivery_office", "delivery", "delivered", "returning", "returned"}
)


def is_japanese_phone(phone: str) -> bool:
    """Whether `phone` is a Japanese number in domestic form (0X-XXXX-XXXX) or with +81."""
    text = phone.strip()
    return text.startswith("+81") or bool(_JAPANESE.fullmatch(text))


def international_phone(phone: str) -> str:
    """The number as dialled from abroad (+81 3-0000-0150), or "" when it cannot be.

    A number already in + form is kept. A Japanese domestic one gets +81 for its trunk 0, except
    free-dial and navi-dial numbers, which do not answer calls from abroad. Any other national
    form (another country's, whose code the page does not say) cannot be made diallable: "".
    """
    text = phone.strip()
    if text.startswith("+"):
        return text
    digits = re.sub(r"\D", "", text)
    if _JAPANESE.fullmatch(text) and len(digits) in (10, 11) and not digits.startswith(_NOT_FROM_ABROAD):
        return "+81 " + text[1:]
    return ""


def arrived_abroad(stages: Iterable[str], international: bool) -> bool:
    """Whether an international parcel has reached the destination country (or is coming back)."""
    return international and current_step(stages, True) in _ABROAD


def shown_contacts(
    contacts: Sequence[ContactLine], *, international: bool, stages: Iterable[str]
) -> tuple[ContactLine, ...]:
    """The offices a customer is given. At home, all of them as Japan Post prints them. Abroad,
    phones in international form or none; and once the parcel has arrived there, no office in
    Japan: from then on the customer's local post office answers (the tracking guide in
    ../shared/seeds/: "From this stage, all questions ... should be made with your local post office")."""
    if not international:
        return tuple(contacts)
    arrived = arrived_abroad(stages, international)
    shown: list[ContactLine] = []
    for c in contacts:
        in_japan = c.role.strip().casefold() in _ACCEPTANCE or is_japanese_phone(c.phone)
        if in_japan and arrived:
            continue
        shown.append(ContactLine(role=c.role, office=c.office, phone=international_phone(c.phone)))
    return tuple(shown)
