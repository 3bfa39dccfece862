"""Outbox throughput: messages rendered, queued and delivered per second to a real SMTP server.

    python benchmarks/outbox.py [--messages N] [--backend sqlite|postgresql|both]

Per backend, in a process of its own (so peak RSS belongs to that backend alone): a fresh
database (a file in a temporary directory; a PostgreSQL database created and dropped here),
migrated to head; N messages drafted with `compose.draft` (Jinja2 rendering of subject, text and
HTML plus the MIME build and Message-ID), from a mix of customer templates in English and
Japanese, each for its own recipient and tracking number; queued with `Store.enqueue`; then
delivered by `outbox.drain` (default policy: batches of 50) in a loop until the outbox is empty,
over one `SmtpTransport` kept open across batches, to the tests' aiosmtpd server on 127.0.0.1
(`tests.smtp_server.SmtpServer`, security none), which runs in a thread of this process.
The server must end up with exactly N messages carrying the N queued Message-IDs.

The drain is also split into the calls it makes per message (suppression check, SMTP send, mark
sent) and per batch (claim), timed through thin subclasses of Store and SmtpTransport.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import email.parser
import email.policy
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.compose import MailSettings, draft, tracking_url, unsubscribe_uri
from notifier.core.messages import MessageContext, Template
from notifier.core.numbers import s10_check_digit
from notifier.core.render import Renderer
from notifier.core.sending import OutboxPolicy
from notifier.core.views import OutboxDraft, OutboxItem
from notifier.net.mailer import SmtpTransport
from notifier.pipeline.outbox import drain
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.testing.samples import sample_context

if TYPE_CHECKING:
    from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("NOTIFIER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")
MAIL = MailSettings(
    sender="Sakura Stationery <shop@sakura-stationery.example>",
    shop_name="Sakura Stationery",
    reply_to="help@sakura-stationery.example",
    unsubscribe="https://sakura-stationery.example/tracking/unsubscribe?e={email}&n={number}",
)
# What customers are sent most: the milestones of an EMS parcel, plus the exceptions.
TEMPLATES = (
    Template.ACCEPTED,
    Template.DEPARTED_ORIGIN,
    Template.CUSTOMS_CLEARED,
    Template.OUT_FOR_DELIVERY,
    Template.ATTEMPTED_DELIVERY,
    Template.RETENTION,
    Template.DELIVERED,
    Template.STALLED,
)
TIME_ZONES = ("Asia/Tokyo", "America/New_York", "Europe/Berlin", None)
ENQUEUE_BATCH = 100  # drafts per Store.enqueue call (one transaction)


def expect(condition: bool, message: str) -> None:
    """A check that `python -O` keeps: figures from a wrong run are worse than none."""
    if not condition:
        raise RuntimeError(message)


def line(what: str, figure: str) -> None:
    print(f"{what:<36} {figure}", flush=True)


def rate(count: int, seconds: float, unit: str) -> str:
    return f"{count:>6} in {seconds:7.3f} s  {count / seconds:>9,.0f} {unit}/s  {seconds / count * 1e3:7.3f} ms each"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- workload ------------------------------------------------------------------------------


def s10_number(serial: int) -> str:
    digits = f"{serial:08d}"
    return f"EJ{digits}{s10_check_digit(digits)}JP"


def contexts(count: int) -> list[tuple[MessageContext, str, str | None]]:
    """(context, recipient, time zone) per message: templates cycled, 2 in 5 in Japanese."""
    bases = {
        (template, locale): sample_context(template, locale)
        for template in TEMPLATES
        for locale in ("en", "ja")
    }
    result = []
    for index in range(count):
        locale = "ja" if index % 5 in (1, 3) else "en"
        template = TEMPLATES[index % len(TEMPLATES)]
        number = s10_number(10_000_000 + index * 7)
        recipient = f"customer{index}@example.com"
        context = dataclasses.replace(
            bases[(template, locale)],
            number=number,
            number_display=f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:11]} {number[11:]}",
            label=f"Order {1001 + index}",
            tracking_url=tracking_url(MAIL.tracking_base_url, number, locale),
            unsubscribe_url=unsubscribe_uri(MAIL.unsubscribe, recipient, number),
        )
        result.append((context, recipient, TIME_ZONES[index % len(TIME_ZONES)]))
    return result


def render(renderer: Renderer, work: Sequence[tuple[MessageContext, str, str | None]]) -> list[OutboxDraft]:
    now = dt.datetime.now(dt.UTC)
    return [
        draft(
            context,
            renderer=renderer,
            mail=MAIL,
            recipient=recipient,
            dedup_key=f"bench:{context.number}:{context.template}:{recipient}",
            rule=str(context.template),
            now=now,
            time_zone=time_zone,
        )
        for context, recipient, time_zone in work
    ]


# --- timed collaborators -------------------------------------------------------------------


@dataclass(slots=True)
class Split:
    """Wall time spent in each call drain makes, summed over the run."""

    claims: int = 0
    claim: float = 0.0
    suppressed: float = 0.0
    send: float = 0.0
    mark_sent: float = 0.0


class TimedStore(Store):
    split: Split

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.split = Split()

    async def claim_outbox(
        self, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[OutboxItem]:
        started = time.perf_counter()
        try:
            return await super().claim_outbox(owner=owner, now=now, limit=limit, lease=lease)
        finally:
            self.split.claim += time.perf_counter() - started
            self.split.claims += 1

    async def suppressed_among(self, emails: Sequence[str]) -> set[str]:
        started = time.perf_counter()
        try:
            return await super().suppressed_among(emails)
        finally:
            self.split.suppressed += time.perf_counter() - started

    async def mark_sent(self, message_id: int, *, owner: str, now: dt.datetime, reply: str) -> bool:
        started = time.perf_counter()
        try:
            return await super().mark_sent(message_id, owner=owner, now=now, reply=reply)
        finally:
            self.split.mark_sent += time.perf_counter() - started


class TimedTransport(SmtpTransport):
    split: Split

    async def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> str:
        started = time.perf_counter()
        try:
            return await super().send(raw, sender=sender, recipients=recipients)
        finally:
            self.split.send += time.perf_counter() - started


# --- databases -----------------------------------------------------------------------------


async def postgres_admin(*statements: str) -> str:
    """Run statements on the maintenance database; returns the server version."""
    url = make_url(POSTGRES_URL)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=5,
    )
    try:
        for statement in statements:
            await connection.execute(statement)
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def postgres_unavailable() -> str | None:
    try:
        asyncio.run(postgres_admin())
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable at {make_url(POSTGRES_URL).render_as_string()}: {exc}"
    return None


@asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[tuple[str, str]]:
    """(URL, description) of a new database at head, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="outbox-bench-") as directory:
            url = f"sqlite:///{Path(directory) / 'notifier.db'}"
            await migrate(url)
            yield url, f"SQLite {sqlite3.sqlite_version} (temp file, WAL, synchronous=FULL)"
        return
    name = f"nt_bench_outbox_{uuid.uuid4().hex[:12]}"
    version = await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        await migrate(url)
        yield url, f"PostgreSQL {version} (database {name}, dropped at the end)"
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


