"""Messages as customers read them: Jinja2 templates rendered into a subject, plain text and HTML."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import importlib.resources
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from notifier.core.contacts import shown_contacts
from notifier.core.journey import Step, steps_for
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
from notifier.core.stages import Stage, stage_info

LOCALES = ("en", "ja")
SUBJECT_MAX = 200

# A shared source loaded as "name@txt" or "name@html" is compiled in that mode. This is how one
# wording file serves both versions of a message: a macro compiled without escaping and called
# from an HTML template returns its raw output marked safe, so crossing modes is never safe.
_MODES = ("txt", "html")
_PLAIN_SUFFIXES = (".txt.j2", ".subject.j2", "@txt")


def templates_root() -> Path:
    """The packaged templates: top-level `templates/` in the repository, `notifier.templates` installed."""
    root = importlib.resources.files("notifier.templates")
    if not isinstance(root, Path):
        # Wheels and editable installs are plain folders; only a zipped install would land here.
        raise RuntimeError(f"notifier.templates is not a folder on disk: {root!r}")
    return root


def autoescape(name: str | None) -> bool:
    """Whether a template is compiled with HTML escaping: everything but plain-text parts."""
    # Unnamed (string) templates and files named in some unforeseen way get the safe default.
    return name is None or not name.endswith(_PLAIN_SUFFIXES)


class _Loader(jinja2.FileSystemLoader):
    """Searches the folders in order; "name@txt" and "name@html" both load the file "name"."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        stem, sep, mode = template.rpartition("@")
        return super().get_source(environment, stem if sep and mode in _MODES else template)


@dataclasses.dataclass(frozen=True, slots=True)
class Paragraph:
    """A paragraph of prose (lines) or a bulleted list (items), already escaped for HTML."""

    lines: tuple[Markup, ...]
    is_list: bool


_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def paragraphs(value: str) -> list[Paragraph]:
    """Split wording into paragraphs at blank lines and into lists at lines starting with "- "."""
    # escape() leaves Markup (the output of an escaping template) alone and escapes anything
    # else, so the pieces below can be wrapped as Markup without being escaped twice.
    text = str(escape(value)).replace("\r\n", "\n")
    result: list[Paragraph] = []
    for chunk in _BLANK_LINE.split(text):
        prose: list[Markup] = []
        for line in (raw.strip() for raw in chunk.split("\n")):
            if not line:
                continue
            if not line.startswith("- "):
                prose.append(Markup(line))
                continue
            if prose:
                result.append(Paragraph(tuple(prose), is_list=False))
                prose = []
            item = Markup(line[2:].strip())
            # Bullets with nothing but blank lines between them are still one list.
            if result and result[-1].is_list:
                result[-1] = Paragraph((*result[-1].lines, item), is_list=True)
            else:
                result.append(Paragraph((item,), is_list=True))
        if prose:
            result.append(Paragraph(tuple(prose), is_list=False))
    return result


def lead(value: str) -> tuple[str, str]:
    """Wording split after its first paragraph: (the news, the rest), each trimmed; "" if none."""
    parts = _BLANK_LINE.split(str(value).replace("\r\n", "\n").strip(), maxsplit=1)
    return parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""


