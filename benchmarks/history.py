"""`notifier history import` of a 10,000-line file, then the same file again, then `history export`.

    python -m benchmarks.history [--lines N] [--backend sqlite|postgresql|both]

The file: N delivered shipments over four lanes (EMS to the US and to Germany, ePacket to the
UK in English wordings; Yu-Pack at home in Japanese ones), 6 to 11 scans each, written once
to a temporary directory. Per backend, a fresh database at the schema head, then the real
command (`notifier.cli.main`, in this process) three times, each timed as a whole:
1. `history import FILE`: the checking pass over every line, then the batched inserts;
2. the same again: every line checked, every shipment found complete, nothing written;
3. `history export > FILE`: every shipment and event read back in chunks and written out.
The checking pass alone is also timed (parse_line on every line, no database).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.store import POSTGRES_URL, admin, postgres_database
from notifier.cli import main
from notifier.core.history import parse_line
from notifier.core.numbers import s10_check_digit
from notifier.store.database import make_engine, upgrade

EN = [
    ("Posting/Collection", "TOKYO"),
    ("Arrival at outward office of exchange", "TOKYO"),
    ("Dispatch from outward office of exchange", "TOKYO"),
    ("Arrival at inward office of exchange", None),
    ("Item presented to import Customs", None),
    ("Item returned from import Customs", None),
    ("Processing at delivery Post Office", None),
    ("Item out for physical delivery", None),
    ("Absence. Attempted delivery.", None),
    ("Retention", None),
    ("Final delivery", None),
]
JA = [
    ("引受", "東京都"),
    ("中継", "東京都"),
    ("中継", "愛知県"),
    ("到着", "大阪府"),
    ("お届け先にお届け済み", "大阪府"),
]
LANES = [
    ("EJ", "UNITED STATES", "US", "EMS"),
    ("EJ", "GERMANY", "DE", "EMS"),
    ("LX", "UNITED KINGDOM", "GB", None),
]


def history_file(path: Path, lines: int, seed: int = 20261207) -> int:
    rng = random.Random(seed)
    events_total = 0
    with path.open("w", encoding="utf-8") as out:
        for index in range(lines):
            start = dt.datetime(2025, 1, 1, 9) + dt.timedelta(minutes=rng.randrange(0, 500_000))
            item_type: str | None
            if index % 4 == 3:
                number, item_type, destination = f"{300_000_000_000 + index}", "ゆうパック", "JP"
                wordings = list(JA)
            else:
                prefix, country, destination, item_type = LANES[index % 4]
                serial = f"{10_000_000 + index:08d}"
                number = f"{prefix}{serial}{s10_check_digit(serial)}JP"
                # 6 to 11 scans: the attempt and retention rows of some, the customs rows of others.
                keep = (
                    [0, 1, 2, 3, 6, 7, 10]
                    + ([4, 5] if rng.random() < 0.5 else [])
                    + ([8, 9] if rng.random() < 0.2 else [])
                )
                wordings = [(EN[i][0], EN[i][1] or country) for i in sorted(keep)]
            when = start
            events = []
            for status, region in wordings:
                when += dt.timedelta(hours=rng.uniform(2, 40))
                events.append(
                    {
                        "time": when.strftime("%Y-%m-%dT%H:%M"),
                        "status": status,
                        "office": "OFFICE",
                        "region": region,
                    }
                )
            events_total += len(events)
            line = {"number": number, "item_type": item_type, "destination": destination, "events": events}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return events_total


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Wall-clock seconds, this process's CPU seconds (every thread), and what it printed."""
    out = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if code != 0:
        sys.exit(f"{' '.join(argv)} exited {code}")
    return elapsed, used, out.getvalue()


async def migrated(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {args.lines} lines")
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "history.jsonl"
        events = history_file(file, args.lines)
        print(f"file: {file.stat().st_size / 2**20:.1f} MiB, {events} events")
        start = time.perf_counter()
        with file.open(encoding="utf-8") as handle:
            bad = sum(1 for line in handle if isinstance(parse_line(line), list))
        check = time.perf_counter() - start
        assert bad == 0
        print(f"checking pass alone: {check:.2f} s wall ({args.lines / check:,.0f} lines/s)")
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                created = asyncio.run(postgres_database(args.postgres_url))
                if isinstance(created, str):
                    print(f"postgresql: skipped, {created}")
                    continue
                url = created[0]
            try:
                asyncio.run(migrated(url))
                first, first_cpu, said = timed(["history", "import", str(file), "--database-url", url])
                assert f"{args.lines} shipment(s) added" in said, said
                again, again_cpu, said = timed(["history", "import", str(file), "--database-url", url])
                assert f"{args.lines} already complete" in said, said
                export, export_cpu, said = timed(["history", "export", "--database-url", url])
                assert said.count("\n") == args.lines
                print(
                    f"{backend}: import {first:.2f} s wall, {first_cpu:.2f} s CPU here "
                    f"({args.lines / first:,.0f} lines/s, {events / first:,.0f} events/s wall); "
                    f"again (nothing new) {again:.2f} s wall, {again_cpu:.2f} s CPU; "
                    f"export {export:.2f} s wall, {export_cpu:.2f} s CPU"
                )
            finally:
                if backend == "postgresql":
                    name = make_url(url).database
                    asyncio.run(admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