# --- the run -------------------------------------------------------------------------------


def smtp_server() -> SmtpServer:
    # `python benchmarks/outbox.py` puts benchmarks/, not the repository, on sys.path.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.smtp_server import SmtpServer

    return SmtpServer()


def message_id(raw: bytes) -> str:
    headers = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    return str(headers.get("Message-ID", ""))


async def run(backend: str, count: int) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}",
        flush=True,
    )
    baseline_rss = peak_rss_mib()
    renderer = Renderer()
    work = contexts(count)
    async with fresh_database(backend) as (url, description):
        line("backend", description)
        line(
            "messages",
            f"{count} ({len(TEMPLATES)} templates, en and ja; 2 in 5 ja), claim batch {OutboxPolicy().batch}",
        )

        started = time.perf_counter()
        # Every template and locale once (the mix repeats every 40 messages); not queued.
        render(renderer, work[:40])
        line("warm-up (compile templates)", f"{time.perf_counter() - started:7.3f} s")

        started = time.perf_counter()
        drafts = render(renderer, work)
        line("render + MIME (compose.draft)", rate(count, time.perf_counter() - started, "msg"))
        # The same contexts through Jinja2 alone: what of compose.draft is not MIME building.
        started = time.perf_counter()
        for context, _, _ in work:
            renderer.render(context)
        line("  of which Jinja2 (Renderer.render)", rate(count, time.perf_counter() - started, "msg"))
        sizes = [len(d.raw) for d in drafts]
        line("message size", f"mean {sum(sizes) / count / 1024:.1f} KiB, max {max(sizes) / 1024:.1f} KiB")

        store = await TimedStore.open(url)
        assert isinstance(store, TimedStore)
        try:
            started = time.perf_counter()
            queued = 0
            for first in range(0, count, ENQUEUE_BATCH):
                queued += await store.enqueue(
                    drafts[first : first + ENQUEUE_BATCH], now=dt.datetime.now(dt.UTC)
                )
            elapsed = time.perf_counter() - started
            expect(queued == count, f"queued {queued} of {count}")
            line(f"enqueue ({ENQUEUE_BATCH} per transaction)", rate(count, elapsed, "msg"))

            await deliver(store, drafts)
        finally:
            await store.close()
    line(
        "peak RSS",
        f"{peak_rss_mib():.0f} MiB ({baseline_rss:.0f} MiB after imports; holds the drafts and the "
        "server's copies)",
    )


