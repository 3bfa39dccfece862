"""`notifier demo`: the real daemon against the built-in simulator, offline, in compressed time."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email.policy
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from notifier.cli import columns
from notifier.daemon import logformat
from notifier.net.sdnotify import Notifier as SystemdNotifier
from notifier.store.database import make_engine, upgrade
from notifier.testing.simulator import Journey, Simulator, SimulatorServer, builtin_journeys

if TYPE_CHECKING:
    # Imported where it runs: the scheduler is not worth loading for `notifier --help`.
    from notifier.daemon.service import Daemon

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

DEFAULT_STEP_SECONDS = 1.5
# Once Japan Post shows everything, the daemon needs a few polls and one outbox run to catch up;
# far more than that means something is wrong, and a demo must never hang.
CATCH_UP_SECONDS = 60.0
READY_SECONDS = 30.0
WATCH_INTERVAL = 0.2
RULE = "─" * 78


@dataclass(frozen=True, slots=True)
class DemoWatch:
    """One [[watch]] of the generated config: who hears about which simulated parcel."""

    number: str
    label: str
    subscriber: str
    locale: str
    time_zone: str
    destination: str | None = None


# One customer per builtin journey, in builtin_journeys() order. The domestic Yu-Pack goes to a
# Japanese customer, so the demo shows both languages of the templates.
WATCHES = (
    DemoWatch("EJ202603021JP", "Order 1001", "emma@example.com", "en", "America/New_York", "US"),
    DemoWatch("314159265350", "注文 1002", "hanako@example.jp", "ja", "Asia/Tokyo"),
    DemoWatch("CP314159268JP", "Order 1003", "li.wei@example.com", "en", "Asia/Shanghai", "CN"),
    DemoWatch("EJ271828189JP", "Order 1004", "sam@example.com", "en", "Europe/London", "GB"),
)


@dataclass(frozen=True, slots=True)
class Email:
    """What the demo shows of one .eml file the file transport wrote."""

    path: Path
    to: str
    subject: str
    stage: str
    number: str
    body: str


@dataclass(slots=True)
class Outcome:
    """How the demo ended, as the task that drives it saw it (Ctrl-C leaves both unset)."""

    finished: bool = False
    timed_out: str | None = None


class Console:
    """stdout that never dies on a terminal whose encoding lacks Japanese (it degrades to '?')."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str = "") -> None:
        try:
            self.stream.write(text + "\n")
        except UnicodeEncodeError:
            encoding = self.stream.encoding or "ascii"
            self.stream.write(text.encode(encoding, "replace").decode(encoding) + "\n")
        # Flushed per line: piped output (CI logs, `| tee`) should show emails as they happen.
        self.stream.flush()


def toml_string(value: str) -> str:
    # A JSON string without \u escapes is a valid TOML basic string (same escapes for the rest).
    return json.dumps(value, ensure_ascii=False)


def max_event_age_days(journeys: list[Journey], today: dt.date) -> int:
    """Days back to the simulator's first scan, with a margin: its parcels travelled in 2026, and
    the rules drop news older than max_event_age, so a fixed value would stop working one day."""
    dates = [scan.date for journey in journeys for scan in journey.scans]
    if not dates:
        return 14
    return max(14, (today - min(dates)).days + 30)


def config_text(base_url: str, database_url: str, max_age_days: int, today: dt.date) -> str:
    watches = []
    for watch in WATCHES:
        lines = [
            "[[watch]]",
            f"number = {toml_string(watch.number)}",
            f"label = {toml_string(watch.label)}",
            f"subscribers = [{toml_string(watch.subscriber)}]",
            f"locale = {toml_string(watch.locale)}",
            f"time_zone = {toml_string(watch.time_zone)}",
        ]
        if watch.destination:
            lines.append(f"destination = {toml_string(watch.destination)}")
        watches.append("\n".join(lines))
    watch_tables = "\n\n".join(watches)
    return f"""\
# Written by `notifier demo` on {today.isoformat()}. To run notifier for real, copy this file and
# undo what the demo chose for speed:
#   - [database] url: somewhere lasting (this one is in the demo's temporary directory);
#   - [japanpost]: delete both keys: the default base_url is the real site, and the default
#     request_interval (5 s) is polite to Japan Post (0 is for the simulator only);
#   - [polling]: delete it: by default each parcel is polled as often as its stage deserves;
#   - max_event_age: delete it: the default (14 days) keeps stale news out of customers' inboxes;
#   - add an [smtp] section (host, from, ...): without one, mail is written to outbox_dir as .eml;
#   - [notifications]: your shop's name and operator address (and reply_to): with [smtp] set,
#     `notifier config check` and `run` refuse addresses on example domains such as demo.example;
#   - [[watch]]: your own parcels and customers.
# Then: notifier db upgrade --config notifier.toml && notifier run --config notifier.toml

[database]
url = {toml_string(database_url)}

[japanpost]
# The simulator the demo started in-process; it is gone once the demo ends.
base_url = {toml_string(base_url)}
request_interval = 0

[polling]
# Compressed time: poll every half second instead of every few hours.
fixed_interval = "0.5s"
tick = "0.5s"

[notifications]
shop_name = "Demo Shop"
operator = "ops@demo.example"
outbox_dir = "outbox"
# The simulator's parcels travelled in spring 2026; news older than this is never sent.
max_event_age = "{max_age_days}d"
# Scans arrive faster than polls here: send one email per stage passed, not only the latest.
multi_stage = "each"

{watch_tables}
"""


