"""Rendering: every message in both locales, escaping, operator overrides and what each message says."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html as htmllib
import re
from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from notifier.core.messages import ContactLine, DigestLine, MessageContext, Template
from notifier.core.render import (
    LOCALES,
    REDELIVERY_URL,
    SUBJECT_MAX,
    Renderer,
    autoescape,
    one_line,
    paragraphs,
    templates_root,
)
from notifier.testing.previews import write_previews
from notifier.testing.samples import SEED_ADVICE, Advice, render_preview, sample_context

ALL = [pytest.param(t, loc, id=f"{loc}-{t.value}") for t in Template for loc in LOCALES]
CUSTOMER = [p for p in ALL if p.values[0] is not Template.OPERATOR_DIGEST]
PAYLOAD = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
DOCS_MESSAGES = Path(__file__).resolve().parents[1] / "docs" / "messages"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def visible_text(html: str) -> str:
    """What a reader of the HTML sees, with whitespace folded, for comparing wording."""
    body = re.sub(r"(?s)<head>.*?</head>", " ", html)
    return fold(htmllib.unescape(re.sub(r"<[^>]+>", "", body)))


def fold(text: str) -> str:
    return " ".join(text.replace("\xa0", " ").split())


# ------------------------------------------------------------------------------ every message


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_every_message_renders_completely(renderer: Renderer, template: Template, locale: str) -> None:
    context = sample_context(template, locale)
    message = renderer.render(context)

    assert message.subject
    assert message.subject == message.subject.strip()
    assert "\n" not in message.subject
    assert "\r" not in message.subject
    assert len(message.subject) <= SUBJECT_MAX
    assert message.text.endswith("\n")
    assert not message.text.endswith("\n\n")
    assert message.html.startswith("<!DOCTYPE html>\n<html lang=")
    assert message.html.endswith("</html>\n")
    for part in (message.subject, message.text, message.html):
        assert "None" not in part
    # Japanese messages are polite Japanese, English ones carry no stray Japanese wording.
    if locale == "ja":
        sentences = re.findall(r"([^。\n]+)。", message.text)
        assert sentences
        impolite = [
            s
            for s in sentences
            if not s.rstrip("）").endswith(("ます", "です", "ません", "ください", "した"))
        ]
        assert not impolite
    else:
        assert not re.search(r"[\u3040-\u30ff]", message.text + message.subject)


@pytest.mark.parametrize(("template", "locale"), CUSTOMER)
def test_customer_messages_show_the_shipment(renderer: Renderer, template: Template, locale: str) -> None:
    context = sample_context(template, locale)
    assert context.event is not None
    message = renderer.render(context)
    seen = visible_text(message.html)

    assert "Order 1001" in message.subject
    for expected in (
        "Order 1001",
        context.number_display,
        context.shop_name,
        context.event.time,
        context.event.status,
        context.event.office,
        *(e.status for e in context.passed),
    ):
        assert expected in message.text
        assert fold(expected) in seen
    assert context.tracking_url in message.text
    assert f'href="{context.tracking_url.replace("&", "&amp;")}"' in message.html
    assert context.unsubscribe_url in message.text
    assert f'href="{context.unsubscribe_url}"' in message.html


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_text_and_html_say_the_same(renderer: Renderer, template: Template, locale: str) -> None:
    message = renderer.render(sample_context(template, locale))
    seen = visible_text(message.html)
    for line in message.text.splitlines():
        # The progress tracker marks stations with [x], [>] and [ ] in text, with colour in HTML.
        words = fold(re.sub(r"^\[[x> ]\] ", "", line.removeprefix("- "))).rstrip(":：")
        if not words or words.startswith("http") or set(words) <= {"-"}:
            continue  # separators, and links the HTML shows as buttons
        assert words in seen, f"{words!r} is in the text version only"


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_html_is_self_contained_and_mail_client_safe(
    renderer: Renderer, template: Template, locale: str
) -> None:
    html = renderer.render(sample_context(template, locale)).html
    lowered = html.lower()
    for forbidden in ("<link", "<script", "<style", "<img", 'src="http', "class=", "url("):
        assert forbidden not in lowered
    assert f'<html lang="{locale}">' in html
    assert 'content="text/html; charset=utf-8"' in html
    assert "max-width:600px" in html
    assert re.search(r"<title>[^<\n]+</title>", html)


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_sparse_context_renders_without_holes(renderer: Renderer, template: Template, locale: str) -> None:
    """Fields that do not apply are None or empty; no message may print "None" or fail on them."""
    sparse = dataclasses.replace(
        sample_context(template, locale),
        label="",
        item_type="",
        event=None,
        passed=(),
        history=(),
        contacts=(),
        destination="",
        stalled_days=None,
        stall_is_normal=None,
        retention_deadline=None,
        unsubscribe_url="",
        reply_to="",
        digest=(),
    )
    message = renderer.render(sparse)
    for part in (message.subject, message.text, message.html):
        assert "None" not in part
    if template not in (Template.OPERATOR_DIGEST, Template.TEST):
        assert sparse.number_display in message.subject
    assert "unsubscribe" not in message.html.lower()


# ---------------------------------------------------------------------------------- escaping


def test_autoescape_is_decided_by_file_name() -> None:
    assert autoescape("en/retention.html.j2")
    assert autoescape("en/_wording.j2@html")
    assert not autoescape("en/retention.txt.j2")
    assert not autoescape("en/retention.subject.j2")
    assert not autoescape("en/_wording.j2@txt")
    # Anything else is escaped: the safe side for a file named in some unforeseen way.
    assert autoescape("en/_wording.j2")
    assert autoescape(None)


def hostile(template: Template, locale: str) -> MessageContext:
    context = sample_context(template, locale)
    event = context.event
    return dataclasses.replace(
        context,
        label=PAYLOAD,
        shop_name=PAYLOAD,
        destination=PAYLOAD,
        reply_to=PAYLOAD,
        event=event and dataclasses.replace(event, status=PAYLOAD, office=PAYLOAD, region=PAYLOAD),
        passed=tuple(dataclasses.replace(e, status=PAYLOAD, stage_meaning=PAYLOAD) for e in context.passed),
        contacts=(ContactLine(role=PAYLOAD, office=PAYLOAD, phone=PAYLOAD),),
        digest=tuple(
            dataclasses.replace(d, kind=PAYLOAD, subject=PAYLOAD, message=PAYLOAD) for d in context.digest
        ),
    )


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_scraped_and_configured_text_is_escaped_in_html_and_literal_in_text(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(hostile(template, locale))
    assert "<img" not in message.html
    assert "<script" not in message.html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in message.html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in message.html
    assert PAYLOAD in message.text
    assert "&lt;" not in message.text
    assert "&#34;" not in message.text


def test_a_label_cannot_add_header_lines_to_the_subject(renderer: Renderer) -> None:
    context = dataclasses.replace(
        sample_context(Template.DELIVERED, "en"),
        label="Order 1001\r\nBcc: someone@example.com\u2028X-Evil: 1\x00\u202e",
    )
    subject = renderer.render(context).subject
    assert "\r" not in subject
    assert "\n" not in subject
    assert "\u2028" not in subject
    assert "\x00" not in subject
    assert "\u202e" not in subject
    assert "Order 1001 Bcc: someone@example.com X-Evil: 1" in subject


def test_subject_is_capped() -> None:
    assert one_line("a " * 500) == ("a " * 100)[:199].rstrip() + "…"
    assert len(one_line("x" * 1000)) == SUBJECT_MAX
    assert one_line("  two\n\tlines  ") == "two lines"


def test_paragraphs_split_prose_and_lists_and_escape_plain_text() -> None:
    blocks = paragraphs("First line\nsecond line\n\n- one\n- <two>\n\n- three\nAfter")
    assert [(b.is_list, list(b.lines)) for b in blocks] == [
        (False, ["First line", "second line"]),
        (True, ["one", "&lt;two&gt;", "three"]),
        (False, ["After"]),
    ]
    # Markup is already escaped: it must not be escaped a second time.
    assert paragraphs(Markup("a &amp; b"))[0].lines == (Markup("a &amp; b"),)


# --------------------------------------------------------------------- templates and overrides


def test_the_packaged_folder_has_every_template() -> None:
    root = templates_root()
    assert (root / "base.txt.j2").is_file()
    assert (root / "base.html.j2").is_file()
    for locale in LOCALES:
        assert (root / locale / "_wording.j2").is_file()
        for template in Template:
            for kind in ("subject", "txt", "html"):
                assert (root / locale / f"{template.value}.{kind}.j2").is_file()


def test_an_unknown_name_fails_instead_of_printing_nothing(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "delivered.txt.j2").write_text(
        '{% extends "base.txt.j2" %}{% block body %}Hello {{ customer_name }}{% endblock %}\n'
    )
    with pytest.raises(jinja2.UndefinedError, match="customer_name"):
        Renderer(tmp_path).render(sample_context(Template.DELIVERED, "en"))


def test_an_unknown_attribute_fails_too(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "retention.subject.j2").write_text("{{ event.carrier }}\n")
    with pytest.raises(jinja2.UndefinedError, match="carrier"):
        Renderer(tmp_path).render(sample_context(Template.RETENTION, "ja"))


def test_an_override_replaces_only_that_template(tmp_path: Path, renderer: Renderer) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "delivered.subject.j2").write_text("It's here! {{ label }} from {{ shop_name }}\n")
    custom = Renderer(tmp_path)

    default = renderer.render(sample_context(Template.DELIVERED, "en"))
    mine = custom.render(sample_context(Template.DELIVERED, "en"))
    assert mine.subject == "It's here! Order 1001 from Sakura Stationery"
    assert (mine.text, mine.html) == (default.text, default.html)
    for template, locale in ((Template.RETENTION, "en"), (Template.DELIVERED, "ja")):
        assert render_preview(template, locale, custom) == render_preview(template, locale, renderer)


def test_an_override_can_reuse_the_packaged_wording(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "accepted.html.j2").write_text(
        '{% extends "base.html.j2" %}\n'
        '{% import "en/_wording.j2@html" as w with context %}\n'
        "{% block title %}Shipped!{% endblock %}\n"
        "{% block body %}{{ w.accepted_body() }}\n\nP.S. {{ label }} includes a free sample.{% endblock %}\n"
    )
    context = dataclasses.replace(sample_context(Template.ACCEPTED, "en"), label=PAYLOAD)
    html = Renderer(tmp_path).render(context).html
    assert "<title>Shipped!</title>" in html
    assert "handed your parcel to Japan Post" in html
    assert "P.S. &#34;&gt;&lt;img" in html


@pytest.mark.parametrize(
    ("uri", "linked"),
    [
        ("mailto:unsubscribe@sakura-stationery.example?subject=stop", True),
        ("javascript:alert(1)", False),
    ],
)
def test_only_web_and_mail_links_are_clickable(renderer: Renderer, uri: str, linked: bool) -> None:
    context = dataclasses.replace(sample_context(Template.ACCEPTED, "en"), unsubscribe_url=uri)
    message = renderer.render(context)
    assert uri in message.text
    assert (f'href="{uri}"' in message.html) is linked
    assert uri in message.html


def test_a_missing_override_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Renderer(tmp_path / "no-such-folder")


def test_sample_context_rejects_unknown_locales() -> None:
    with pytest.raises(ValueError, match="fr"):
        sample_context(Template.DELIVERED, "fr")


@pytest.mark.parametrize("locale", LOCALES)
def test_wording_files_hold_no_markup(locale: str) -> None:
    """Wording is plain text: its literal characters reach the HTML version unescaped."""
    source = (templates_root() / locale / "_wording.j2").read_text(encoding="utf-8")
    literal = re.sub(r"(?s)\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", source)
    assert not re.search(r"[<>&]", literal)


# ------------------------------------------------------------------------ what messages say


FACTS: dict[tuple[Template, str], tuple[str, ...]] = {
    (Template.ACCEPTED, "en"): ("handed your parcel to Japan Post",),
    (Template.ACCEPTED, "ja"): ("日本郵便にお引き渡ししました",),
    (Template.DEPARTED_ORIGIN, "en"): ("left Japan", "quite normal", "reaches your country", "direct flight"),
    (Template.DEPARTED_ORIGIN, "ja"): ("日本を出発", "ご心配はいりません", "到着したとき", "直行便"),
    (Template.INWARD_EXCHANGE, "en"): ("arrived in your country", "your local post office"),
    (Template.INWARD_EXCHANGE, "ja"): ("お届け先の国に到着", "お近くの郵便局", "現地の郵便局"),
    (Template.CUSTOMS_PRESENTED, "en"): ("customs", "phone number you gave us", "calls", "duties", "invoice"),
    (Template.CUSTOMS_PRESENTED, "ja"): ("税関", "電話", "関税", "インボイス"),
    (Template.CUSTOMS_CLEARED, "en"): ("cleared customs", "local post office", '"Retention"'),
    (Template.CUSTOMS_CLEARED, "ja"): ("通関手続きが完了", "お近くの郵便局", "「保管」と表示"),
    (Template.AT_DELIVERY_OFFICE, "en"): ("getting it ready", "depends on your local postal service"),
    (Template.AT_DELIVERY_OFFICE, "ja"): ("配達の準備", "処理状況によって異なります"),
    (Template.OUT_FOR_DELIVERY, "en"): ("out for delivery", "arrive today"),
    (Template.OUT_FOR_DELIVERY, "ja"): ("本日中にお届け",),
    (Template.ATTEMPTED_DELIVERY, "en"): (
        "notice",
        "redelivery",
        "depends on your country",
        "sent back to us",
    ),
    (Template.ATTEMPTED_DELIVERY, "ja"): ("不在連絡票", "再配達", "国によって異なります", "返送"),
    (Template.RETENTION, "en"): (
        "held for you at the post office",
        "as soon as you can",
        "sent back to us",
        "Your delivering post office: BROOKLYN NY, phone +1 718-555-0143",
        # The sample is an EMS to the United States: the country table's period and date.
        "Post offices in the United States usually keep EMS items for 5 days",
        "until about Thursday 12 March 2026",
        "EJ 482 913 056 JP",
    ),
    (Template.RETENTION, "ja"): (
        "郵便局で保管されています",
        "できるだけ早く",
        "当店へ返送",
        "配達を担当する郵便局：BROOKLYN NY（電話：+1 718-555-0143）",
        "アメリカ合衆国の郵便局でのEMSの保管期間は、通常5日間です。",
        "2026年3月12日（木）頃まで",
        "EJ 482 913 056 JP",
    ),
    (Template.RETENTION_REMINDER, "en"): ("still being held", "limited time", "+1 718-555-0143"),
    (Template.RETENTION_REMINDER, "ja"): (
        "引き続き郵便局で保管",
        "保管期間には限りがあり",
        "+1 718-555-0143",
    ),
    (Template.READY_FOR_PICKUP, "en"): (
        "pickup point",
        "convenience store",
        "parcel locker",
        "collect it soon",
    ),
    (Template.READY_FOR_PICKUP, "ja"): (
        "受け取り場所",
        "コンビニエンスストア",
        "宅配ロッカー",
        "お早めにお受け取り",
    ),
    (Template.DELIVERED, "en"): (
        "has been delivered",
        "pick-up notice",
        "people you live with",
        "mailbox",
        "back yard",
        "concierge or security",
        "contact your local post office",
    ),
    (Template.DELIVERED, "ja"): (
        "お届け済み",
        "不在連絡票",
        "同居の方",
        "郵便受け",
        "庭",
        "コンシェルジュ",
        "郵便局へお問い合わせ",
    ),
    (Template.RETURNING, "en"): ("back to us", "get in touch with us (help@sakura-stationery.example)"),
    (Template.RETURNING, "ja"): (
        "当店へ返送されている",
        "当店（help@sakura-stationery.example）までご連絡ください",
    ),
    (Template.RETURNED, "en"): ("back with us", "get in touch with us"),
    (Template.RETURNED, "ja"): ("当店に返送された", "までご連絡ください"),
    (Template.INVESTIGATION, "en"): ("investigation", "address", "contact your local post office"),
    (Template.INVESTIGATION, "ja"): ("調査", "宛先", "お近くの郵便局へお問い合わせ"),
    (Template.STALLED, "en"): ("12 days", "with customs", "phone number you gave us", "local post office"),
    (Template.STALLED, "ja"): ("12日間", "税関", "電話番号", "お近くの郵便局"),
    (Template.OPERATOR_DIGEST, "en"): (
        "2 items need your attention",
        "Could not send: EJ 482 913 056 JP (Order 1001)",
        "(2 times)",
        "Pending too long: EJ 271 828 189 JP (Order 1002)",
    ),
    (Template.OPERATOR_DIGEST, "ja"): ("2件", "【送信失敗】EJ 482 913 056 JP（Order 1001）", "（2回）"),
    (Template.TEST, "en"): ("test email", "sending email works"),
    (Template.TEST, "ja"): ("テストメール", "正しく動作しています"),
}


def test_every_message_has_its_facts_listed() -> None:
    assert set(FACTS) == {(t, loc) for t in Template for loc in LOCALES}


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_each_message_states_its_facts_in_both_versions(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(sample_context(template, locale))
    seen = visible_text(message.html)
    for fact in FACTS[template, locale]:
        assert fact in message.text
        assert fold(fact) in seen


@pytest.mark.parametrize("stage", ["departed_origin", "inward_exchange", "accepted"])
@pytest.mark.parametrize(
    ("locale", "normal", "todo"),
    [("en", "nothing you need to do", "What to do"), ("ja", "特にございません", "お客様へのご案内")],
)
def test_a_normal_silence_asks_for_nothing(
    renderer: Renderer, locale: str, normal: str, todo: str, stage: str
) -> None:
    context = dataclasses.replace(sample_context(Template.STALLED, locale), stage=stage, stall_is_normal=True)
    message = renderer.render(context)
    assert normal in message.text
    assert todo not in message.text
    assert todo not in message.html
    # The subject's tone follows the body: no "no update for 12 days" alarm for a normal silence.
    assert "12" not in message.subject


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    "template", [Template.RETENTION, Template.ATTEMPTED_DELIVERY, Template.READY_FOR_PICKUP]
)
def test_only_the_delivering_office_is_offered_as_a_contact(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(sample_context(template, locale))
    assert "+1 718-555-0143" in message.text
    # The office that accepted the parcel in Japan cannot help with a delivery in Brooklyn.
    assert "03-0000-0150" not in message.text
    assert "03-0000-0150" not in message.html


@pytest.mark.parametrize("locale", LOCALES)
def test_retention_without_deadline_or_contacts_still_says_what_to_do(
    renderer: Renderer, locale: str
) -> None:
    context = dataclasses.replace(
        sample_context(Template.RETENTION, locale), contacts=(), retention_deadline=None
    )
    text = renderer.render(context).text
    assert "2026" not in text.split("----")[0]  # no deadline in the wording part
    assert ("as soon as you can" if locale == "en" else "できるだけ早く") in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    "template", [Template.ATTEMPTED_DELIVERY, Template.RETENTION, Template.RETENTION_REMINDER]
)
def test_domestic_holds_give_japan_posts_period_and_abroad_the_notice_card(
    renderer: Renderer, template: Template, locale: str
) -> None:
    # Abroad without a sourced period (a country the table lacks): the notice card.
    unknown = dataclasses.replace(sample_context(template, locale), hold_amount=None, retention_deadline=None)
    abroad = renderer.render(unknown).text
    domestic = renderer.render(dataclasses.replace(unknown, international=False)).text
    period = "for 7 days after leaving the notice" if locale == "en" else "投函されてから7日間です"
    card = "check the notice card" if locale == "en" else "不在連絡票でご確認ください"
    assert period in domestic
    assert card not in domestic
    assert card in abroad
    assert "7 days" not in abroad
    assert "7日" not in abroad


def test_other_contact_roles_are_named_as_given(renderer: Renderer) -> None:
    context = dataclasses.replace(
        sample_context(Template.INVESTIGATION, "en"),
        contacts=(ContactLine(role="Customs office", office="JFK AIRPORT", phone="+1 718-555-0199"),),
    )
    assert "Customs office: JFK AIRPORT, phone +1 718-555-0199" in renderer.render(context).text


def test_unknown_digest_kinds_are_shown_as_given(renderer: Renderer) -> None:
    context = dataclasses.replace(
        sample_context(Template.OPERATOR_DIGEST, "en"),
        digest=(DigestLine(kind="quota", subject="SMTP", message="daily limit reached"),),
    )
    message = renderer.render(context)
    assert "1 item needs your attention" in message.text
    assert "- quota: SMTP: daily limit reached\n" in message.text
    assert message.subject == "Tracking digest: 1 item (Sakura Stationery)"


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_no_message_states_a_computed_holding_deadline(
    renderer: Renderer, template: Template, locale: str
) -> None:
    """Without a sourced holding period (hold_amount) a deadline is a scan date plus the shop's
    own figure: no source gives it, so no message states it."""
    for international in (True, False):
        context = dataclasses.replace(
            sample_context(template, locale),
            retention_deadline=dt.date(2031, 11, 23),
            international=international,
            hold_amount=None,
        )
        message = renderer.render(context)
        for part in (message.subject, message.text, message.html):
            assert "2031" not in part
            assert "November" not in part
            assert "11月" not in part


# ---------------------------------------------------------------------------------- previews


def test_render_preview_uses_the_sample_context() -> None:
    assert render_preview(Template.RETENTION, "ja") == Renderer().render(
        sample_context(Template.RETENTION, "ja")
    )


def test_write_previews_writes_every_message_an_index_and_the_committed_ones_are_current(
    tmp_path: Path,
) -> None:
    written = write_previews(tmp_path)
    assert len(written) == len(Template) * len(LOCALES) * 2 + 1
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    for template in Template:
        assert f"`{template.value}`" in index
        for locale in LOCALES:
            assert f"({locale}-{template.value}.html)" in index
            assert (tmp_path / f"{locale}-{template.value}.txt").read_text(encoding="utf-8").strip()
    stale = [
        path.name
        for path in sorted(tmp_path.iterdir())
        if not (DOCS_MESSAGES / path.name).is_file()
        or (DOCS_MESSAGES / path.name).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"docs/messages is out of date ({', '.join(stale)}); regenerate it as its README says"


# ----------------------------------------------------------------------------- seed advice


def test_the_seed_advice_table_covers_every_stage_message() -> None:
    covered = {a.template for a in SEED_ADVICE}
    stage_messages = set(Template) - {
        Template.OPERATOR_DIGEST,
        Template.TEST,
        Template.READY_FOR_PICKUP,  # no FAQ advice for pickup points
        Template.RETURNING,  # nor for returns
        Template.RETURNED,
        Template.INVESTIGATION,
    }
    assert stage_messages <= covered


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    "advice", SEED_ADVICE, ids=lambda a: f"{a.template.value}-{a.case or 'main'}-{a.en[:24]}"
)
def test_each_seed_advice_phrase_is_in_its_message(renderer: Renderer, advice: Advice, locale: str) -> None:
    message = renderer.render(advice.context(locale))
    phrase = getattr(advice, locale)
    assert phrase in message.text
    assert fold(phrase) in visible_text(message.html)


def test_the_seed_advice_table_is_in_the_previews_readme() -> None:
    readme = (DOCS_MESSAGES / "README.md").read_text(encoding="utf-8")
    for advice in SEED_ADVICE:
        assert f'"{advice.en}"' in readme
        assert f"「{advice.ja}」" in readme


@pytest.mark.parametrize("locale", LOCALES)
def test_nothing_contradicts_the_faqs(renderer: Renderer, locale: str) -> None:
    office = renderer.render(sample_context(Template.AT_DELIVERY_OFFICE, locale)).text
    assert "one or two days" not in office
    assert "1〜2日" not in office
    # A parcel still in Japan: only the shop can ask Japan Post, so no "ask your local post office".
    in_japan = dataclasses.replace(
        sample_context(Template.STALLED, locale), stage="accepted", stall_is_normal=False
    )
    text = renderer.render(in_japan).text.split("----")[0]
    assert "local post office" not in text
    assert "お近くの郵便局" not in text
    # Silent in customs: watch for calls, never "nothing to do".
    customs = renderer.render(sample_context(Template.STALLED, locale)).text
    assert "nothing you need to do" not in customs
    assert "特にございません" not in customs


# ---------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(("template", "locale"), ALL)
def test_every_subject_leads_with_the_news_not_the_shop(
    renderer: Renderer, template: Template, locale: str
) -> None:
    """The inbox already shows the sender: a subject starting with the shop's name hides the news."""
    subject = renderer.render(sample_context(template, locale)).subject
    assert not subject.startswith(("Sakura Stationery", "【Sakura Stationery】")), subject
    if template is Template.OPERATOR_DIGEST:
        assert "Sakura Stationery" in subject  # an operator may run several shops
    else:
        assert "Order 1001" in subject  # which order it is about


