"""The progress tracker: one journey model, agreeing with each message's headline in both languages."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest

from notifier.core.compose import MailSettings, context_for
from notifier.core.journey import INTERNATIONAL_STEPS, RETURN_STEPS
from notifier.core.localize import pair_events
from notifier.core.messages import EventLine, Template
from notifier.core.model import ItemResult, TrackingEvent
from notifier.core.parser import parse_page
from notifier.core.render import LOCALES, Renderer, journey
from notifier.core.rules import Notification, Recipient, ShipmentFacts
from notifier.core.stages import Stage, stage_info
from notifier.testing.samples import sample_context
from notifier.testing.simulator import Simulator, builtin_journeys, catalog_journeys

# What each stage's headline (the title of the message the stage gets, or of the stall message
# for stages without one) says about where the parcel is, as the station the tracker must mark
# "now". Written from the headlines, not from the model: None where the tracker is not shown.
HEADLINE_STEP_ABROAD: dict[Stage, str | None] = {
    Stage.PENDING: None,
    Stage.ACCEPTED: "accepted",
    Stage.IN_TRANSIT: "accepted",
    Stage.OUTWARD_EXCHANGE: "accepted",
    Stage.DEPARTED_ORIGIN: "left_japan",
    Stage.INWARD_EXCHANGE: "arrived",
    Stage.CUSTOMS_PRESENTED: "customs",
    Stage.CUSTOMS_CLEARED: "customs",
    Stage.INLAND_TRANSIT: "customs",
    Stage.AT_DELIVERY_OFFICE: "delivery_office",
    Stage.OUT_FOR_DELIVERY: "delivery",
    Stage.ATTEMPTED_DELIVERY: "delivery",
    Stage.REDELIVERY_REQUESTED: "delivery",
    Stage.RETENTION: "delivery",
    Stage.READY_FOR_PICKUP: "delivery",
    Stage.DELIVERED: "delivered",
    Stage.RETURNING: "returning",
    Stage.RETURNED: "returned",
    # These say nothing of a place: the furthest station reached (the delivering office here).
    Stage.INVESTIGATION: "delivery_office",
    Stage.FORWARDED: "delivery_office",
    Stage.UNKNOWN: "delivery_office",
}
HEADLINE_STEP_AT_HOME: dict[Stage, str | None] = {
    **HEADLINE_STEP_ABROAD,
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
}

# The forward journey in the order scans come; exception stages follow the delivering office.
_PATH = (
    Stage.ACCEPTED,
    Stage.IN_TRANSIT,
    Stage.OUTWARD_EXCHANGE,
    Stage.DEPARTED_ORIGIN,
    Stage.INWARD_EXCHANGE,
    Stage.CUSTOMS_PRESENTED,
    Stage.CUSTOMS_CLEARED,
    Stage.INLAND_TRANSIT,
    Stage.AT_DELIVERY_OFFICE,
    Stage.OUT_FOR_DELIVERY,
    Stage.ATTEMPTED_DELIVERY,
    Stage.REDELIVERY_REQUESTED,
    Stage.RETENTION,
    Stage.READY_FOR_PICKUP,
    Stage.DELIVERED,
)


def _history(stage: Stage) -> list[Stage]:
    if stage is Stage.PENDING:
        return []
    if stage in _PATH:
        return list(_PATH[: _PATH.index(stage) + 1])
    return [*_PATH[: _PATH.index(Stage.AT_DELIVERY_OFFICE) + 1], stage]


def _line(stage: Stage, locale: str) -> EventLine:
    info = stage_info(stage)
    return EventLine(
        time="2026-03-02 10:15",
        status=stage.value,
        stage=stage.value,
        stage_meaning=info.meaning_ja if locale == "ja" else info.meaning_en,
        office="X",
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def _caption(renderer: Renderer, locale: str, key: str) -> str:
    words = renderer.environment.get_template(f"{locale}/_wording.j2@txt").module
    return str(words.step(key))  # type: ignore[attr-defined]


@pytest.mark.parametrize("international", [True, False], ids=["abroad", "at-home"])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("stage", list(Stage), ids=[s.value for s in Stage])
def test_the_trackers_now_step_agrees_with_the_headline(
    renderer: Renderer, stage: Stage, locale: str, international: bool
) -> None:
    template = Template(stage.value) if stage.value in set(Template) else Template.STALLED
    history = tuple(_line(s, locale) for s in _history(stage))
    context = dataclasses.replace(
        sample_context(template, locale),
        stage=stage.value,
        event=history[-1] if history else None,
        history=history,
        international=international,
        stall_is_normal=True if template is Template.STALLED else None,
    )
    message = renderer.render(context)
    expected = (HEADLINE_STEP_ABROAD if international else HEADLINE_STEP_AT_HOME)[stage]
    now = re.findall(r"^\[>\] (.*)$", message.text, flags=re.MULTILINE)
    marked = re.findall(r'<strong aria-current="step">(.*?)</strong>', message.html)
    if expected is None:
        assert now == []
        assert marked == []
        return
    caption = _caption(renderer, locale, expected)
    assert len(now) == 1
    assert now[0].startswith(caption), (now, caption)
    assert len(marked) == 1
    assert marked[0].startswith(caption), (marked, caption)


_ALL = list(Stage)


@pytest.mark.parametrize("international", [True, False], ids=["abroad", "at-home"])
def test_the_tracker_never_moves_back_along_a_journey(international: bool) -> None:
    # Every sequence of three stages, and a fourth after it: a later scan moves the "now" station
    # forward or leaves it, unless it turns the parcel round (a return is another row of stations).
    def position(stages: tuple[Stage, ...]) -> tuple[tuple[str, ...], int] | None:
        # As a message renders it: the scans shown, oldest first, and the stage now.
        steps = journey(stages[-1].value, [lines[s] for s in stages], international)
        if not steps:
            return None
        keys = tuple(s.key for s in steps)
        return keys, next(i for i, s in enumerate(steps) if s.state == "current")

    lines = {s: _line(s, "en") for s in _ALL}
    for before in itertools.product(_ALL, repeat=3):
        was = position(before)
        if was is None:
            continue
        for nxt in _ALL:
            now = position((*before, nxt))
            assert now is not None, (before, nxt)
            if now[0] == was[0]:
                assert now[1] >= was[1], (before, nxt, was, now)
            else:
                assert now[0] == RETURN_STEPS or was[0] == RETURN_STEPS, (before, nxt)


def test_the_international_tracker_has_the_delivering_office() -> None:
    scans = [Stage.ACCEPTED, Stage.DEPARTED_ORIGIN, Stage.CUSTOMS_CLEARED, Stage.AT_DELIVERY_OFFICE]
    steps = journey("at_delivery_office", [_line(s, "en") for s in scans], True)
    assert [s.key for s in steps] == list(INTERNATIONAL_STEPS)
    assert [s.key for s in steps if s.state == "current"] == ["delivery_office"]


def _paired_journeys() -> list[tuple[str, list[TrackingEvent], ItemResult]]:
    found = []
    for j in [*builtin_journeys(), *catalog_journeys()]:
        if not j.scans:
            continue
        simulator = Simulator([dataclasses.replace(j, revealed=len(j.scans))])
        try:
            en = parse_page(simulator.render_detail(j.number, "en")).items[0]
            ja = parse_page(simulator.render_detail(j.number, "ja")).items[0]
        except LookupError:
            continue
        found.append((j.number, list(en.events), ja))
    return found


@pytest.mark.parametrize(
    ("number", "events", "ja"), _paired_journeys(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_japanese_email_shows_the_same_tracker_as_the_english_one(
    number: str, events: list[TrackingEvent], ja: ItemResult
) -> None:
    # The Japanese page words some scans as another stage (税関保留 for "Item held at inward
    # Office of Exchange", 中継 for "Item out of sorting centre"): its words are quoted, but where
    # the parcel is comes from the one polled history, in every language.
    mail = MailSettings(sender="shop@sakura.example", shop_name="Sakura")
    shipment = ShipmentFacts(id=1, number=number, stage=events[-1].stage)
    for k in range(1, len(events) + 1):
        shown = events[:k]
        wording = pair_events(shown, ja, "ja")
        assert wording is not None
        trackers = []
        for locale in LOCALES:
            notification = Notification(
                dedup_key="k",
                template=Template.STALLED,
                rule="r",
                stage=shown[-1].stage,
                recipient=Recipient(subscription_id=1, email="a@example.com", locale=locale),
                event=shown[-1],
            )
            context = context_for(notification, shipment, shown, (), mail, wording=wording)
            trackers.append(journey(context.stage, context.history, context.international))
        assert trackers[0] == trackers[1], (number, k)
