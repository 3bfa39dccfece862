"""Every Japanese sentence a customer can read, listed for a human reviewer, and the forms they must never take."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from notifier.core.contacts import arrived_abroad
from notifier.core.messages import EventLine, MessageContext, Template
from notifier.core.render import Renderer
from notifier.core.stages import ALL_STAGE_INFO, Stage
from notifier.testing.samples import sample_context

REVIEW_FILE = Path("docs") / "messages" / "ja-sentences.md"


@dataclasses.dataclass(frozen=True, slots=True)
class Forbidden:
    """A form customer-facing Japanese must not take, and why (for the reviewer and the test)."""

    pattern: re.Pattern[str]
    reason: str


FORBIDDEN: tuple[Forbidden, ...] = (
    Forbidden(re.compile(r"(?<![お手])荷物"), "the customer's parcel is お荷物 (美化語), never bare 荷物"),
    Forbidden(
        re.compile(r"お届けされ"),
        "お届けする is humble (謙譲語): its passive is ungrammatical; お届けできません",
    ),
    Forbidden(
        re.compile(r"お願いされ"),
        "お願いする is humble: its passive is ungrammatical; お願いする場合がございます",
    ),
    Forbidden(
        re.compile(r"持ち帰られ|持ち戻られ"), "honorific られ on the post's own act; 持ち戻りとなりました"
    ),
    Forbidden(re.compile(r"差出人"), "to the customer the sender is the shop: 当店"),
    Forbidden(
        re.compile(r"(?<![ぁ-ゖ])だ[。、]|である。|だった。|だろう。"),
        "plain sentence end: customer text is です/ます",
    ),
    Forbidden(
        re.compile(r"[A-Za-z0-9)）], [^\s]|[ぁ-ゖァ-ヺ一-鿿], "), "ASCII comma joining Japanese: use 、"
    ),
)

# Stand-ins for what Japan Post writes (status wording, office and region names): quoted, not ours.
_QUOTED = "〔日本郵便の表記〕"
_SENTENCE = re.compile(r"[^。！？]*[。！？]|[^。！？]+$")
_JAPANESE = re.compile(r"[ぁ-ゖァ-ヺ一-鿿]")
_CUSTOMER_TEMPLATES = tuple(t for t in Template if t is not Template.OPERATOR_DIGEST)


def violations(text: str) -> list[str]:
    """Each forbidden form in `text`, as "form: reason"."""
    return [f"{m.group(0)!r}: {f.reason}" for f in FORBIDDEN for m in f.pattern.finditer(text)]


def sentences(text: str) -> Iterator[str]:
    """The Japanese sentences of a text part, one by one, without list bullets."""
    for raw in text.splitlines():
        # List bullets and the text tracker's boxes ("[x] ") are layout, not wording.
        line = re.sub(r"^(?:- |\[[x> ]\] )", "", raw.strip()).strip()
        for match in _SENTENCE.finditer(line):
            sentence = match.group(0).strip()
            if sentence and _JAPANESE.search(sentence) and _QUOTED not in sentence:
                yield sentence


def _quoted(line: EventLine) -> EventLine:
    return dataclasses.replace(line, status=_QUOTED, office=_QUOTED, region="")


def _quoted_context(context: MessageContext) -> MessageContext:
    return dataclasses.replace(
        context,
        event=_quoted(context.event) if context.event else None,
        history=tuple(_quoted(e) for e in context.history),
        passed=tuple(_quoted(e) for e in context.passed),
    )


def _variants(template: Template) -> Iterator[tuple[str, MessageContext]]:
    base = _quoted_context(sample_context(template, "ja"))
    for international in (True, False):
        where = "海外" if international else "国内"
        if template is Template.STALLED:
            for stage in Stage:
                for normal in (True, False):
                    context = dataclasses.replace(
                        base,
                        stage=stage.value,
                        stage_meaning=ALL_STAGE_INFO[stage].meaning_ja,
                        international=international,
                        stall_is_normal=normal,
                    )
                    yield f"{where}、{stage.value}、{'通常' if normal else '長期'}", context
                # Judged by the route's history: the lane's figure in the wording.
                late = dataclasses.replace(context, stall_is_normal=False, late_within_days=4)
                yield f"{where}、{stage.value}、経路の履歴より遅れ", late
        else:
            yield where, dataclasses.replace(base, international=international)
            if template in (Template.RETENTION, Template.RETENTION_REMINDER) and international:
                for hold_class, amount, unit in (("parcel", 2, "months"), ("all", 30, "days")):
                    yield (
                        f"{where}、保管期間あり（{hold_class}）",
                        dataclasses.replace(
                            base,
                            international=True,
                            hold_amount=amount,
                            hold_unit=unit,
                            hold_class=hold_class,
                            hold_country="ガンビア" if hold_class == "parcel" else "アメリカ合衆国",
                            retention_deadline=dt.date(2026, 5, 7),
                        ),
                    )
    yield (
        "途中経過あり",
        dataclasses.replace(
            base, passed_through=("attempted_delivery", "retention"), wording_unavailable=True
        ),
    )


def _page_values(context: MessageContext, advice: str) -> dict[str, Any]:
    names = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    names.update(
        advice=advice,
        events=tuple(reversed(context.history)),
        japan_post_url="https://trackings.post.japanpost.jp/",
        page_unsubscribe_url="https://example.com/u/x",
        local_post_office=arrived_abroad(
            [*(e.stage for e in context.history), context.stage], context.international
        ),
        static_url="page.css",
        other_locale="en",
        other_url="?lang=en",
        mail_locale="en",
        language_saved=False,
        # The review reads the note a window from Japan Post's published times carries.
        window_prior=bool(context.window_line),
    )
    return names


def _unsubscribe_values(all_stopped: bool, parcel_stopped: bool, done: str) -> dict[str, Any]:
    return {
        "locale": "ja",
        "shop_name": "Sakura Stationery",
        "recipient": "hanako.yamada@example.jp",
        "number": "EJ482913056JP",
        "number_display": "EJ 482 913 056 JP",
        "label": "ご注文 1001",
        "all_stopped": all_stopped,
        "parcel_stopped": parcel_stopped,
        "done": done,
        "static_url": "page.css",
        "other_locale": "en",
        "other_url": "?lang=en",
    }


def _html_sentences(html: str) -> Iterator[str]:
    body = re.sub(r"(?s)<head>.*?</head>", "", html)
    text = re.sub(r"<(?:br|/p|/li|/h[12]|/strong|/section|/ul|/ol)[^>]*>", "\n", body)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("&amp;", "&").replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')
    yield from sentences(text)


def collect() -> list[tuple[str, list[str]]]:
    """Sections of (heading, new sentences), in the order a reviewer reads them; each once."""
    seen: set[str] = set()
    result: list[tuple[str, list[str]]] = []

    def add(heading: str, found: Iterator[str]) -> None:
        new: list[str] = []
        for sentence in found:
            if sentence not in seen:
                seen.add(sentence)
                new.append(sentence)
        if new:
            result.append((heading, new))

    add(
        "段階の説明（stages.py の meaning_ja）",
        (s for info in ALL_STAGE_INFO.values() for s in sentences(info.meaning_ja)),
    )
    mail = Renderer()
    for template in _CUSTOMER_TEMPLATES:
        for variant, context in _variants(template):
            message = mail.render(context)
            add(
                f"メール {template.value}（{variant}）",
                iter([*sentences(message.subject), *sentences(message.text)]),
            )
    web = Renderer(web=True)
    for stage in Stage:
        page_template = Template(stage.value) if stage.value in set(Template) else Template.STALLED
        advice = "" if page_template is Template.STALLED else page_template.value
        for international in (True, False):
            context = dataclasses.replace(
                sample_context(page_template, "ja"),
                stage=stage.value,
                stage_meaning=ALL_STAGE_INFO[stage].meaning_ja,
                international=international,
            )
            context = _quoted_context(context)
            if stage is Stage.PENDING:
                context = dataclasses.replace(context, event=None, history=(), contacts=())
            html = web.render_page("tracking.html.j2", _page_values(context, advice))
            add(f"追跡ページ {stage.value}（{'海外' if international else '国内'}）", _html_sentences(html))
    saved = {**_page_values(_quoted_context(sample_context(Template.DELIVERED, "ja")), "delivered")}
    saved["language_saved"] = True
    add("追跡ページ（メールの言語を選んだ後）", _html_sentences(web.render_page("tracking.html.j2", saved)))
    for all_stopped, parcel_stopped, done in (
        (False, False, ""),
        (False, True, "unsubscribed"),
        (True, False, "unsubscribed"),
        (False, False, "resubscribed"),
    ):
        html = web.render_page("unsubscribe.html.j2", _unsubscribe_values(all_stopped, parcel_stopped, done))
        add("配信停止ページ", _html_sentences(html))
    from notifier.web.errors import _ERRORS

    add("エラーページ", (s for _, ja in _ERRORS.values() for s in sentences(ja)))
    return result


def review_document() -> str:
    """The reviewer's file: every sentence once, then the forbidden forms with their reasons."""
    lines = [
        "# Japanese sentences a customer can read",
        "",
        "Generated by `notifier.testing.wording_review` (tests/test_wording_review.py checks it is current):",
        "every stage meaning, every customer email rendered for every case (abroad and at home, the",
        "stall message for every stage) and every customer page, split into sentences, each listed",
        f"the first time it appears. Japan Post's own wording is quoted in messages as is; here it is {_QUOTED}.",
        "Regenerate with",
        "",
        "```sh",
        "python -c 'from notifier.testing.wording_review import write_review; write_review()'",
        "```",
        "",
        "## Forms that must not appear (checked by the test)",
        "",
        # As HTML, escaped: a look-behind's "<![" read raw would open an HTML marked section
        # (MkDocs' HTML scan fails on it), and a code span cannot escape it.
        *(f"- <code>{html.escape(f.pattern.pattern)}</code>: {f.reason}" for f in FORBIDDEN),
        "",
    ]
    for heading, found in collect():
        lines += [f"## {heading}", "", *(f"- {s}" for s in found), ""]
    return "\n".join(lines)


def write_review(root: Path = Path()) -> Path:
    """Write the reviewer's file under `root` (the repository) and return its path."""
    path = root / REVIEW_FILE
    path.write_text(review_document(), encoding="utf-8")
    return path