@pytest.mark.parametrize(
    ("locale", "subject"),
    [("en", "Delivered: your parcel (Order 1001)"), ("ja", "お荷物のお届けが完了しました（Order 1001）")],
)
def test_the_delivered_subject(renderer: Renderer, locale: str, subject: str) -> None:
    assert renderer.render(sample_context(Template.DELIVERED, locale)).subject == subject


@pytest.mark.parametrize(("template", "locale"), CUSTOMER)
def test_every_customer_message_has_a_preheader_headings_and_the_shop_contact(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(sample_context(template, locale))
    body = message.html.split("<body", 1)[1]
    preheader = re.search(r'<div style="display:none;[^"]*">([^<]+)</div>', body)
    assert preheader
    assert body.index(preheader.group(0)) < body.index("<table")
    assert "<h1 " in message.html
    assert "<h2 " in message.html
    assert "help@sakura-stationery.example" in message.text.split("\n--\n")[-1]
    assert 'href="tel:+81300000188"' in message.html
    assert '<span style="white-space:nowrap;">EJ 482 913 056 JP</span>' in message.html
    # Outlook ignores padding on links: the button's box is its table cell.
    assert "display:inline-block" not in message.html


def steps_in_text(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^\[([x> ])\] (.+)$", text, re.M)


@pytest.mark.parametrize(
    ("template", "international", "expected"),
    [
        (Template.ACCEPTED, True, [">", " ", " ", " ", " ", " ", " "]),
        (Template.CUSTOMS_PRESENTED, True, ["x", "x", "x", ">", " ", " ", " "]),
        (Template.DELIVERED, True, ["x"] * 6 + [">"]),
        (Template.AT_DELIVERY_OFFICE, False, ["x", "x", ">", " ", " "]),
        (Template.RETURNED, True, ["x", "x", ">"]),
    ],
)
def test_the_progress_tracker_marks_the_current_stage(
    renderer: Renderer, template: Template, international: bool, expected: list[str]
) -> None:
    context = dataclasses.replace(sample_context(template, "en"), international=international)
    message = renderer.render(context)
    steps = steps_in_text(message.text)
    assert [mark for mark, _ in steps] == expected
    current = next(label for mark, label in steps if mark == ">")
    assert current.endswith("(now)")
    assert f'<strong aria-current="step">{current}</strong>' in message.html
    if not international:
        assert "Customs" not in [label for _, label in steps]


@pytest.mark.parametrize(("locale", "hello"), [("en", "Dear Emma Brown,"), ("ja", "山田 花子 様")])
def test_the_greeting_uses_the_name_when_there_is_one(renderer: Renderer, locale: str, hello: str) -> None:
    context = sample_context(Template.DELIVERED, locale)
    assert hello in renderer.render(context).text
    anonymous = renderer.render(dataclasses.replace(context, name="")).text
    assert hello not in anonymous
    assert ("Hello," if locale == "en" else "このたびは") in anonymous


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    "template", [Template.ATTEMPTED_DELIVERY, Template.RETENTION, Template.RETENTION_REMINDER]
)
def test_a_domestic_hold_links_to_japan_posts_redelivery_page(
    renderer: Renderer, template: Template, locale: str
) -> None:
    domestic = renderer.render(dataclasses.replace(sample_context(template, locale), international=False))
    assert f'href="{REDELIVERY_URL}"' in domestic.html
    assert REDELIVERY_URL in domestic.text
    # Abroad the local post arranges redelivery: Japan Post's form cannot help.
    abroad = renderer.render(sample_context(template, locale))
    assert REDELIVERY_URL not in abroad.html + abroad.text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", [Template.RETURNING, Template.RETURNED])
def test_where_only_the_shop_can_act_the_button_writes_to_the_shop(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(sample_context(template, locale))
    first_button = re.search(
        r'<td bgcolor="#1d4f91" style="padding:12px[^>]*>\s*<a href="([^"]+)"', message.html
    )
    assert first_button
    assert first_button.group(1) == "mailto:help@sakura-stationery.example"
    assert "Thank you for shopping with us" not in message.text
    assert ("sorry" if locale == "en" else "申し訳ございません") in message.text


def test_phone_links_keep_only_digits_and_a_leading_plus(renderer: Renderer) -> None:
    context = dataclasses.replace(
        sample_context(Template.RETENTION, "en"),
        contacts=(ContactLine(role="Delivery", office="X", phone='+1 (718) 555-0143"><b>'),),
    )
    html = renderer.render(context).html
    assert 'href="tel:+17185550143"' in html
    assert "<b>" not in html


@pytest.mark.parametrize("phrase", ["お電話や郵便物にお気をつけください", "誠に恐れ入りますが", "保管期限"])
def test_japanese_wording_avoids_phrases_that_mislead(phrase: str) -> None:
    source = (templates_root() / "ja" / "_wording.j2").read_text(encoding="utf-8")
    assert phrase not in source


@pytest.mark.parametrize("locale", LOCALES)
def test_unavailable_japanese_wording_and_what_happened_on_the_way_are_said(locale: str) -> None:
    """A Japanese customer reading Japan Post's English wording is told why; a message that
    stands for several (superseded while waiting) says what happened on the way."""
    renderer = Renderer()
    plain = renderer.render(sample_context(Template.DELIVERED, locale))
    context = dataclasses.replace(
        sample_context(Template.DELIVERED, locale),
        wording_unavailable=True,
        passed_through=("out_for_delivery", "attempted_delivery", "retention"),
    )
    message = renderer.render(context)
    unavailable = {"en": "its wording above is in English", "ja": "英語の表記のまま記載しております"}[locale]
    attempted = {"en": "tried to deliver it once and could not", "ja": "ご不在のため配達できずに持ち戻り"}[
        locale
    ]
    held = {"en": "held at the post office for a while", "ja": "郵便局でしばらくお預かり"}[locale]
    for body in (fold(message.text), visible_text(message.html)):
        assert unavailable in body
        assert attempted in body
        assert held in body
    for body in (fold(plain.text), visible_text(plain.html)):
        assert unavailable not in body
        assert attempted not in body


# ------------------------------------------------------------------------- the action first


def first_link(html: str) -> tuple[str, str]:
    """The first link of a message's body (after the shop's name): href and caption."""
    href, caption = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html)[0]
    return htmllib.unescape(href), caption


WAITING = [
    pytest.param(t, loc, id=f"{loc}-{t.value}")
    for t in (Template.ATTEMPTED_DELIVERY, Template.RETENTION, Template.RETENTION_REMINDER)
    for loc in LOCALES
]


@pytest.mark.parametrize(("template", "locale"), WAITING)
def test_abroad_the_first_button_tracks_with_the_destination_post(
    renderer: Renderer, template: Template, locale: str
) -> None:
    message = renderer.render(sample_context(template, locale))  # EMS EJ482913056JP to the US
    href, caption = first_link(message.html)
    assert href == "https://tools.usps.com/go/TrackConfirmAction?tLabels=EJ482913056JP"
    assert caption == (
        "USPS（米国郵便）のサイトで配送状況を確認する" if locale == "ja" else "Track with USPS"
    )
    assert href in message.text
    # Japan Post's page stays, as a plain link below.
    assert "trackings.post.japanpost.jp/services/srv/search/direct" in message.html


@pytest.mark.parametrize(("template", "locale"), WAITING)
def test_at_home_the_first_button_is_japan_posts_redelivery_page_never_prefilled(
    renderer: Renderer, template: Template, locale: str
) -> None:
    context = dataclasses.replace(
        sample_context(template, locale), international=False, destination_post="", destination_post_url=""
    )
    href, _ = first_link(renderer.render(context).html)
    assert href == REDELIVERY_URL
    assert "?" not in href


@pytest.mark.parametrize(("template", "locale"), WAITING)
def test_abroad_without_a_known_post_the_first_button_is_the_tracking_page(
    renderer: Renderer, template: Template, locale: str
) -> None:
    context = dataclasses.replace(
        sample_context(template, locale), destination="BR", destination_post="", destination_post_url=""
    )
    href, _ = first_link(renderer.render(context).html)
    assert href.startswith("https://trackings.post.japanpost.jp/services/srv/search/direct")


@pytest.mark.parametrize("locale", LOCALES)
def test_the_delivered_message_keeps_cant_find_it_calm(renderer: Renderer, locale: str) -> None:
    html = renderer.render(sample_context(Template.DELIVERED, locale)).html
    assert "#fff6e0" not in html  # no amber alert box
    assert "#b7791f" not in html
    # The good news and the button come before the advice.
    advice = html.index("Can't find it?" if locale == "en" else "お荷物が見当たらない場合")
    assert html.index("<h1") < html.index("border-radius:4px") < advice


@pytest.mark.parametrize(("template", "locale"), CUSTOMER)
def test_wording_that_points_at_the_button_points_up(
    renderer: Renderer, template: Template, locale: str
) -> None:
    """The button follows the first paragraph in both versions, so it is always above the advice."""
    for variant in (
        sample_context(template, locale),
        dataclasses.replace(
            sample_context(template, locale),
            international=False,
            destination_post="",
            destination_post_url="",
        ),
    ):
        message = renderer.render(variant)
        for text in (message.text, visible_text(message.html)):
            for below in ("button below", "link below", "下のボタン", "下記のリンク"):
                assert below not in text
        first_url = re.search(r"^https://\S+$", message.text, re.M)
        if first_url and "above" in message.text.split("----")[0]:
            assert message.text.index(first_url.group(0)) < message.text.index("above")


@pytest.mark.parametrize(("template", "locale"), CUSTOMER)
def test_branding_logo_colour_and_shop_link(renderer: Renderer, template: Template, locale: str) -> None:
    plain = renderer.render(sample_context(template, locale))
    assert "<img" not in plain.html  # never required
    assert "#1d4f91" in plain.html
    branded = dataclasses.replace(
        sample_context(template, locale),
        logo_url="https://sakura.example/logo.png",
        brand_color="#8a1538",
        shop_url="https://sakura.example/",
    )
    message = renderer.render(branded)
    assert '<img src="https://sakura.example/logo.png" alt="Sakura Stationery"' in message.html
    assert "#1d4f91" not in message.html  # every accent follows the brand colour
    assert "#8a1538" in message.html
    assert '<a href="https://sakura.example/"' in message.html
    assert "https://sakura.example/" in message.text


@pytest.mark.parametrize(
    ("locale", "line"),
    [
        ("en", "- Pages not recognised: Japan Post's pages changed\n"),
        ("ja", "- 【ページ形式が不明】Japan Post's pages changed\n"),
    ],
)
def test_a_digest_line_without_a_subject_has_no_empty_field(
    renderer: Renderer, locale: str, line: str
) -> None:
    context = dataclasses.replace(
        sample_context(Template.OPERATOR_DIGEST, locale),
        digest=(DigestLine(kind="site_unrecognized", subject="", message="Japan Post's pages changed"),),
    )
    message = renderer.render(context)
    assert line in message.text
    assert ": :" not in message.text
    assert "】：" not in message.text


@pytest.mark.parametrize("locale", LOCALES)
def test_the_digest_lists_stalls_and_links_the_board(renderer: Renderer, locale: str) -> None:
    from notifier.core.messages import StallLine

    context = dataclasses.replace(
        sample_context(Template.OPERATOR_DIGEST, locale),
        stalls=(
            StallLine(number="EJ 482 913 056 JP", label="Order 1001", stage="customs_presented", days=9),
        ),
        board_url="https://track.sakura.example/admin/",
    )
    message = renderer.render(context)
    stall = (
        "EJ 482 913 056 JP（Order 1001）：customs_presented、9日"
        if locale == "ja"
        else ("- EJ 482 913 056 JP (Order 1001): customs_presented, 9 days")
    )
    assert stall in message.text
    assert "https://track.sakura.example/admin/" in message.text
    assert 'href="https://track.sakura.example/admin/"' in message.html
    plain = renderer.render(sample_context(Template.OPERATOR_DIGEST, locale))
    assert "/admin/" not in plain.text  # no board, no link
