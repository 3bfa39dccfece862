"""The built-in sample messages: an EMS journey's scans, the seed advice table and the previews index."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from notifier.core.contacts import shown_contacts
from notifier.core.eta import Lane, Window
from notifier.core.messages import (
    ContactLine,
    DigestLine,
    EventLine,
    MessageContext,
    RenderedMessage,
    StallLine,
    Template,
)
from notifier.core.posts import post_for
from notifier.core.render import LOCALES, Renderer
from notifier.core.retention import holding_period
from notifier.core.stages import Stage, stage_info
from notifier.core.windows import IN_TRANSIT_TEMPLATES, window_line


def render_preview(template: Template, locale: str, renderer: Renderer | None = None) -> RenderedMessage:
    """The message rendered with the built-in sample context (by default with the packaged templates)."""
    return (renderer or _packaged()).render(sample_context(template, locale))


@functools.cache
def _packaged() -> Renderer:
    # Compiling every template takes far longer than rendering one, and the packaged ones never
    # change while the process runs.
    return Renderer()


# ------------------------------------------------------------------------------------ sample context


@dataclasses.dataclass(frozen=True, slots=True)
class _Scan:
    time: str
    status_en: str
    status_ja: str
    stage: Stage
    office_en: str
    office_ja: str
    region_en: str
    region_ja: str
    postal_code: str = ""

    def line(self, locale: str) -> EventLine:
        info = stage_info(self.stage)
        ja = locale == "ja"
        return EventLine(
            time=self.time,
            status=self.status_ja if ja else self.status_en,
            stage=self.stage.value,
            stage_meaning=info.meaning_ja if ja else info.meaning_en,
            office=self.office_ja if ja else self.office_en,
            region=self.region_ja if ja else self.region_en,
            postal_code=self.postal_code,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Place:
    office_en: str
    office_ja: str
    region_en: str
    region_ja: str
    postal_code: str = ""


def _scan(place: _Place, time: str, status_en: str, status_ja: str, stage: Stage) -> _Scan:
    return _Scan(
        time,
        status_en,
        status_ja,
        stage,
        place.office_en,
        place.office_ja,
        place.region_en,
        place.region_ja,
        place.postal_code,
    )


# An EMS parcel from Tokyo to Brooklyn, as Japan Post's English and Japanese pages word it.
# Offices abroad keep their English names on the Japanese page. Phone numbers cannot ring anyone:
# Japanese subscriber numbers never start with 0 and 555-01xx is reserved for fiction in the US.
_SHIBUYA = _Place("SHIBUYA", "渋谷郵便局", "TOKYO", "東京都", "150-8799")
_TOKYO_INT = _Place("TOKYO INT", "東京国際郵便局", "TOKYO", "東京都", "138-8799")
_NEW_YORK_ISC = _Place("NEW YORK NY ISC", "NEW YORK NY ISC", "UNITED STATES", "アメリカ合衆国")
_BROOKLYN = _Place("BROOKLYN NY", "BROOKLYN NY", "UNITED STATES", "アメリカ合衆国")

_JOURNEY = {
    "accepted": _scan(_SHIBUYA, "2026-03-02 10:15", "Posting/Collection", "引受", Stage.ACCEPTED),
    "outward": _scan(
        _TOKYO_INT,
        "2026-03-02 21:40",
        "Arrival at outward office of exchange",
        "国際交換局に到着",
        Stage.OUTWARD_EXCHANGE,
    ),
    "departed": _scan(
        _TOKYO_INT,
        "2026-03-03 13:05",
        "Dispatch from outward office of exchange",
        "国際交換局から発送",
        Stage.DEPARTED_ORIGIN,
    ),
    "inward": _scan(
        _NEW_YORK_ISC,
        "2026-03-04 06:20",
        "Arrival at inward office of exchange",
        "国際交換局に到着",
        Stage.INWARD_EXCHANGE,
    ),
    "customs": _scan(
        _NEW_YORK_ISC,
        "2026-03-04 10:45",
        "Item presented to import Customs",
        "税関検査のため税関へ提示",
        Stage.CUSTOMS_PRESENTED,
    ),
    "cleared": _scan(
        _NEW_YORK_ISC,
        "2026-03-05 09:30",
        "Item returned from import Customs",
        "税関から受領",
        Stage.CUSTOMS_CLEARED,
    ),
    "office": _scan(
        _BROOKLYN, "2026-03-06 06:10", "Processing at delivery Post Office", "到着", Stage.AT_DELIVERY_OFFICE
    ),
    "out": _scan(
        _BROOKLYN, "2026-03-06 08:25", "Item out for physical delivery", "持ち出し中", Stage.OUT_FOR_DELIVERY
    ),
    "attempted": _scan(
        _BROOKLYN,
        "2026-03-06 14:50",
        "Absence. Attempted delivery.",
        "ご不在のため持ち戻り",
        Stage.ATTEMPTED_DELIVERY,
    ),
    "retention": _scan(_BROOKLYN, "2026-03-07 09:00", "Retention", "保管", Stage.RETENTION),
    "pickup": _scan(
        _BROOKLYN,
        "2026-03-07 10:30",
        "Item arrival at collection point for pick-up",
        "最寄局・最寄店送付",
        Stage.READY_FOR_PICKUP,
    ),
    "delivered": _scan(
        _BROOKLYN, "2026-03-09 11:35", "Final delivery", "お届け先にお届け済み", Stage.DELIVERED
    ),
    "investigation": _scan(_BROOKLYN, "2026-03-06 16:20", "Investigation", "調査中", Stage.INVESTIGATION),
    "returning": _scan(_BROOKLYN, "2026-03-22 08:00", "Return to Sender", "差出人に返送", Stage.RETURNING),
    "returned": _scan(_SHIBUYA, "2026-04-02 14:10", "Returned to sender", "差出人に返送済み", Stage.RETURNED),
}

# For each message: the latest scan, then the scans passed since the previous message, as if the
# shop were told about some stages only.
_SAMPLE_EVENTS: dict[Template, tuple[str, tuple[str, ...]]] = {
    Template.ACCEPTED: ("accepted", ()),
    Template.DEPARTED_ORIGIN: ("departed", ("outward",)),
    Template.INWARD_EXCHANGE: ("inward", ()),
    Template.CUSTOMS_PRESENTED: ("customs", ()),
    Template.CUSTOMS_CLEARED: ("cleared", ("inward", "customs")),
    Template.AT_DELIVERY_OFFICE: ("office", ()),
    Template.OUT_FOR_DELIVERY: ("out", ("office",)),
    Template.ATTEMPTED_DELIVERY: ("attempted", ()),
    Template.RETENTION: ("retention", ()),
    Template.RETENTION_REMINDER: ("retention", ()),
    Template.READY_FOR_PICKUP: ("pickup", ()),
    Template.DELIVERED: ("delivered", ()),
    Template.RETURNING: ("returning", ("retention",)),
    Template.RETURNED: ("returned", ()),
    Template.INVESTIGATION: ("investigation", ()),
    Template.STALLED: ("customs", ()),
    Template.TEST: ("departed", ()),
}

_SAMPLE_NUMBER = "EJ482913056JP"
_US_POST = post_for("US", _SAMPLE_NUMBER)


def _sample_contacts(locale: str, latest: _Scan, stages: Sequence[str]) -> tuple[ContactLine, ...]:
    ja = locale == "ja"
    acceptance = ContactLine(
        role="引受" if ja else "Acceptance",
        office=_SHIBUYA.office_ja if ja else "SHIBUYA",
        phone="03-0000-0150",
    )
    if latest.office_en != _BROOKLYN.office_en:
        offices: tuple[ContactLine, ...] = (acceptance,)
    else:
        delivery = ContactLine(
            role="配達" if ja else "Delivery", office="BROOKLYN NY", phone="+1 718-555-0143"
        )
        offices = (acceptance, delivery)
    # As compose.context_for gives them: what this customer abroad is shown of them.
    return shown_contacts(offices, international=True, stages=stages)


def _sample_digest(locale: str) -> tuple[DigestLine, ...]:
    if locale == "ja":
        return (
            DigestLine(
                kind="send_failed",
                subject="EJ 482 913 056 JP（Order 1001）",
                message="customer@example.com にメールを送れませんでした：550 5.1.1 宛先のメールボックスがありません",
                count=2,
            ),
            DigestLine(
                kind="pending_too_long",
                subject="EJ 271 828 189 JP（Order 1002）",
                message="登録から5日たっても、日本郵便にこの番号の記録がありません",
            ),
        )
    return (
        DigestLine(
            kind="send_failed",
            subject="EJ 482 913 056 JP (Order 1001)",
            message="Could not send to customer@example.com: 550 5.1.1 mailbox unavailable",
            count=2,
        ),
        DigestLine(
            kind="pending_too_long",
            subject="EJ 271 828 189 JP (Order 1002)",
            message="Japan Post still has no record of this number 5 days after it was added",
        ),
    )


def sample_context(template: Template, locale: str) -> MessageContext:
    """A realistic context for one message: an EMS parcel from Tokyo to Brooklyn, "Order 1001"."""
    if locale not in LOCALES:
        raise ValueError(f"no sample for locale {locale!r}; known: {', '.join(LOCALES)}")
    ja = locale == "ja"
    shop = "Sakura Stationery"
    if template is Template.OPERATOR_DIGEST:
        stall = StallLine(number="EJ 314 159 265 JP", label="Order 1003", stage="customs_presented", days=9)
        return MessageContext.digest_for(
            _sample_digest(locale), shop_name=shop, locale=locale, stalls=(stall,)
        )
    latest_key, passed_keys = _SAMPLE_EVENTS[template]
    names = list(_JOURNEY)
    latest = _JOURNEY[latest_key]
    # Branch endings (pickup, delivery, investigation, returns) follow the main line up to the hold.
    main_line = names[: names.index("retention") + 1]
    if latest_key in main_line:
        before = main_line[: main_line.index(latest_key)]
    else:
        before = [*main_line, *(("returning",) if latest_key == "returned" else ())]
    info = stage_info(latest.stage)
    stalled = template is Template.STALLED
    # A held parcel's messages state the destination's holding period where the country table
    # has one (the sample's EMS to the United States: USPS's 5 days for inbound EMS).
    held = template in (Template.RETENTION, Template.RETENTION_REMINDER)
    hold = holding_period(number=_SAMPLE_NUMBER, item_type="EMS", destination="US") if held else None
    return MessageContext(
        template=template,
        locale=locale,
        shop_name=shop,
        number=_SAMPLE_NUMBER,
        number_display="EJ 482 913 056 JP",
        label="Order 1001",
        item_type="EMS",
        stage=latest.stage.value,
        stage_meaning=info.meaning_ja if ja else info.meaning_en,
        tracking_url=(
            "https://trackings.post.japanpost.jp/services/srv/search/direct"
            f"?reqCodeNo1={_SAMPLE_NUMBER}&locale={locale}"
        ),
        event=latest.line(locale),
        passed=tuple(_JOURNEY[key].line(locale) for key in passed_keys),
        history=tuple(_JOURNEY[key].line(locale) for key in (*before, latest_key)),
        contacts=_sample_contacts(
            locale, latest, [_JOURNEY[key].stage.value for key in (*before, latest_key)]
        ),
        destination="US",
        destination_post=_US_POST.name(locale) if _US_POST else "",
        destination_post_url=_US_POST.tracking_url(_SAMPLE_NUMBER) if _US_POST else "",
        international=True,
        stalled_days=12 if stalled else None,
        stall_is_normal=False if stalled else None,
        retention_deadline=hold.until(dt.date.fromisoformat(latest.time[:10])) if hold else None,
        hold_amount=hold.amount if hold else None,
        hold_unit=hold.unit if hold else "",
        hold_class=hold.item_class if hold else "",
        hold_country=hold.country_name(locale) if hold else "",
        unsubscribe_url="https://sakura-stationery.example/tracking/unsubscribe?t=5f2c9a41e7",
        reply_to="help@sakura-stationery.example",
        name="" if template is Template.TEST else ("山田 花子" if ja else "Emma Brown"),
        shop_phone="+81 3-0000-0188",
        window_line=_sample_window(template, latest.time, locale),
    )


def _sample_window(template: Template, latest: str, locale: str) -> str:
    """The window line of an in-transit sample (not a stall: twelve days quiet, it has passed):
    two to six days after the latest scan (the message's day), today or tomorrow once the
    parcel is at its delivery office."""
    if template not in IN_TRANSIT_TEMPLATES or template is Template.STALLED:
        return ""
    today = dt.date.fromisoformat(latest[:10])
    near = template in (Template.AT_DELIVERY_OFFICE, Template.OUT_FOR_DELIVERY)
    window = Window(
        earliest=today + dt.timedelta(days=0 if near else 2),
        latest=today + dt.timedelta(days=1 if near else 6),
        basis="lane",
        lane=Lane(service="ems", destination="US"),
    )
    return window_line(window, locale=locale, today=today)


# ------------------------------------------------------------------------------------- seed advice


@dataclasses.dataclass(frozen=True, slots=True)
class Advice:
    """One piece of the shop FAQs' advice and the exact words each locale's template says it in.

    `variant` changes the sample context (a stall in another stage, a domestic parcel) where the
    advice belongs to that case only.
    """

    template: Template
    case: str
    advice: str
    source: str
    en: str
    ja: str
    variant: tuple[tuple[str, Any], ...] = ()

    def context(self, locale: str) -> MessageContext:
        return dataclasses.replace(sample_context(self.template, locale), **dict(self.variant))


# The two FAQ texts the wording rests on (../shared/seeds/): "Guide" is the Japan Post tracking
# guide, "EMS" the EMS status page. "Rule" is a documented Japan Post rule (see core.render.DOMESTIC_HOLD_DAYS).
_GUIDE = "Guide"
_EMS = "EMS"
_STALL_IN = "stalled"
SEED_ADVICE: tuple[Advice, ...] = (
    Advice(
        Template.ACCEPTED,
        "",
        "Posting/Collection: Japan Post has picked the parcel up",
        f"{_GUIDE}, {_EMS}",
        "we have handed your parcel to Japan Post",
        "日本郵便にお引き渡ししました",
    ),
    Advice(
        Template.DEPARTED_ORIGIN,
        "",
        "It is normal that the tracking does not update for several days",
        _GUIDE,
        "The tracking often stays quiet for several days",
        "追跡情報が数日間（船便の場合は数週間）更新されないことがよくあります",
    ),
    Advice(
        Template.DEPARTED_ORIGIN,
        "",
        "This stage takes the longest time",
        _GUIDE,
        "This is the longest part of the journey",
        "配送の中でもっとも時間がかかります",
    ),
    Advice(
        Template.DEPARTED_ORIGIN,
        "",
        "Once it has left Japan we cannot intervene; wait patiently",
        _GUIDE,
        "we can no longer step in",
        "当店から配送に働きかけることができません",
    ),
    Advice(
        Template.DEPARTED_ORIGIN,
        "",
        "Without a direct flight it may pass through other countries",
        _GUIDE,
        "stop over in another country",
        "ほかの国を経由して",
    ),
    Advice(
        Template.DEPARTED_ORIGIN,
        "",
        "The tracking updates again when it arrives in your country",
        _GUIDE,
        "the next update usually appears once the parcel reaches your country",
        "次の更新は、通常お荷物がお届け先の国に到着したときです",
    ),
    Advice(
        Template.INWARD_EXCHANGE,
        "",
        "From this stage, ask your local post office",
        _GUIDE,
        "your local post office is the best place to ask",
        "お近くの郵便局へお問い合わせください",
    ),
    Advice(
        Template.INWARD_EXCHANGE,
        "",
        "Depending on the local post, the status may update only later",
        _GUIDE,
        "their tracking may take a little while to catch up",
        "追跡情報に反映されるまで少し時間がかかることがあります",
    ),
    Advice(
        Template.CUSTOMS_PRESENTED,
        "",
        "Customs may call the phone number you gave; watch for calls",
        _GUIDE,
        "on the phone number you gave us with your order",
        "ご注文時にいただいた電話番号あてに",
    ),
    Advice(
        Template.CUSTOMS_PRESENTED,
        "",
        "Customs laws and times differ by country and contents",
        f"{_GUIDE}, {_EMS}",
        "depends on the country and on what is in the parcel",
        "国やお荷物の内容によって異なります",
    ),
    Advice(
        Template.CUSTOMS_CLEARED,
        "",
        "On its way to your nearest post office",
        _GUIDE,
        "on its way to your local post office",
        "お近くの郵便局へ向かっています",
    ),
    Advice(
        Template.CUSTOMS_CLEARED,
        "",
        "Available for pickup (if applicable) or prepared for delivery",
        _EMS,
        "it may be available for pickup there",
        "郵便局で受け取れるようになる場合もあり",
    ),
    Advice(
        Template.CUSTOMS_CLEARED,
        "",
        "If it shows Retention, contact your local post office as soon as possible",
        _GUIDE,
        "please contact your local post office as soon as possible",
        "できるだけ早くお近くの郵便局へご連絡ください",
    ),
    Advice(
        Template.AT_DELIVERY_OFFICE,
        "",
        "How long this takes depends on the local post (no promised day)",
        _GUIDE,
        "How long this takes depends on your local postal service",
        "郵便局の処理状況によって異なります",
    ),
    Advice(
        Template.OUT_FOR_DELIVERY,
        "",
        "Delivery typically on the day this status is posted",
        _EMS,
        "it should arrive today",
        "通常は本日中にお届けとなります",
    ),
    Advice(
        Template.ATTEMPTED_DELIVERY,
        "",
        "Delivery failed, e.g. nobody at the address",
        _EMS,
        "because nobody was at the address",
        "ご不在などのためお渡しできず",
    ),
    Advice(
        Template.ATTEMPTED_DELIVERY,
        "",
        "It may be held for pickup or a redelivery arranged",
        _EMS,
        "It can now be collected, or delivered again",
        "再配達のお申し込み、または郵便局でのお受け取りが可能です",
    ),
    Advice(
        Template.ATTEMPTED_DELIVERY,
        "domestic",
        "Held 7 days after the notice, then returned",
        "Rule",
        "for 7 days after leaving the notice",
        "不在連絡票が投函されてから7日間です",
        (("international", False),),
    ),
    Advice(
        Template.RETENTION,
        "",
        "Held because nobody was home, or pickup is required (remote areas)",
        _EMS,
        "as is usual in some remote areas",
        "郵便局の窓口でのお受け取りが必要な地域",
    ),
    Advice(
        Template.RETENTION,
        "",
        "Contact your local post office as soon as possible",
        _GUIDE,
        "contact your local post office as soon as you can",
        "できるだけ早くお近くの郵便局へご連絡",
    ),
    Advice(
        Template.RETENTION_REMINDER,
        "",
        "Contact your local post office as soon as possible",
        _GUIDE,
        "contact your local post office as soon as you can",
        "できるだけ早くお近くの郵便局へご連絡",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Delivered, or left in a safe place per your delivery instructions",
        _EMS,
        "left in a safe place according to your delivery instructions",
        "宅配ボックスや置き配の指定場所",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Not received? Do not panic",
        _GUIDE,
        "Please don't worry",
        "どうぞご安心ください",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Look for a pick-up notice and collect it where it says",
        _GUIDE,
        "Look for a pick-up notice",
        "不在連絡票が入っていないか",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Ask the people you live with",
        _GUIDE,
        "Ask the people you live with",
        "ご家族や同居の方",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Check the mailbox, doors, back yard (and parcel box or safe place)",
        _GUIDE,
        "Check your mailbox, any parcel box or safe place you asked for",
        "郵便受けや宅配ボックス、置き配をご指定の場所",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "In a building, ask security or the concierge",
        _GUIDE,
        "concierge or security desk",
        "管理人・コンシェルジュ・警備の方",
    ),
    Advice(
        Template.DELIVERED,
        "",
        "Still not found: contact your local post office",
        _GUIDE,
        "Please contact your local post office",
        "お近くの郵便局へお問い合わせ",
    ),
    Advice(
        Template.STALLED,
        "in customs",
        "Customs may call the phone number you gave; watch for calls",
        _GUIDE,
        "keep an eye out for their calls",
        "お電話に出られるようにしておいていただけますと幸いです",
    ),
    Advice(
        Template.STALLED,
        "after leaving Japan",
        "Normal silence; once it has left Japan we cannot intervene",
        _GUIDE,
        "we can no longer step in",
        "当店から配送に働きかけることができない",
        (("stage", "departed_origin"), ("stall_is_normal", True)),
    ),
    Advice(
        Template.STALLED,
        "after arrival, normal",
        "The status may not update in real time; this is normal",
        _EMS,
        "the tracking is not always updated in real time",
        "すぐには反映されないことがあります",
        (("stage", "inward_exchange"), ("stall_is_normal", True)),
    ),
    Advice(
        Template.STALLED,
        "after arrival, too long",
        "From arrival, ask your local post office",
        _GUIDE,
        "Please contact your local post office",
        "お近くの郵便局へお問い合わせください",
        (("stage", "at_delivery_office"), ("stall_is_normal", False)),
    ),
    Advice(
        Template.STALLED,
        "still in Japan",
        "While it is in Japan the shop can still act (only it can ask Japan Post)",
        _GUIDE,
        "only we can ask Japan Post",
        "日本郵便への確認は当店から行います",
        (("stage", "accepted"), ("stall_is_normal", False)),
    ),
)


def _advice_table() -> list[str]:
    rows = [
        "| Message | Case | Seed advice | Source | English template says | Japanese template says |",
        "|---|---|---|---|---|---|",
    ]
    for a in SEED_ADVICE:
        rows.append(f'| `{a.template.value}` | {a.case} | {a.advice} | {a.source} | "{a.en}" | 「{a.ja}」 |')
    return rows


# ------------------------------------------------------------------------------------------ previews


def previews_index(rows: Sequence[str]) -> str:
    return "\n".join(
        (
            "# Message previews",
            "",
            "Every message notifier sends, as the daemon makes it: the built-in simulator serves each",
            "sample journey's English and Japanese Japan Post pages on loopback, and every scan is",
            "polled, parsed, diffed, decided and rendered by the daemon's own code",
            "(`notifier.testing.previews`), for an English customer abroad (EMS first) and a Japanese",
            "customer at home (Yu-Pack first). Status, office, region and class of goods are Japan",
            "Post's wording from the page in the customer's language. The test message and the",
            "operator digest are not about a parcel and use their sample. `notifier preview` renders",
            "the same way with your shop's settings and templates. Generated files: after changing a",
            "template, regenerate them with",
            "",
            "```sh",
            "python -c 'from pathlib import Path; from notifier.testing.previews import write_previews; "
            'write_previews(Path("docs/messages"))\'',
            "```",
            "",
            "| Message | English subject | Previews |",
            "|---|---|---|",
            *rows,
            "",
            "## Seed advice",
            "",
            "Where each piece of advice in the shop FAQs (`../shared/seeds/`: the Japan Post tracking guide,",
            '"Guide", and the EMS status page, "EMS") and each documented Japan Post rule ("Rule") is said,',
            "in the exact words of each template. tests/test_render.py checks every phrase against the",
            "rendered message, in both languages; a case names the variant of the sample it is rendered for.",
            "",
            *_advice_table(),
            "",
        )
    )
