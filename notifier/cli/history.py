"""`history export`, `history import` and `backtest`: past shipments in and out, and the model checked on them."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from notifier.cli import columns
from notifier.cli.db import EXIT_OK, EXIT_USAGE, _run, _settings, utcnow
from notifier.core import eta
from notifier.core.history import HistoryRecord, parse_line
from notifier.core.model import TOKYO
from notifier.store import Store
from notifier.store.dbenv import explained
from notifier.store.history import ImportCounts

# Lines stored per transaction: big enough that a 10,000-line file is a few dozen commits,
# small enough that a batch's statements stay well under the drivers' parameter limits.
IMPORT_BATCH = 500


def since_date(text: str) -> dt.date:
    """argparse type of --since: a calendar date."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


async def _open(args: argparse.Namespace) -> Store:
    settings = _settings(args)
    with explained(settings.database.url):
        return await Store.open(settings.database.url)


# --- export ---------------------------------------------------------------------------


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    # A date is a day in Japan, where the shop posts its parcels.
    since = dt.datetime.combine(args.since, dt.time(0), tzinfo=ZoneInfo(TOKYO)) if args.since else None
    store = await _open(args)
    try:
        count = 0
        async for line in store.export_history(since=since):
            out.write(line + "\n")
            count += 1
    finally:
        await store.close()
    print(f"exported {count} shipment(s)", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    # A history file is UTF-8 (import reads it so) whatever the terminal's locale says.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")
    return _run(_export(args, sys.stdout))


# --- import ---------------------------------------------------------------------------


def _lines(handle: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield number, line


def _check(path: Path, handle: TextIO) -> int:
    """Every problem of every line, printed as FILE:LINE: field: problem; how many lines had one."""
    bad = 0
    for number, line in _lines(handle):
        found = parse_line(line)
        if isinstance(found, list):
            bad += 1
            for problem in found:
                print(f"{path}:{number}: {problem}", file=sys.stderr)
    return bad


def _records(handle: TextIO) -> Iterator[list[HistoryRecord]]:
    batch: list[HistoryRecord] = []
    for _, line in _lines(handle):
        found = parse_line(line)
        assert not isinstance(found, list)  # checked by the first pass
        batch.append(found)
        if len(batch) >= IMPORT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _import(args: argparse.Namespace, path: Path) -> int:
    store = await _open(args)
    counts = ImportCounts()
    underived = 0
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for batch in _records(handle):
                underived += sum(1 for r in batch if r.destination is None)
                counts.add(await store.import_history(batch, now=utcnow()))
    finally:
        await store.close()
    print(
        f"{path}: {counts.added} shipment(s) added, {counts.merged} gained events, "
        f"{counts.unchanged} already complete; {counts.events} event(s) stored. "
        "Imported history is never polled and sends no message."
    )
    if underived:
        print(
            f'{underived} shipment(s) without a destination the events name: lane unknown ("??")',
            file=sys.stderr,
        )
    if counts.watched:
        print(
            f"{len(counts.watched)} watched number(s) left as they are (their history comes from "
            f"Japan Post's page): {' '.join(sorted(counts.watched)[:10])}"
            + (" ..." if len(counts.watched) > 10 else ""),
            file=sys.stderr,
        )
    if counts.retired:
        print(
            f"{len(counts.retired)} number(s) Japan Post has reused since were not imported: "
            f"{' '.join(sorted(counts.retired)[:10])}",
            file=sys.stderr,
        )
    if counts.added or counts.merged:
        print(
            "a running daemon takes the new history into its lane statistics within a minute "
            "(it looks for imports every minute and rebuilds them hourly anyway)"
        )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            bad = _check(path, handle)
    except OSError as exc:
        print(f"notifier history import: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        print(
            f"notifier history import: {path} is not UTF-8 text ({exc.reason}); save it as UTF-8",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if bad:
        print(f"notifier history import: {bad} line(s) with problems; nothing imported", file=sys.stderr)
        return EXIT_USAGE
    return _run(_import(args, path))


# --- backtest -------------------------------------------------------------------------


def _share(value: object) -> str:
    return "-" if not isinstance(value, float | int) else f"{value:.0%}"


async def _backtest(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        journeys = await store.journeys()
    finally:
        await store.close()
    # Scan times are Japan Post's wall-clock times, so the date is one of that calendar.
    since = dt.datetime.combine(args.since, dt.time(0)) if args.since else None
    points = eta.backtest(journeys, since=since, calibration=eta.Calibration(args.calibration))
    if args.json:
        print(eta.to_json(points), end="")
        return EXIT_OK
    if not points:
        print(
            "no delivered shipment to replay"
            + (f" since {args.since}" if args.since else "")
            + f" ({len(journeys)} stored with scans); import past parcels with `notifier history import FILE`"
        )
        return EXIT_OK
    rows = [
        [
            str(summary.lane) if summary.lane is not None else "all",
            str(summary.parcels),
            str(summary.checkpoints),
            _share(summary.coverage),
            "-" if summary.median_width_days is None else f"{summary.median_width_days:g} d",
            _share(summary.withheld_share),
        ]
        for summary in eta.summarize(points)
    ]
    print(
        columns.table(
            rows,
            ["LANE", "PARCELS", "CHECKPOINTS", "COVERAGE", "MEDIAN WIDTH", "WITHHELD"],
            right=frozenset({1, 2, 3, 4, 5}),
        )
    )
    print(
        "coverage: the share of shown windows that held the delivery date; "
        "withheld: checkpoints where no window would have been shown"
    )
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    return _run(_backtest(args))


def cmd_history_file(args: argparse.Namespace) -> int | None:
    """`history export` / `history import FILE`; None when the argument is a tracking number."""
    if args.number == "export":
        if args.file:
            print(
                "notifier history export: takes no FILE; redirect its output: > FILE.jsonl", file=sys.stderr
            )
            return EXIT_USAGE
        return cmd_export(args)
    if args.number == "import":
        if not args.file:
            print("notifier history import: give the FILE to import", file=sys.stderr)
            return EXIT_USAGE
        if args.since:
            print("notifier history import: --since goes with export", file=sys.stderr)
            return EXIT_USAGE
        return cmd_import(args)
    if args.file or args.since:
        print(
            "notifier history: NUMBER takes no FILE or --since (history export [--since DATE], "
            "history import FILE)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return None
