"""Message previews made by the real pipeline: bilingual simulator pages over HTTP, parsed, diffed, decided and rendered."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from notifier.core.compose import MailSettings
from notifier.core.messages import MessageContext, RenderedMessage, Template
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.render import LOCALES, Renderer
from notifier.core.rules import DEFAULT_RULES, Baseline, MultiStage, RulesConfig
from notifier.core.views import ConfiguredWatch
from notifier.core.windows import MailWindows, WindowSettings
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.poll import Notifier, poll_detail, queue_timed
from notifier.store import Store
from notifier.testing.samples import previews_index, sample_context
from notifier.testing.simulator import Journey, Simulator, SimulatorServer, builtin_journeys, catalog_journeys

# Every rule on (the defaults leave "accepted" and "at the delivery office" off), one message per
# stage passed, and no age limit: the sample journeys are dated 2026 and every message is wanted.
PREVIEW_RULES = RulesConfig(
    rules=tuple(dataclasses.replace(rule, enabled=True) for rule in DEFAULT_RULES),
    baseline=Baseline.ALL,
    multi_stage=MultiStage.EACH,
    max_event_age=dt.timedelta(days=3650),
)

# The sample shop of docs/messages/ (`notifier preview` uses the configured one).
SAMPLE_MAIL = MailSettings(
    sender="Sakura Stationery <orders@sakura-stationery.example>",
    shop_name="Sakura Stationery",
    reply_to="help@sakura-stationery.example",
    shop_phone="+81 3-0000-0188",
    unsubscribe="https://sakura-stationery.example/tracking/unsubscribe?email={email}&number={number}",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Customer:
    """Who the preview journeys are addressed to, in one language."""

    email: str
    name: str
    time_zone: str
    label: str


CUSTOMERS = {
    "en": Customer("emma.brown@example.com", "Emma Brown", "America/New_York", "Order 1001"),
    "ja": Customer("hanako.yamada@example.jp", "山田 花子", "Asia/Tokyo", "ご注文 1001"),
}


class _Recorder(Renderer):
    """The configured renderer, keeping each context it is given: what the pipeline decided."""

    def __init__(self, renderer: Renderer) -> None:
        # Shares the configured environment; only `render` is wrapped.
        self.environment = renderer.environment
        self.contexts: list[MessageContext] = []

    def render(self, context: MessageContext) -> RenderedMessage:
        self.contexts.append(context)
        return super().render(context)


def _s10(serial: int) -> str:
    digits = f"{serial:08d}"
    return f"EJ{digits}{s10_check_digit(digits)}JP"


def _journeys(locale: str) -> tuple[list[Journey], list[Journey]]:
    """(journeys told stage by stage, journeys that stop and stay silent), most typical first.

    An English customer is abroad, so international parcels come first; a Japanese customer's
    parcel is domestic, so Yu-Pack comes first and EMS only for what a domestic parcel never does.
    """
    ems, yupack, returned, _ = builtin_journeys()
    export_pickup, import_bond, holds, pickup, returned_home, unreturnable = catalog_journeys()
    abroad = [ems, returned, export_pickup, import_bond]
    domestic = [yupack, holds, pickup, returned_home, unreturnable]
    told = [*abroad, *domestic] if locale == "en" else [*domestic, *abroad]
    stage_names = [s.status_en for s in ems.scans]
    retention = stage_names.index("Retention") + 1
    if locale == "en":
        # Left Japan and silent (normal), and held at the post office abroad.
        silent = [
            dataclasses.replace(ems, scans=ems.scans[:3]),
            dataclasses.replace(ems, number=_s10(48_291_305), scans=ems.scans[:retention]),
        ]
    else:
        # A domestic parcel silent on the way, and one held at the post office.
        held = [s.status_en for s in holds.scans].index("Retention") + 1
        silent = [
            dataclasses.replace(yupack, scans=yupack.scans[:2]),
            dataclasses.replace(holds, scans=holds.scans[:held]),
        ]
    return told, silent


def _scan_time(journey: Journey, index: int) -> dt.datetime:
    """A moment just after the scan: the page's local time, read as UTC, plus half an hour."""
    when = journey.scans[index].when
    at = dt.datetime.fromisoformat(when if "T" in when else f"{when}T18:00")
    return at.replace(tzinfo=dt.UTC) + dt.timedelta(minutes=30)


