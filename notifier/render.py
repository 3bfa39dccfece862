"""Messages as customers read them: Jinja2 templates rendered into a subject, plain text and HTML."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.resources
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from notifier.messages import ContactLine, DigestLine, EventLine, MessageContext, RenderedMessage, Template
from notifier.stages import Stage, stage_info

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


class Renderer:
    """Renders a MessageContext with the packaged templates, or an operator's own where present."""

    def __init__(self, override_dir: Path | None = None) -> None:
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
_SAMPLE_DEADLINE = dt.date(2026, 3, 21)
_DEADLINE_TEMPLATES = frozenset({Template.RETENTION, Template.RETENTION_REMINDER, Template.READY_FOR_PICKUP})


def _sample_contacts(locale: str, latest: _Scan) -> tuple[ContactLine, ...]:
    ja = locale == "ja"
    acceptance = ContactLine(
        role="引受" if ja else "Acceptance",
        office=_SHIBUYA.office_ja if ja else "SHIBUYA",
        phone="03-0000-0150",
    )
    if latest.office_en != _BROOKLYN.office_en:
        return (acceptance,)
    delivery = ContactLine(role="配達" if ja else "Delivery", office="BROOKLYN NY", phone="+1 718-555-0143")
    return (acceptance, delivery)


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
        return MessageContext.digest_for(_sample_digest(locale), shop_name=shop, locale=locale)
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
        contacts=_sample_contacts(locale, latest),
        destination="US",
        international=True,
        stalled_days=12 if stalled else None,
        stall_is_normal=False if stalled else None,
        retention_deadline=_SAMPLE_DEADLINE if template in _DEADLINE_TEMPLATES else None,
        unsubscribe_url="https://sakura-stationery.example/tracking/unsubscribe?t=5f2c9a41e7",
        reply_to="help@sakura-stationery.example",
    )


# ------------------------------------------------------------------------------------------ previews


def write_previews(directory: Path, renderer: Renderer | None = None) -> list[Path]:
    """Write `{locale}-{template}.html` and `.txt` for every message, and a README.md index."""
    renderer = renderer or Renderer()
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[str] = []
    for template in Template:
        subject = ""
        for locale in LOCALES:
            message = renderer.render_preview(template, locale)
            subject = subject or message.subject
            for suffix, body in (("html", message.html), ("txt", message.text)):
                path = directory / f"{locale}-{template.value}.{suffix}"
                path.write_text(body, encoding="utf-8", newline="\n")
                written.append(path)
        links = " · ".join(
            f"[{locale} html]({locale}-{template.value}.html), [{locale} text]({locale}-{template.value}.txt)"
            for locale in LOCALES
        )
        cell = subject.replace("|", r"\|")
        rows.append(f"| `{template.value}` | {cell} | {links} |")
    index = directory / "README.md"
    index.write_text(_previews_index(rows), encoding="utf-8", newline="\n")
    written.append(index)
    return written


def _previews_index(rows: Sequence[str]) -> str:
    return "\n".join(
        (
            "# Message previews",
            "",
            "Every message notifier sends, rendered from `templates/` with the built-in sample context",
            '(`notifier.render.sample_context`: an EMS parcel from Tokyo to Brooklyn, "Order 1001").',
            "Generated files: after changing a template, regenerate them with",
            "",
            "```sh",
            "python -c 'from pathlib import Path; from notifier.render import write_previews; "
            'write_previews(Path("docs/messages"))\'',
            "```",
            "",
            "| Message | English subject | Previews |",
            "|---|---|---|",
            *rows,
            "",
        )
    )
