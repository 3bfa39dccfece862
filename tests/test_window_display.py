"""The delivery window as customers read it: the one line (en/ja), which messages carry it, settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from notifier.config import parse_settings
from notifier.core.compose import MailSettings, drafts_for, shown_window
from notifier.core.eta import Calibration, Estimate, Lane, Window
from notifier.core.messages import Template
from notifier.core.render import Renderer
from notifier.core.rules import Notification, Recipient, ShipmentFacts
from notifier.core.stages import Stage
from notifier.core.windows import (
    IN_TRANSIT_TEMPLATES,
    MailWindows,
    WindowSettings,
    for_mail,
    for_page,
    window_dates,
    window_json,
    window_line,
    withheld_reason,
)
from notifier.errors import ConfigError
from notifier.web.pages import tracking_page
from tests.test_web_pages import CONTACTS, history

LANE = Lane(service="ems", destination="US")
TODAY = dt.date(2026, 10, 10)  # a Saturday
MAIL = MailSettings(sender="Sakura Stationery <shop@sakura.example>", shop_name="Sakura Stationery")
# 2026-10-10 09:00 in Japan and in New York alike (the US zone of the destination is New York's).
NOW = dt.datetime(2026, 10, 10, 14, 0, tzinfo=dt.UTC)


def window(first: dt.date, last: dt.date, basis: str = "lane") -> Window:
    return Window(earliest=first, latest=last, basis=basis, lane=LANE)


def shown(first: dt.date, last: dt.date, basis: str = "lane") -> Estimate:
    return Estimate(window=window(first, last, basis), withheld=None)


@pytest.mark.parametrize(
    ("first", "last", "en", "ja"),
    [
        # Same month: the month named once.
        (
            dt.date(2026, 10, 14),
            dt.date(2026, 10, 17),
            "Expected between Wed 14 and Sat 17 October",
            "10月14日(水)〜10月17日(土)のお届け見込みです。",
        ),
        # A month boundary: both months.
        (
            dt.date(2026, 10, 30),
            dt.date(2026, 11, 4),
            "Expected between Fri 30 October and Wed 4 November",
            "10月30日(金)〜11月4日(水)のお届け見込みです。",
        ),
        # A year boundary: the year only where it is not the message's.
        (
            dt.date(2026, 12, 30),
            dt.date(2027, 1, 5),
            "Expected between Wed 30 December and Tue 5 January 2027",
            "12月30日(水)〜2027年1月5日(火)のお届け見込みです。",
        ),
        # Both dates in the next year, same month.
        (
            dt.date(2027, 1, 4),
            dt.date(2027, 1, 8),
            "Expected between Mon 4 and Fri 8 January 2027",
            "2027年1月4日(月)〜2027年1月8日(金)のお届け見込みです。",
        ),
        # A window of one day says so.
        (
            dt.date(2026, 10, 10),
            dt.date(2026, 10, 10),
            "Expected on Sat 10 October",
            "10月10日(土)のお届け見込みです。",
        ),
    ],
)
def test_the_line_in_both_languages(first: dt.date, last: dt.date, en: str, ja: str) -> None:
    assert window_line(window(first, last), locale="en", today=TODAY) == en
    assert window_line(window(first, last), locale="ja", today=TODAY) == ja


def test_every_japanese_weekday_is_in_the_customary_form() -> None:
    days = [
        window_dates(window(TODAY + dt.timedelta(d), TODAY + dt.timedelta(d)), locale="ja", today=TODAY)
        for d in range(7)
    ]
    assert [d[-3:] for d in days] == ["(土)", "(日)", "(月)", "(火)", "(水)", "(木)", "(金)"]
    assert days[3] == "10月13日(火)"


def test_a_passed_window_is_never_shown() -> None:
    yesterday = window(TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=1))
    assert window_line(yesterday, locale="en", today=TODAY) == ""
    assert window_line(yesterday, locale="ja", today=TODAY) == ""
    late = Estimate(window=yesterday, withheld=None)
    assert for_page(late, Stage.DEPARTED_ORIGIN, TODAY) is None
    assert withheld_reason(late, Stage.DEPARTED_ORIGIN, TODAY) == "passed"
    # A window that began before today is shown from today.
    started = window(TODAY - dt.timedelta(days=2), TODAY + dt.timedelta(days=3))
    assert window_line(started, locale="en", today=TODAY) == "Expected between Sat 10 and Tue 13 October"
    assert for_page(Estimate(window=started, withheld=None), Stage.DEPARTED_ORIGIN, TODAY) == window(
        TODAY, TODAY + dt.timedelta(days=3)
    )
    # The last day of the window is still inside it.
    assert window_line(window(TODAY - dt.timedelta(days=2), TODAY), locale="en", today=TODAY).startswith(
        "Expected"
    )


@pytest.mark.parametrize(
    "stage",
    [
        Stage.DELIVERED,
        Stage.RETURNED,
        Stage.RETURNING,
        Stage.RETENTION,
        Stage.ATTEMPTED_DELIVERY,
        Stage.READY_FOR_PICKUP,
        Stage.INVESTIGATION,
    ],
)
def test_no_window_once_the_parcel_is_not_travelling_to_the_customer(stage: Stage) -> None:
    estimate = shown(TODAY, TODAY + dt.timedelta(days=3))
    assert for_page(estimate, stage, TODAY) is None
    assert for_mail(estimate, stage, Template.STALLED, WindowSettings(mail=MailWindows.ALWAYS), TODAY) is None
    assert withheld_reason(estimate, stage, TODAY) in ("delivered", "not_in_transit")


def test_the_mail_policy() -> None:
    lane = shown(TODAY, TODAY + dt.timedelta(days=3))
    prior = shown(TODAY, TODAY + dt.timedelta(days=3), basis="prior")
    stage, template = Stage.DEPARTED_ORIGIN, Template.DEPARTED_ORIGIN
    default = WindowSettings()
    assert default.mail is MailWindows.HISTORY
    assert default.calibration is Calibration.BALANCED
    assert for_mail(lane, stage, template, default, TODAY) == lane.window
    assert for_mail(prior, stage, template, default, TODAY) is None  # the shop opts in to the prior's
    assert for_mail(prior, stage, template, WindowSettings(mail=MailWindows.ALWAYS), TODAY) == prior.window
    assert for_mail(lane, stage, template, WindowSettings(mail=MailWindows.NEVER), TODAY) is None
    # The page shows the prior's window too (marked as such where it is shown).
    assert for_page(prior, stage, TODAY) == prior.window
    for t in (
        Template.DELIVERED,
        Template.RETURNED,
        Template.RETENTION,
        Template.OPERATOR_DIGEST,
        Template.TEST,
    ):
        assert t not in IN_TRANSIT_TEMPLATES
        assert for_mail(lane, stage, t, default, TODAY) is None
    assert window_json(lane.window) == {"earliest": "2026-10-10", "latest": "2026-10-13", "basis": "lane"}
    assert window_json(None) is None


def notification(template: Template, stage: Stage, locale: str) -> Notification:
    events = history(stage)
    return Notification(
        dedup_key=f"k:{locale}:{template}",
        template=template,
        rule=str(template),
        stage=stage,
        recipient=Recipient(subscription_id=1, email=f"c-{locale}@example.com", locale=locale),
        event=events[-1],
    )


SHIPMENT = ShipmentFacts(
    id=1, number="EJ123456785JP", item_type="EMS", destination="US", stage=Stage.DEPARTED_ORIGIN
)


def composed(template: Template, stage: Stage, locale: str, estimate: Estimate | None) -> tuple[str, str]:
    (draft,) = drafts_for(
        [notification(template, stage, locale)],
        SHIPMENT,
        history(stage),
        CONTACTS,
        mail=MAIL,
        renderer=Renderer(),
        now=NOW,
        estimate=estimate,
        windows=WindowSettings(),
    )
    assert draft.error is None, draft.error
    from email import message_from_bytes, policy

    message = message_from_bytes(draft.raw, policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


@pytest.mark.parametrize(
    ("locale", "line"),
    [
        ("en", "Expected between Wed 14 and Sat 17 October"),
        ("ja", "10月14日(水)〜10月17日(土)のお届け見込みです。"),
    ],
)
def test_an_in_transit_email_carries_the_line_once_after_the_news(locale: str, line: str) -> None:
    estimate = shown(dt.date(2026, 10, 14), dt.date(2026, 10, 17))
    text, html = composed(Template.DEPARTED_ORIGIN, Stage.DEPARTED_ORIGIN, locale, estimate)
    assert text.count(line) == 1
    assert f"<strong>{line}</strong>" in html
    # Straight after the first paragraph (the news), before the tracking link.
    assert text.index(line) < text.index("http")
    without, _ = composed(Template.DEPARTED_ORIGIN, Stage.DEPARTED_ORIGIN, locale, None)
    assert line not in without
    assert "Expected" not in without
    assert "お届け見込み" not in without


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_a_delivered_email_and_a_passed_window_carry_no_line(locale: str) -> None:
    estimate = shown(dt.date(2026, 10, 14), dt.date(2026, 10, 17))
    text, html = composed(Template.DELIVERED, Stage.DELIVERED, locale, estimate)
    assert "Expected between" not in text + html
    assert "お届け見込み" not in text + html
    passed = shown(dt.date(2026, 10, 5), dt.date(2026, 10, 9))
    text, html = composed(Template.DEPARTED_ORIGIN, Stage.DEPARTED_ORIGIN, locale, passed)
    assert "Expected between" not in text + html
    assert "お届け見込み" not in text + html
    assert (
        shown_window(
            [notification(Template.DEPARTED_ORIGIN, Stage.DEPARTED_ORIGIN, locale)],
            SHIPMENT,
            passed,
            WindowSettings(),
            now=NOW,
        )
        is None
    )


def test_the_window_recorded_is_the_one_shown() -> None:
    estimate = shown(dt.date(2026, 10, 14), dt.date(2026, 10, 17))
    told = [notification(Template.DEPARTED_ORIGIN, Stage.DEPARTED_ORIGIN, "en")]
    assert shown_window(told, SHIPMENT, estimate, WindowSettings(), now=NOW) == estimate.window
    assert shown_window(told, SHIPMENT, estimate, None, now=NOW) is None
    delivered = [notification(Template.DELIVERED, Stage.DELIVERED, "en")]
    assert shown_window(delivered, SHIPMENT, estimate, WindowSettings(), now=NOW) is None


def test_settings_parse_and_name_the_line_of_a_bad_value(tmp_path: Path) -> None:
    settings = parse_settings('[estimates]\ncalibration = "conservative"\nmail = "always"\n')
    assert settings.estimates == WindowSettings(calibration=Calibration.CONSERVATIVE, mail=MailWindows.ALWAYS)
    assert parse_settings("").estimates == WindowSettings()
    path = tmp_path / "notifier.toml"
    path.write_text('[estimates]\ncalibration = "wide"\nmail = true\nshow = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_settings(path.read_text(encoding="utf-8"), path)
    assert str(caught.value).splitlines() == [
        f'{path}:2: estimates.calibration: must be "conservative", "balanced" or "aggressive"',
        f'{path}:3: estimates.mail: must be "history", "always" or "never"',
        f"{path}:4: estimates.show: unknown key",
    ]


@pytest.mark.parametrize(
    ("locale", "line", "note"),
    [
        ("en", "Expected between Wed 14 and Sat 17 October", "published delivery times"),
        ("ja", "10月14日(水)〜10月17日(土)のお届け見込みです。", "公表しているお届け日数"),
    ],
)
def test_the_tracking_page_shows_the_window_and_marks_a_prior_one(locale: str, line: str, note: str) -> None:
    from tests.test_web_pages import ADDRESS, RENDERER, shipment
    from tests.test_web_pages import MAIL as PAGE_MAIL

    def page(window: Window | None, stage: Stage = Stage.DEPARTED_ORIGIN) -> str:
        built = tracking_page(
            shipment(stage),
            history(stage),
            CONTACTS,
            PAGE_MAIL,
            recipient=ADDRESS,
            locale=locale,
            window=window,
            today=TODAY,
        )
        return RENDERER.render_page("tracking.html.j2", {**built.values(), "static_url": "s.css"})

    lane = page(window(dt.date(2026, 10, 14), dt.date(2026, 10, 17)))
    assert f"<strong>{line}</strong>" in lane
    assert note not in lane
    prior = page(window(dt.date(2026, 10, 14), dt.date(2026, 10, 17), basis="prior"))
    assert f"<strong>{line}</strong>" in prior
    assert note in prior
    assert line not in page(None)
    marker = "Expected" if locale == "en" else "お届け見込み"
    assert marker not in page(window(dt.date(2026, 10, 1), dt.date(2026, 10, 9)))  # passed
    assert marker not in page(window(dt.date(2026, 10, 14), dt.date(2026, 10, 17)), Stage.DELIVERED)
