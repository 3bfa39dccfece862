"""Command line: subcommands, and the single place where errors become messages and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from notifier import __version__
from notifier.core.model import DEFAULT_BASE_URL, ItemResult, Layout, Locale, Outcome, Page
from notifier.core.numbers import parse_number
from notifier.core.parser import page_to_json, parse_page
from notifier.core.stages import stage_info
from notifier.errors import ConfigError, FetchError, InvalidNumberError, NotifierError
from notifier.net.japanpost import MAX_BATCH, ClientSettings, JapanPostClient
from notifier.store.database import SchemaError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SCHEMA = 3

logger = logging.getLogger("notifier")


_OUTCOME_MEANING = {
    Outcome.NOT_FOUND: (
        "Japan Post has no record of this number (yet): tracking starts once a post office scans it in.",
        "日本郵便にはまだこの番号の記録がありません。郵便局で引き受けられると追跡が始まります。",
    ),
    Outcome.INVALID_NUMBER: (
        "Japan Post refused the number itself: check it against the shipping receipt.",
        "日本郵便がこの番号を受け付けませんでした。控えの番号をご確認ください。",
    ),
}


def _describe(item: ItemResult, locale: Locale) -> list[str]:
    info = stage_info(item.stage)
    meaning = info.meaning_ja if locale is Locale.JA else info.meaning_en
    if item.outcome in _OUTCOME_MEANING:
        en, ja = _OUTCOME_MEANING[item.outcome]
        meaning = ja if locale is Locale.JA else en
    head = f"{item.number}  {item.item_type or '-'}  {item.outcome}  stage={item.stage}"
    lines = [head, f"  {meaning}"]
    if item.message:
        lines.append(f"  Japan Post says: {item.message}")
    for event in item.events:
        place = " / ".join(part for part in (event.office, event.region, event.postal_code) if part)
        lines.append(f"  {event.when.iso_local():<16}  {event.stage:<20}  {event.status}  [{place}]")
    for office in item.offices:
        lines.append(f"  contact: {office.role}: {office.office} {office.phone}".rstrip())
    return lines


def _print_page(page: Page, locale: Locale) -> None:
    for item in page.items:
        print("\n".join(_describe(item, locale)))


def cmd_parse(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"notifier parse: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    page = parse_page(data)
    if args.json:
        print(json.dumps(page_to_json(page), ensure_ascii=False, indent=2))
    elif page.layout is not Layout.UNRECOGNIZED:
        print(f"layout: {page.layout}  locale: {page.locale}")
        _print_page(page, page.locale)
    if page.layout is Layout.UNRECOGNIZED:
        title = f" (page title: {page.title!r})" if page.title else ""
        print(f"notifier parse: {path}: unrecognized page: {page.reason}{title}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _save(directory: Path | None, number: str, locale: Locale, body: bytes) -> Path | None:
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{number}-{locale}.html"
    path.write_bytes(body)
    return path


async def _check(
    numbers: list[str],
    settings: ClientSettings,
    locale: Locale,
    as_json: bool,
    save_dir: Path | None,
    latest: bool = False,
) -> int:
    worst = EXIT_OK
    results: list[dict[str, object]] = []
    async with JapanPostClient(settings) as client:
        # --latest: one list request per ten numbers; else a detail request per number.
        size = MAX_BATCH if latest else 1
        for batch in (numbers[i : i + size] for i in range(0, len(numbers), size)):
            entries: list[dict[str, object]] = [{"number": number, "error": None} for number in batch]
            results.extend(entries)
            try:
                if latest:
                    fetched = await client.fetch_latest(batch, locale)
                else:
                    fetched = await client.fetch_detail(batch[0], locale)
            except FetchError as exc:
                worst = EXIT_FAILURE
                for entry in entries:
                    entry["error"] = f"fetch failed: {exc}"
                    if not as_json:
                        print(f"{entry['number']}: fetch failed: {exc}", file=sys.stderr)
                continue
            page = fetched.page
            saved = _save(save_dir, f"list-{batch[0]}" if latest else batch[0], locale, fetched.body)
            for entry, number in zip(entries, batch, strict=True):
                item = page.item(number)
                # A list page covers ten numbers: each entry shows its own item of it.
                shown = (
                    Page(layout=page.layout, locale=page.locale, items=(item,)) if latest and item else page
                )
                entry.update(url=fetched.url, page=page_to_json(shown))
                if latest and item is None and page.layout is not Layout.UNRECOGNIZED:
                    worst = EXIT_FAILURE
                    entry["error"] = "the list page does not show this number"
                    if not as_json:
                        print(f"{number}: the list page from {fetched.url} does not show it", file=sys.stderr)
                elif page.layout is Layout.UNRECOGNIZED:
                    worst = EXIT_FAILURE
                    entry["error"] = f"unrecognized page: {page.reason}"
                    if not as_json:
                        where = f"; saved to {saved}" if saved else "; save it with --save-pages DIR"
                        print(
                            f"{number}: unrecognized page from {fetched.url}: {page.reason}"
                            f" (page title: {page.title!r}{where})",
                            file=sys.stderr,
                        )
                elif not as_json:
                    _print_page(shown, locale)
    if as_json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    return worst


def cmd_check(args: argparse.Namespace) -> int:
    numbers = []
    problems = []
    for raw in args.numbers:
        try:
            numbers.append(parse_number(raw).value)
        except InvalidNumberError as exc:
            problems.append(str(exc))
    if problems:
        for problem in problems:
            print(f"notifier check: {problem}", file=sys.stderr)
        if len(args.numbers) > 1 and all(len(raw) < 11 for raw in args.numbers):
            print(
                "notifier check: a number typed with spaces must be quoted: 'EJ 202 603 021 JP'",
                file=sys.stderr,
            )
        return EXIT_USAGE
    locale = Locale(args.locale)
    save_dir = Path(args.save_pages) if args.save_pages else None
    base_url, interval = args.base_url, args.request_interval
    if args.config or os.environ.get("NOTIFIER_CONFIG"):
        from notifier.config import load_settings

        configured = load_settings(args.config).japanpost
        base_url = args.base_url if args.base_url != DEFAULT_BASE_URL else configured.base_url
        interval = interval if interval is not None else configured.request_interval
    with ExitStack() as stack:
        if args.simulator:
            from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys

            journeys = builtin_journeys()
            for journey in journeys:
                journey.revealed = len(journey.scans)
            server = stack.enter_context(SimulatorServer(Simulator(journeys)))
            base_url = server.base_url
            interval = 0.0 if interval is None else interval
            print(f"(answering from the built-in Japan Post simulator at {base_url})", file=sys.stderr)
        settings = ClientSettings(base_url=base_url, request_interval=5.0 if interval is None else interval)
        return asyncio.run(_check(numbers, settings, locale, args.json, save_dir, args.latest))


def cmd_simulator(args: argparse.Namespace) -> int:
    from notifier.testing.simulator import Fault, builtin_journeys, serve

    journeys = builtin_journeys()
    if args.now:
        import datetime as dt

        from notifier.testing.simulator import recent_journeys

        journeys = recent_journeys(journeys, dt.datetime.now(dt.UTC).date())
    if args.step_seconds is None:
        # Without steps nothing would ever move, so show every journey complete.
        for journey in journeys:
            journey.revealed = len(journey.scans)
    print(f"Japan Post simulator on http://{args.host}:{args.port}/ ; numbers:", file=sys.stderr)
    for journey in journeys:
        span = f", {journey.scans[0].date} to {journey.scans[-1].date}" if journey.scans else ""
        print(
            f"  {journey.number}  {journey.item_type_en}  {len(journey.scans)} scans{span}", file=sys.stderr
        )
    fault = Fault(args.fault) if args.fault else None
    try:
        serve(
            args.host,
            args.port,
            step_seconds=args.step_seconds,
            journeys=journeys,
            fault=fault,
            retry_after=60,
        )
    except OSError as exc:
        print(
            f"notifier simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from notifier.daemon.service import run

    # One line per event, no timestamps when journald adds its own.
    if not getattr(args, "verbose", False):
        logging.getLogger("notifier").setLevel(logging.INFO)
    return run(args.config, args.database_url)


def cmd_config_check(args: argparse.Namespace) -> int:
    from notifier.config import EXAMPLE_IDENTITY_WARNING, load_settings, start_refusals
    from notifier.store.database import display_url

    settings = load_settings(args.config)
    # Every check `run` makes before it is ready, in its words: "valid" means `run` starts.
    refusals = start_refusals(settings)
    n = settings.notifications
    enabled = sorted(rule.name for rule in n.rules.rules if rule.enabled)
    subscribers = {s for w in settings.watches for s in w.subscribers}
    if refusals:
        print(
            f"config: {settings.source or '(defaults)'} reads without errors, but `notifier run` would refuse it"
        )
    else:
        print(f"config: {settings.source or '(defaults)'} is valid")
    print(f"database: {display_url(settings.database.url)}")
    print(
        f"japanpost: {settings.japanpost.base_url}, at least {settings.japanpost.request_interval:g}s between requests"
    )
    if settings.smtp is None:
        print(f"mail: no [smtp]; messages are written to {n.outbox_dir}")
    else:
        print(f"mail: {settings.smtp.host}:{settings.smtp.port} ({settings.smtp.security}) from {n.sender}")
    if settings.example_identity_allowed:
        print(f"note: {EXAMPLE_IDENTITY_WARNING}")
    if settings.http is None:
        print("web face: off (no [http])")
    else:
        http = settings.http
        print(f"web face: listening on {http.listen}, links to {http.public_url}")
    print(
        f"operator: {n.operator or '(none: no digest)'}; quiet hours: "
        + (
            f"{n.quiet_hours[0]:%H:%M}-{n.quiet_hours[1]:%H:%M} in each recipient's zone "
            f"(else the destination's, else {n.default_time_zone})"
            if n.quiet_hours
            else "none"
        )
    )
    if n.operator_webhook or n.heartbeat_url:
        from notifier.pipeline.hooks import redact_url

        # Host only: the rest of these URLs is their credential.
        print(
            f"operator webhook: {redact_url(n.operator_webhook) if n.operator_webhook else 'none'}; "
            f"heartbeat: {redact_url(n.heartbeat_url) if n.heartbeat_url else 'none'}"
        )
    if n.operator_urls:
        # By place and scheme only, as the daemon's log and /metrics name them.
        names = ", ".join(f"{i} ({u.split('://', 1)[0]})" for i, u in enumerate(n.operator_urls, 1))
        print(f"operator channels: {names}")
    intake = settings.intake
    routes = [
        name
        for name, on in (
            ("shopify (/intake/shopify)", intake.shopify_secret),
            ("woocommerce (/intake/woocommerce)", intake.woocommerce_secret),
            ("api (/api/v1/)", intake.api_token),
        )
        if on
    ]
    # Which secrets were found: the routes answer 404 without theirs.
    print(f"intake: {', '.join(routes) if routes else 'none'}")
    print(
        f"watches: {len(settings.watches)} numbers, {len(subscribers)} subscribers, "
        f"{len(settings.watch_files)} watch file(s)"
    )
    fixed = settings.polling.fixed_interval
    print(f"polling: {'every ' + str(fixed) if fixed else 'adaptive by stage'}, tick {settings.poll_tick:g}s")
    print(f"rules on: {', '.join(enabled)}")
    for refusal in refusals:
        print(f"run would refuse: {refusal}", file=sys.stderr)
    return EXIT_USAGE if refusals else EXIT_OK


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535)")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not "None" or "False", and not twice
    when the help text already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from notifier.cli import demo
    from notifier.cli import mail as cli_mail
    from notifier.cli import store as cli_store
    from notifier.testing.simulator import Fault

    # -v works before or after the command; SUPPRESS keeps a subcommand's default from
    # overwriting a -v given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log detail")
    parser = argparse.ArgumentParser(prog="notifier", description="Japan Post tracking notifications.")
    parser.add_argument("--version", action="version", version=f"notifier {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and other detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], formatter_class=_HelpFormatter)

    check = command("check", "fetch and print the history, stage and meaning of numbers")
    check.add_argument("numbers", nargs="+", metavar="NUMBER", help="tracking numbers; quote any with spaces")
    check.add_argument("--locale", choices=[loc.value for loc in Locale], default="en", help="page language")
    check.add_argument("--json", action="store_true", help="print a JSON array, one entry per number")
    check.add_argument("--base-url", default=DEFAULT_BASE_URL, help="Japan Post site")
    check.add_argument(
        "--request-interval",
        type=float,
        default=None,
        help="seconds between requests (5; 0 with --simulator)",
    )
    check.add_argument(
        "--config", metavar="PATH", help="read [japanpost] from this config (or $NOTIFIER_CONFIG)"
    )
    check.add_argument("--save-pages", metavar="DIR", help="save each fetched page as DIR/NUMBER-LOCALE.html")
    check.add_argument(
        "--latest",
        action="store_true",
        help="only each number's latest event, from one list request per ten numbers (as the daemon polls)",
    )
    check.add_argument(
        "--simulator",
        action="store_true",
        help="answer from the built-in offline simulator instead of Japan Post",
    )
    check.set_defaults(handler=cmd_check)

    parse = command("parse", "parse a saved Japan Post page")
    parse.add_argument("file", metavar="FILE", help="a saved page (HTML, as served)")
    parse.add_argument("--json", action="store_true", help="print the stable JSON shape")
    parse.set_defaults(handler=cmd_parse)

    sim = command("simulator", "serve the offline Japan Post simulator over HTTP")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=_port, default=8088, help="port to listen on")
    sim.add_argument(
        "--step-seconds",
        type=float,
        default=None,
        help="start journeys at their first scan and reveal one more this often (default: show them complete)",
    )
    sim.add_argument(
        "--now",
        action="store_true",
        help="date each journey to end two days ago instead of in early 2026, so a daemon trying "
        "it finds news younger than max_event_age and mails it",
    )
    sim.add_argument(
        "--fault",
        choices=[f.value for f in Fault],
        help="answer every request with this fault, to rehearse it",
    )
    sim.set_defaults(handler=cmd_simulator)

    run_parser = command("run", "run the daemon: poll, notify, send, until SIGTERM")
    run_parser.add_argument("--config", metavar="PATH", help="config file (default: $NOTIFIER_CONFIG)")
    run_parser.add_argument(
        "--database-url", metavar="URL", help="override [database] url (default: $NOTIFIER_DATABASE_URL)"
    )
    run_parser.set_defaults(handler=cmd_run)

    config_parser = command("config", "configuration tools")
    config_sub = config_parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check_config = config_sub.add_parser(
        "check", parents=[common], help="validate the config and print a summary"
    )
    check_config.add_argument("--config", metavar="PATH", help="config file (default: $NOTIFIER_CONFIG)")
    check_config.set_defaults(handler=cmd_config_check)

    demo.add_parser(sub, parents=[common])
    cli_store.add_parsers(sub, parents=[common])
    cli_mail.add_parsers(sub, parents=[common], database_options=cli_store.database_parent())
    return parser


def _environment_problem(exc: Exception, args: argparse.Namespace) -> NotifierError | None:
    """A database error from a command that did not explain it itself, made one line."""
    if not hasattr(args, "database_url"):
        return None
    from notifier.config import DATABASE_URL_ENV, load_settings
    from notifier.store.dbenv import classify

    url = args.database_url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        try:
            url = load_settings(getattr(args, "config", None)).database.url
        except NotifierError:
            return None
    return classify(exc, url)


def entry() -> int:
    """The `notifier` program (console script and `python -m notifier`): `main` as a process of
    its own, where the SIGPIPE default may be restored (never inside another program, a test
    run for one, whose own pipes it would then die on)."""
    return main(sigpipe_default=True)


def main(argv: Sequence[str] | None = None, *, sigpipe_default: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from notifier.daemon import logformat

    # Fields passed as `extra=` (number, to, action, message_id…) end each line as key=value.
    logformat.configure(logging.WARNING)
    if getattr(args, "verbose", False):
        # Our own detail only: the HTTP libraries' debug output drowns it.
        logging.getLogger("notifier").setLevel(logging.DEBUG)
    from notifier import hints
    from notifier.config import CONFIG_ENV

    # Every hint this command prints or logs names the same config and database as it used.
    given = hints.given(
        getattr(args, "config", None) or os.environ.get(CONFIG_ENV), getattr(args, "database_url", None)
    )
    if sigpipe_default and args.command not in ("run", "simulator", "demo") and hasattr(signal, "SIGPIPE"):
        # A reader that goes away (`notifier status | head`) ends a command the way it ends other
        # Unix tools: quietly, by SIGPIPE, after whatever it committed. Left to Python, the
        # write's EPIPE inside a database step would be reported as a database I/O error.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    with given:
        try:
            code: int = args.handler(args)
        except SchemaError as exc:
            print(f"notifier {args.command}: {exc}", file=sys.stderr)
            return EXIT_SCHEMA
        except ConfigError as exc:
            print(f"notifier {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except NotifierError as exc:
            logger.debug("command failed", exc_info=True)
            print(f"notifier {args.command}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: not an error worth a traceback.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (interpreter shutdown flushes stdout)
            return EXIT_FAILURE
        except Exception as exc:
            problem = _environment_problem(exc, args)
            if problem is None:
                raise
            logger.debug("command failed", exc_info=True)
            print(f"notifier {args.command}: {problem}", file=sys.stderr)
            return EXIT_FAILURE
        return code
