"""Messages as customers read them: Jinja2 templates rendered into a subject, plain text and HTML."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import importlib.resources
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from notifier.core.journey import Step, steps_for
from notifier.core.messages import (
    EventLine,
    MessageContext,
    RenderedMessage,
    Template,
)

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


_WEEKDAYS_JA = "月火水木金土日"


def long_date(value: dt.date, locale: str) -> str:
    """A date as a customer reads it: "Friday 5 June 2026", 「2026年6月5日（金）」."""
    if locale == "ja":
        return f"{value.year}年{value.month}月{value.day}日（{_WEEKDAYS_JA[value.weekday()]}）"
    return f"{value:%A} {value.day} {value:%B %Y}"


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
        self.environment.filters["long_date"] = long_date
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
