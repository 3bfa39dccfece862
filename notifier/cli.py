"""Command line: subcommands, and the single place where errors become messages and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from notifier import __version__
from notifier.client import DEFAULT_BASE_URL, ClientSettings, JapanPostClient
from notifier.errors import FetchError, InvalidNumberError, NotifierError
from notifier.model import ItemResult, Layout, Locale, Page
from notifier.numbers import parse_number
from notifier.parser import page_to_json, parse_page
from notifier.stages import stage_info

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SCHEMA = 3

logger = logging.getLogger("notifier")


def _describe(item: ItemResult, locale: Locale) -> list[str]:
    info = stage_info(item.stage)
    meaning = info.meaning_ja if locale is Locale.JA else info.meaning_en
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
    if page.layout is Layout.UNRECOGNIZED:
        print(f"unrecognized page: {page.reason}")
        return
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
    else:
        print(f"layout: {page.layout}  locale: {page.locale}")
        _print_page(page, page.locale)
    if page.layout is Layout.UNRECOGNIZED:
        print(f"notifier parse: {path}: unrecognized page: {page.reason}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _check(numbers: list[str], settings: ClientSettings, locale: Locale, as_json: bool) -> int:
    worst = EXIT_OK
    results = []
    async with JapanPostClient(settings) as client:
        for number in numbers:
            try:
                fetched = await client.fetch_detail(number, locale)
            except FetchError as exc:
                print(f"{number}: fetch failed: {exc}", file=sys.stderr)
                worst = EXIT_FAILURE
                continue
            page = fetched.page
            if page.layout is Layout.UNRECOGNIZED:
                worst = EXIT_FAILURE
            if as_json:
                results.append(page_to_json(page))
            else:
                _print_page(page, locale)
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
        return EXIT_USAGE
    locale = Locale(args.locale)
    with ExitStack() as stack:
        base_url = args.base_url
        interval = args.request_interval
        if args.simulator:
            from notifier.simulator import Simulator, SimulatorServer, builtin_journeys

            journeys = builtin_journeys()
            for journey in journeys:
                journey.revealed = len(journey.scans)
            server = stack.enter_context(SimulatorServer(Simulator(journeys)))
            base_url = server.base_url
            interval = 0.0 if interval is None else interval
            print(f"(answering from the built-in Japan Post simulator at {base_url})", file=sys.stderr)
        settings = ClientSettings(base_url=base_url, request_interval=5.0 if interval is None else interval)
        return asyncio.run(_check(numbers, settings, locale, args.json))


def cmd_simulator(args: argparse.Namespace) -> int:
    from notifier.simulator import builtin_journeys, serve

    journeys = builtin_journeys()
    print(f"Japan Post simulator on http://{args.host}:{args.port}/ ; numbers:", file=sys.stderr)
    for journey in journeys:
        print(f"  {journey.number}  {journey.item_type_en}  {len(journey.scans)} scans", file=sys.stderr)
    serve(args.host, args.port, step_seconds=args.step_seconds, journeys=journeys)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifier", description="Japan Post tracking notifications.")
    parser.add_argument("--version", action="version", version=f"notifier {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="fetch and print the history, stage and meaning of numbers")
    check.add_argument("numbers", nargs="+", metavar="NUMBER")
    check.add_argument("--locale", choices=[loc.value for loc in Locale], default="en")
    check.add_argument("--json", action="store_true", help="print the `parse --json` shape per number")
    check.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"Japan Post site (default {DEFAULT_BASE_URL})"
    )
    check.add_argument(
        "--request-interval", type=float, default=None, help="seconds between requests (default 5)"
    )
    check.add_argument(
        "--simulator",
        action="store_true",
        help="answer from the built-in offline simulator instead of Japan Post",
    )
    check.set_defaults(handler=cmd_check)

    parse = sub.add_parser("parse", help="parse a saved Japan Post page")
    parse.add_argument("file", metavar="FILE")
    parse.add_argument("--json", action="store_true", help="print the stable JSON shape")
    parse.set_defaults(handler=cmd_parse)

    sim = sub.add_parser("simulator", help="serve the offline Japan Post simulator over HTTP")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8088)
    sim.add_argument(
        "--step-seconds", type=float, default=None, help="reveal one more scan of every journey this often"
    )
    sim.set_defaults(handler=cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.handler(args)
    except NotifierError as exc:
        logger.debug("command failed", exc_info=True)
        print(f"notifier {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code