def read_email(path: Path) -> Email:
    message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
    part = message.get_body(preferencelist=("plain",))
    body = str(part.get_content()) if part is not None else "(no plain-text part)"
    return Email(
        path=path,
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        # The operator digest is about no shipment, so it has neither header.
        stage=str(message.get("X-Notifier-Stage", "-")),
        number=str(message.get("X-Notifier-Tracking-Number", "-")),
        body=body,
    )


@dataclass(slots=True)
class OutboxPrinter:
    """Prints each .eml the daemon's file transport writes, in the order it wrote them."""

    directory: Path
    console: Console
    started: float
    emails: list[Email] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def print_new(self) -> None:
        if not self.directory.is_dir():
            return
        # Names start with a UTC timestamp, so sorting gives send order. Dot-files are writes in
        # progress (the transport renames them into place when complete).
        for path in sorted(self.directory.glob("[!.]*.eml")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            mail = read_email(path)
            self.emails.append(mail)
            self.show(mail)

    def show(self, mail: Email) -> None:
        elapsed = time.monotonic() - self.started
        clock = dt.datetime.now().strftime("%H:%M:%S")
        self.console.line(RULE)
        self.console.line(
            f"✉ #{len(self.emails)}  {clock} (+{elapsed:.1f}s)  To: {mail.to}  stage: {mail.stage}  [{mail.number}]"
        )
        self.console.line(f"  Subject: {mail.subject}")
        self.console.line(RULE)
        for text in mail.body.rstrip().splitlines():
            self.console.line(f"  {text}".rstrip())
        self.console.line()

    async def follow(self) -> None:
        while True:
            self.print_new()
            await asyncio.sleep(WATCH_INTERVAL)


def show_scans(console: Console, simulator: Simulator, numbers: list[str]) -> None:
    for number in numbers:
        journey = simulator.journey(number)
        scan = journey.visible[-1]
        place = scan.office_en or scan.region_en
        console.line(
            f"  · Japan Post  {number:<13}  {scan.when.replace('T', ' '):<16}  {scan.status_en}  ({place})"
        )


async def wait_until_polled(daemon: Daemon, deadline: float) -> None:
    """Until the daemon has polled every watch once, so its first sight is each parcel's first scan.

    The daemon has no readiness hook, so this watches its store: `store` exists once it started,
    and a shipment's last_polled_at once its first poll committed.
    """
    while True:
        store = getattr(daemon, "store", None)
        if store is not None:
            views = await store.shipments()
            if len(views) == len(WATCHES) and all(
                v.last_polled_at is not None or v.consecutive_failures for v in views
            ):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the daemon did not poll the demo parcels within {READY_SECONDS:g} s")
        await asyncio.sleep(WATCH_INTERVAL)


async def caught_up(daemon: Daemon, simulator: Simulator) -> bool:
    """Every scan the simulator shows is in the database, and every queued email is written."""
    store = daemon.store
    for view in await store.shipments():
        scans = len(simulator.journey(view.number).visible)
        if scans and len(await store.history(view.id)) < scans:
            return False
    depth = await store.outbox_depth()
    return not depth.get("pending", 0) and not depth.get("sending", 0)


async def drive(
    daemon: Daemon, simulator: Simulator, step_seconds: float, console: Console, outcome: Outcome
) -> None:
    """Compressed time: one more scan of every journey per step, then stop once all is told."""
    try:
        try:
            show_scans(
                console, simulator, [j.number for j in map(simulator.journey, simulator.numbers) if j.visible]
            )
            console.line()
            await wait_until_polled(daemon, time.monotonic() + READY_SECONDS)
            console.line("The daemon is running and has polled each parcel once. No email yet: acceptance is")
            console.line("not news (the shop told its customer when it shipped).")
            console.line()
            while any(j.revealed < len(j.scans) for j in map(simulator.journey, simulator.numbers)):
                await asyncio.sleep(step_seconds)
                show_scans(console, simulator, simulator.advance())
            deadline = time.monotonic() + CATCH_UP_SECONDS
            while not await caught_up(daemon, simulator):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the daemon did not record every scan and send every email within {CATCH_UP_SECONDS:g} s"
                    )
                await asyncio.sleep(WATCH_INTERVAL)
            outcome.finished = True
        except TimeoutError as exc:
            outcome.timed_out = f"{exc}; run with -v to see its log"
        except Exception:
            # A Ctrl-C stops the daemon, which closes the store under a query of ours: not a bug.
            if daemon.stop.is_set():
                return
            raise
    finally:
        # The daemon's own graceful stop; it waits for a poll or send in progress to finish.
        daemon.stop.set()