async def pipeline_contexts(
    locale: str, mail: MailSettings = SAMPLE_MAIL, renderer: Renderer | None = None
) -> dict[Template, MessageContext]:
    """Every parcel message to a customer reading `locale`, as the daemon decides and words it.

    The simulator serves each journey's English and Japanese pages on loopback; each scan is
    revealed in turn and polled (`poll_detail`: fetch, parse, diff, rules, the customer's
    language's page, compose) into a scratch SQLite database; the silent journeys then wait
    day by day (`queue_timed`: stalls, retention reminders). The first context of each message,
    in the journeys' order, is kept. The test message and the operator digest are not about a
    parcel: they are not in the result.
    """
    from notifier.store.database import make_engine, upgrade

    if locale not in CUSTOMERS:
        raise ValueError(f"no preview customer for locale {locale!r}; known: {', '.join(CUSTOMERS)}")
    customer = CUSTOMERS[locale]
    recorder = _Recorder(renderer or Renderer())
    # Windows from Japan Post's published times too: the preview shop has no history of its own.
    windows = WindowSettings(mail=MailWindows.ALWAYS)
    notifier = Notifier(rules=PREVIEW_RULES, mail=mail, renderer=recorder, windows=windows)
    told, silent = _journeys(locale)
    found: dict[Template, MessageContext] = {}
    folder = Path(tempfile.mkdtemp(prefix="notifier-previews-"))
    try:
        # Each silent journey waits on its own: in one store, the days counted after the latest
        # journey's last scan would make an earlier one's stall months long (a preview clock no
        # real parcel has).
        batches = [(told, "told"), *(([j], f"timed{n}") for n, j in enumerate(silent))]
        for batch, name in batches:
            timed = name != "told"
            url = f"sqlite+aiosqlite:///{folder / name}.db"
            engine = make_engine(url)
            try:
                await upgrade(engine)
            finally:
                await engine.dispose()
            simulator = Simulator([dataclasses.replace(j, revealed=0) for j in batch], seed=1)
            with SimulatorServer(simulator) as server:
                store = await Store.open(url)
                client = JapanPostClient(
                    ClientSettings(base_url=server.base_url, request_interval=0, attempts=1)
                )
                try:
                    await _tell(store, client, notifier, simulator, batch, customer, locale, timed)
                finally:
                    await client.aclose()
                    await store.close()
            order = {j.number: n for n, j in enumerate(batch)}
            for context in sorted(recorder.contexts, key=lambda c: order.get(c.number, len(order))):
                found.setdefault(Template(context.template), context)
            recorder.contexts.clear()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return found


async def _tell(
    store: Store,
    client: JapanPostClient,
    notifier: Notifier,
    simulator: Simulator,
    journeys: Sequence[Journey],
    customer: Customer,
    locale: str,
    timed: bool,
) -> None:
    start = min(_scan_time(j, 0) for j in journeys) - dt.timedelta(days=1)
    watches = [
        ConfiguredWatch(
            number=parse_number(j.number),
            label=customer.label,
            destination="US" if j.international and locale == "en" else None,
            subscribers=((customer.email, locale, customer.time_zone),),
            name=customer.name,
        )
        for j in journeys
    ]
    await store.sync_config_watches(watches, now=start)
    views = {view.number: view for view in await store.shipments()}
    last = start
    for journey in journeys:
        for index in range(len(journey.scans)):
            simulator.reveal(journey.number, index + 1)
            now = max(_scan_time(journey, index), last)
            last = now
            view = views[journey.number]
            await poll_detail(store, client, view, now=now, next_poll_at=None, notifier=notifier)
            views = {v.number: v for v in await store.shipments(include_inactive=True)}
    if timed:
        # Each day for a month after the last scan: what silence and a hold call for, when.
        for day in range(1, 31):
            await queue_timed(store, notifier, now=last + dt.timedelta(days=day), client=client)


def preview_context(
    template: Template, locale: str, mail: MailSettings = SAMPLE_MAIL, renderer: Renderer | None = None
) -> MessageContext:
    """One message as the pipeline makes it; the test message and the digest from their own builders."""
    if template in (Template.TEST, Template.OPERATOR_DIGEST):
        context = sample_context(template, locale)
        return dataclasses.replace(
            context,
            shop_name=mail.shop_name,
            shop_phone=mail.shop_phone,
            reply_to=mail.reply_to or "",
            logo_url=mail.logo_url or "",
            brand_color=mail.brand_color or "",
            shop_url=mail.shop_url or "",
        )
    contexts = asyncio.run(pipeline_contexts(locale, mail, renderer))
    if template not in contexts:
        raise LookupError(f"no preview journey reaches the {template.value} message")
    return contexts[template]


def without_signed_links(context: MessageContext, mail: MailSettings) -> MessageContext:
    """A preview's links to the web face shown as text, not links: they are signed for a sample
    customer and parcel that the database does not have, so they would answer 404 (or act on
    an address nobody owns)."""
    if mail.web is None:
        return context
    base = mail.web.public_url

    def placeholder(url: str, path: str) -> str:
        if not url.startswith(f"{base}/{path}/"):
            return url
        # No scheme at the start: the templates show it as text, never as a link or button.
        return f"[preview: each customer gets their own link, {base}/{path}/...]"

    return dataclasses.replace(
        context,
        tracking_url=placeholder(context.tracking_url, "t"),
        unsubscribe_url=placeholder(context.unsubscribe_url, "u"),
    )


def all_preview_contexts(
    mail: MailSettings = SAMPLE_MAIL, renderer: Renderer | None = None
) -> dict[tuple[Template, str], MessageContext]:
    """Every message in every language: the pipeline's, and the two not about a parcel."""
    out: dict[tuple[Template, str], MessageContext] = {}
    for locale in LOCALES:
        contexts = asyncio.run(pipeline_contexts(locale, mail, renderer))
        for template in Template:
            out[template, locale] = contexts.get(template) or preview_context(template, locale, mail)
    return out


def write_previews(directory: Path, renderer: Renderer | None = None) -> list[Path]:
    """Write `{locale}-{template}.html` and `.txt` for every message, and a README.md index."""
    renderer = renderer or Renderer()
    contexts = all_preview_contexts(SAMPLE_MAIL, renderer)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[str] = []
    for template in Template:
        subject = ""
        for locale in LOCALES:
            message = renderer.render(contexts[template, locale])
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
    index.write_text(previews_index(rows), encoding="utf-8", newline="\n")
    written.append(index)
    return written