async def deliver(store: TimedStore, drafts: Sequence[OutboxDraft]) -> None:
    count = len(drafts)
    policy = OutboxPolicy()
    server = smtp_server()
    server.start()
    try:
        transport = TimedTransport(server.settings())
        transport.split = store.split
        sent = batches = 0
        started = time.perf_counter()
        async with transport:
            while True:
                result = await drain(
                    store,
                    transport,
                    owner="bench",
                    policy=policy,
                    clock=lambda: dt.datetime.now(dt.UTC),
                )
                expect(not result.errors, f"drain reported errors: {result.errors[:3]}")
                expect(
                    result.retried == result.failed == result.deferred == result.suppressed == 0, str(result)
                )
                if result.sent == 0:
                    break
                sent += result.sent
                batches += 1
        elapsed = time.perf_counter() - started
    finally:
        server.stop()

    line("drain end to end", rate(sent, elapsed, "msg"))
    split = store.split
    other = elapsed - split.claim - split.suppressed - split.send - split.mark_sent
    line(
        f"  claim_outbox ({split.claims} calls)",
        f"{split.claim / sent * 1e3:7.3f} ms per message ({split.claim / elapsed:4.0%}); "
        f"{split.claim / split.claims * 1e3:.1f} ms per call, the last one finding nothing",
    )
    for what, spent in (
        ("  suppressed_among (per batch)", split.suppressed),
        ("  SMTP send (MAIL, RCPT, DATA)", split.send),
        ("  mark_sent (one commit)", split.mark_sent),
        ("  rest of drain", other),
    ):
        line(what, f"{spent / sent * 1e3:7.3f} ms per message ({spent / elapsed:4.0%})")

    depth = await store.outbox_depth()
    expect(depth == {"sent": count}, f"outbox after the drain: {depth}")
    expect(sent == count and batches == -(-count // policy.batch), f"sent {sent} in {batches} batches")
    received = server.messages
    ids = [message_id(m.data) for m in received]
    expect(len(received) == count, f"server received {len(received)} messages, expected {count}")
    expect(all(m.answered for m in received), "a message was stored without a 250")
    expect(len(set(ids)) == count, f"{len(set(ids))} distinct Message-IDs among {len(received)}")
    expect(set(ids) == {d.message_id for d in drafts}, "the server's Message-IDs are not the queued ones")
    line(
        "server",
        f"{len(received)} messages, {len(set(ids))} distinct Message-IDs, "
        f"{server.connections} connection(s), {batches} batches",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, metavar="N")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    args = parser.parse_args(argv)
    expect(args.messages > 0, "--messages must be positive")
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    status = 0
    for index, backend in enumerate(backends):
        if index:
            print()
        if backend == "postgresql":
            reason = postgres_unavailable()
            if reason is not None:
                print(f"postgresql: skipped: {reason}", flush=True)
                continue
        if len(backends) > 1:
            # One process per backend, so that peak RSS is that backend's own.
            command = [sys.executable, __file__, "--messages", str(args.messages), "--backend", backend]
            status = max(status, subprocess.run(command, check=False).returncode)
            continue
        asyncio.run(run(backend, args.messages))
    return status


if __name__ == "__main__":
    sys.exit(main())