def print_intro(console: Console, step_seconds: float, workdir: Path, keep: bool) -> None:
    journeys = {j.number: j for j in builtin_journeys()}
    console.line("notifier demo: the real daemon, a simulated Japan Post, four parcels, compressed time.")
    console.line()
    rows = []
    for watch in WATCHES:
        journey = journeys[watch.number]
        note = f"{len(journey.scans)} scans" if journey.scans else "never found by Japan Post"
        rows.append(
            [
                watch.number,
                journey.item_type_en,
                f"{watch.subscriber} ({watch.locale})",
                watch.label,
                f"[{note}]",
            ]
        )
    for line in intro_lines(rows):
        console.line(line)
    console.line()
    console.line(
        f"Japan Post shows one more scan of every parcel each {step_seconds:g} s; the daemon polls every"
    )
    console.line("0.5 s and emails a customer when their parcel enters a stage worth telling. Ctrl-C stops.")
    console.line(f"Working directory: {workdir}" + ("" if keep else " (removed at the end; --keep keeps it)"))
    console.line()


def intro_lines(rows: list[list[str]]) -> list[str]:
    """The parcels, one a line, columns aligned by display width (labels may be Japanese)."""
    return ["  " + line for line in columns.table(rows, [""] * len(rows[0])).splitlines()[1:]]


def summary_lines(rows: list[list[str]]) -> list[str]:
    """Customer, email count, number, label: aligned by display width; the count right-aligned."""
    counted = [[row[0], f"{row[1]} emails", *row[2:]] for row in rows]
    table = columns.table(counted, [""] * len(counted[0]), right=frozenset({1}))
    return ["  " + line for line in table.splitlines()[1:]]


def wrap_stages(stages: list[str], width: int = 72) -> list[str]:
    """`a → b → c`, broken after an arrow so that each line reads as a continuation."""
    lines: list[str] = []
    current = ""
    for stage in stages:
        candidate = f"{current} → {stage}" if current else stage
        if current and columns.width(candidate) > width:
            lines.append(current + " →")
            current = stage
        else:
            current = candidate
    return [*lines, current]


def print_summary(console: Console, printer: OutboxPrinter, config: Path, keep: bool, elapsed: float) -> None:
    journeys = {j.number: j for j in builtin_journeys()}
    console.line(RULE)
    console.line(f"Summary: {len(printer.emails)} emails in {elapsed:.1f} s")
    per_customer = Counter(mail.to for mail in printer.emails)
    others = sorted(set(per_customer) - {w.subscriber for w in WATCHES})
    lines = summary_lines(
        [[w.subscriber, str(per_customer[w.subscriber]), w.number, w.label] for w in WATCHES]
        + [[address, str(per_customer[address]), "(operator digest)", ""] for address in others]
    )
    for watch, line in zip(WATCHES, lines, strict=False):
        stages = [mail.stage for mail in printer.emails if mail.to == watch.subscriber]
        console.line(line)
        if stages:
            told = wrap_stages(stages)
        elif not journeys[watch.number].scans:
            told = ["nothing: Japan Post never found the parcel, so there was no news to send"]
        else:
            told = ["nothing yet"]
        for text in told:
            console.line(f"      {text}")
    for line in lines[len(WATCHES) :]:
        console.line(line)
    console.line()
    where = "kept" if keep else "removed now; rerun with --keep to keep them"
    console.line(f"Emails (.eml files): {printer.directory}  ({where})")
    console.line(f"Generated config:    {config}  ({where})")
    console.line()
    console.line("To run it for real: copy the config (its comments say what to change: Japan Post,")
    console.line("[smtp], your shop's name and addresses, your own [[watch]] entries), then")
    console.line(f"  notifier db upgrade --config {config.name}")
    console.line(f"  notifier run --config {config.name}")