# C0/C1 controls and line/paragraph separators end a header line in some mail software; bidi
# controls can make a subject read differently from what it says.
_SUBJECT_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BIDI_CONTROLS = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(subject: str, limit: int = SUBJECT_MAX) -> str:
    """A subject that is one line of at most `limit` characters, with no control characters."""
    text = " ".join(_SUBJECT_BREAKS.sub(" ", _BIDI_CONTROLS.sub("", subject)).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _tidy_text(text: str) -> str:
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def _tidy_html(html: str) -> str:
    # Layout indentation and blank lines left by template tags only add bytes to every email.
    return "\n".join(line.strip() for line in html.split("\n") if line.strip()) + "\n"


# The messages' accent colour when [notifications] brand_color is not set.
BRAND_COLOR = "#1d4f91"

# Japan Post's own redelivery form (PC page; it redirects phones to /delivery/sp/deli/). Source:
# ../shared/design/RESEARCH_2026.md §1.2. Only for domestic items: abroad the local post arranges it.
REDELIVERY_URL = "https://trackings.post.japanpost.jp/delivery/deli/"

# Japan Post keeps a domestic item it could not deliver for 7 days and then returns it to the
# sender: 内国郵便約款 (Japan Post's domestic mail terms), the article on 郵便物の返還 (art. 95 as
# quoted at https://nanghi.net/?p=316; the 7-day hold is also in ../shared/design/TAXONOMY.md §3,
# citing tuiseki.net/jpost/motimodori). The templates state the period, never a computed date:
# the page gives no date and the counting starts from the notice, which the page does not show.
DOMESTIC_HOLD_DAYS = 7


@jinja2.pass_eval_context
def nowrap(eval_ctx: EvalContext, value: object) -> str:
    """A number (tracking, phone) that never breaks across lines in HTML; unchanged in text."""
    text = str(value)
    if not eval_ctx.autoescape:
        return text
    return Markup('<span style="white-space:nowrap;">{}</span>').format(text)


_PHONE_CHARS = re.compile(r"[^0-9+]")


@jinja2.pass_context
def tel(context: jinja2.runtime.Context, value: object) -> str:
    """A phone number as a tappable tel: link in HTML (digits and a leading + only); text as is."""
    text = str(value)
    if not context.eval_ctx.autoescape:
        return text
    digits = _PHONE_CHARS.sub("", text)
    digits = digits[:1] + digits[1:].replace("+", "")
    if len(digits.lstrip("+")) < 3:
        return Markup('<span style="white-space:nowrap;">{}</span>').format(text)
    return Markup(
        '<a href="tel:{}" style="color:{}; text-decoration:underline; white-space:nowrap;">{}</a>'
    ).format(digits, context.get("brand_color") or BRAND_COLOR, text)


def split_address(value: str) -> tuple[str, str]:
    """(display name, bare address) of an address as the configuration writes it, name or not."""
    name, address = email.utils.parseaddr(value)
    # parseaddr answers ("", "") for what it cannot read: show the value as given, link nothing.
    return (name, address) if address else ("", "")


def mailto(value: object) -> str:
    """The mailto: URI of an address, display name or not: the bare address (RFC 6068 allows no
    name), percent-encoded where the address has characters a URI cannot carry as they are."""
    _, address = split_address(str(value))
    return "mailto:" + urllib.parse.quote(address, safe="@+") if address else ""


def address_text(value: object) -> str:
    """What a message shows for an address: its display name, or the address where there is none."""
    name, address = split_address(str(value))
    return name or address or str(value)


@jinja2.pass_context
def mail_link(context: jinja2.runtime.Context, value: object) -> str:
    """An address as a message shows it: in HTML a mailto: link (bare address) reading the display
    name; in plain text, where nothing is a link, the bare address a mail program can follow."""
    name, address = split_address(str(value))
    if not context.eval_ctx.autoescape:
        return address or str(value)
    if not address:
        return str(escape(value))
    color = context.get("brand_color") or BRAND_COLOR
    return Markup('<a href="{}" style="color:{}; text-decoration:underline;">{}</a>').format(
        mailto(value), color, name or address
    )


@jinja2.pass_eval_context
def mail_link_class(eval_ctx: EvalContext, value: object) -> str:
    """`mail_link` for web pages: no style attribute."""
    name, address = split_address(str(value))
    if not eval_ctx.autoescape:
        return address or str(value)
    if not address:
        return str(escape(value))
    return Markup('<a href="{}">{}</a>').format(mailto(value), name or address)


@jinja2.pass_eval_context
def nowrap_class(eval_ctx: EvalContext, value: object) -> str:
    """`nowrap` for web pages, whose policy forbids style attributes: a class from the stylesheet."""
    text = str(value)
    if not eval_ctx.autoescape:
        return text
    return Markup('<span class="nowrap">{}</span>').format(text)


@jinja2.pass_eval_context
def tel_class(eval_ctx: EvalContext, value: object) -> str:
    """`tel` for web pages: the same tel: link, styled by the stylesheet."""
    text = str(value)
    if not eval_ctx.autoescape:
        return text
    digits = _PHONE_CHARS.sub("", text)
    digits = digits[:1] + digits[1:].replace("+", "")
    if len(digits.lstrip("+")) < 3:
        return Markup('<span class="nowrap">{}</span>').format(text)
    return Markup('<a class="nowrap" href="tel:{}">{}</a>').format(digits, text)


def journey(stage: str, history: Sequence[EventLine], international: bool) -> list[Step]:
    """The tracker for a message: the journey model (notifier.core.journey) over the history shown."""
    return steps_for([*(e.stage for e in history), stage], international)


class Renderer:
    """Renders a MessageContext with the packaged templates, or an operator's own where present."""

    def __init__(self, override_dir: Path | None = None, *, web: bool = False) -> None:
        """`web`: for the web face's pages, whose HTML must carry no style attributes."""
        if override_dir is not None and not override_dir.is_dir():
            # A mistyped folder would otherwise be skipped silently and the defaults sent instead.
            raise NotADirectoryError(f"template override folder not found: {override_dir}")
        searchpath = [override_dir, templates_root()] if override_dir is not None else [templates_root()]
        self.environment = jinja2.Environment(
            loader=_Loader(searchpath),
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Templates are read once; an edit takes effect with a new Renderer (a reload), not
            # halfway through a batch of emails.
            auto_reload=False,
        )
        self.environment.filters["paragraphs"] = paragraphs
        self.environment.filters["lead"] = lead
        self.environment.filters["nowrap"] = nowrap_class if web else nowrap
        self.environment.filters["tel"] = tel_class if web else tel
        self.environment.filters["mail_link"] = mail_link_class if web else mail_link
        self.environment.filters["mailto"] = mailto
        self.environment.filters["address_text"] = address_text
        self.environment.globals["journey"] = journey
        self.environment.globals["redelivery_url"] = REDELIVERY_URL
        self.environment.globals["domestic_hold_days"] = DOMESTIC_HOLD_DAYS

    def render(self, context: MessageContext) -> RenderedMessage:
        """Subject (one line), plain text (ending in one newline) and a complete HTML document."""
        names = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
        stem = f"{context.locale}/{Template(context.template).value}"
        get = self.environment.get_template
        return RenderedMessage(
            subject=one_line(get(f"{stem}.subject.j2").render(names)),
            text=_tidy_text(get(f"{stem}.txt.j2").render(names)),
            html=_tidy_html(get(f"{stem}.html.j2").render(names)),
        )

    def render_page(self, name: str, values: dict[str, Any]) -> str:
        """A web page (templates/web/NAME), with the messages' wording available to it."""
        return _tidy_html(self.environment.get_template(f"web/{name}").render(values))

    def render_preview(self, template: Template, locale: str) -> RenderedMessage:
        """The message rendered with the built-in sample context."""
        return self.render(sample_context(template, locale))


def render_preview(template: Template, locale: str) -> RenderedMessage:
    """The message as the packaged templates render it for the built-in sample context."""
    return _packaged().render_preview(template, locale)


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
        unsubscribe_url="https://sakura-stationery.example/tracking/unsubscribe?t=5f2c9a41e7",
        reply_to="help@sakura-stationery.example",
        name="" if template is Template.TEST else ("山田 花子" if ja else "Emma Brown"),
        shop_phone="+81 3-0000-0188",
    )


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
# guide, "EMS" the EMS status page. "Rule" is a documented Japan Post rule (see DOMESTIC_HOLD_DAYS).
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