async def migrate(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def write_config(workdir: Path, base_url: str, database_url: str) -> Path:
    today = dt.date.today()
    path = workdir / "notifier.toml"
    days = max_event_age_days(builtin_journeys(), today)
    path.write_text(config_text(base_url, database_url, days, today), encoding="utf-8")
    return path


async def run_demo(step_seconds: float, workdir: Path, keep: bool, console: Console) -> int:
    from notifier.daemon.service import Daemon

    started = time.monotonic()
    print_intro(console, step_seconds, workdir, keep)
    simulator = Simulator(builtin_journeys())
    with SimulatorServer(simulator) as server:
        database_url = f"sqlite:///{workdir / 'notifier.db'}"
        config = write_config(workdir, server.base_url, database_url)
        await migrate(database_url)
        # database_url given explicitly so that $NOTIFIER_DATABASE_URL cannot point the demo at a
        # real database.
        daemon = Daemon(str(config), database_url=database_url)
        # No systemd chatter even when started from inside a notify-type unit: the demo is not
        # the service.
        daemon.systemd = SystemdNotifier(address="")
        printer = OutboxPrinter(workdir / "outbox", console, started)
        outcome = Outcome()
        follower = asyncio.create_task(printer.follow())
        driver = asyncio.create_task(drive(daemon, simulator, step_seconds, console, outcome))
        try:
            code = await daemon.run()
        finally:
            driver.cancel()
            follower.cancel()
            results = await asyncio.gather(driver, follower, return_exceptions=True)
        printer.print_new()  # whatever was written since the last look
    for result in results:
        if isinstance(result, Exception):
            raise result
    if code != EXIT_OK:
        console.line(f"The daemon exited with code {code}; run with -v to see why.")
    elif outcome.timed_out:
        console.line(f"Stopped early: {outcome.timed_out}.")
        code = EXIT_FAILURE
    elif not outcome.finished:
        # The daemon stops on SIGINT/SIGTERM by itself; the demo only notices it did.
        console.line("Interrupted: stopped before every parcel reached the end of its journey.")
        code = EXIT_INTERRUPTED
    print_summary(console, printer, config, keep, time.monotonic() - started)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    console = Console(sys.stdout)
    log = logging.getLogger("notifier")
    scheduler_log = logging.getLogger("apscheduler")
    previous = log.level, scheduler_log.level
    # The daemon logs every poll and send at INFO: the emails are the show here, not its log.
    # APScheduler warns when a poll is skipped because the previous one still runs, which the
    # daemon wants (one poll at a time) and a newcomer would read as a fault.
    if getattr(args, "verbose", False):
        log.setLevel(min(previous[0] or logging.INFO, logging.INFO))
    else:
        log.setLevel(logging.WARNING)
        scheduler_log.setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="notifier-demo-"))
    try:
        return asyncio.run(run_demo(args.step_seconds, workdir, args.keep, console))
    except KeyboardInterrupt:
        # Ctrl-C before the daemon took over SIGINT (while setting up) or after it let go.
        console.line("Interrupted.")
        return EXIT_INTERRUPTED
    finally:
        log.setLevel(previous[0])
        scheduler_log.setLevel(previous[1])
        if args.keep:
            console.line(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _step(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 60:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0.05 and 60 seconds")
    return value


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    demo = sub.add_parser(
        "demo",
        help="watch the daemon email four simulated parcels' customers, offline, in under a minute",
        parents=parents,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--step-seconds",
        type=_step,
        default=DEFAULT_STEP_SECONDS,
        metavar="SECONDS",
        help="seconds between two scans of the simulated Japan Post (compressed time)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (config, database, .eml files)"
    )
    demo.set_defaults(handler=cmd_demo)


def main(argv: list[str] | None = None) -> int:
    """`notifier demo` on its own, with the CLI's -v and logging set-up."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log detail")
    parser = argparse.ArgumentParser(prog="notifier")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub, [common])
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    logformat.configure(logging.WARNING)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
