"""Parser throughput: pages per second and the time to parse one detail page."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from notifier.core.model import Layout
from notifier.core.parser import parse_page

PAGES = Path(__file__).resolve().parent.parent / "tests" / "data" / "pages"


def measure(label: str, body: bytes, rounds: int = 7, per_round: int = 400) -> None:
    assert parse_page(body).layout is not Layout.UNRECOGNIZED, label
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(per_round):
            parse_page(body)
        samples.append((time.perf_counter() - started) / per_round)
    best, median = min(samples), statistics.median(samples)
    print(
        f"{label:<44} {len(body) / 1024:6.1f} KiB  median {median * 1e6:7.1f} us/page  "
        f"best {best * 1e6:7.1f} us  {1 / median:8.0f} pages/s"
    )


def simulator_pages() -> list[tuple[str, bytes]]:
    from notifier.testing.simulator import Simulator, builtin_journeys

    journeys = builtin_journeys()
    for journey in journeys:
        journey.revealed = len(journey.scans)
    sim = Simulator(journeys)
    found = [j for j in journeys if j.scans]
    longest = max(found, key=lambda j: len(j.scans))
    numbers = [j.number for j in journeys]
    out = []
    for locale in ("en", "ja"):
        out.append(
            (
                f"simulator detail, {locale}, {len(longest.scans)} events",
                sim.render_detail(longest.number, locale).encode(),
            )
        )
        out.append(
            (f"simulator list, {locale}, {len(numbers)} items", sim.render_list(numbers, locale).encode())
        )
    return out


def main() -> int:
    print(f"python {sys.version.split()[0]}")
    cases: list[tuple[str, bytes]] = [
        ("genuine detail 2014 (en, 5 events)", (PAGES / "en_ems_detail_intransit_2014.html").read_bytes()),
        ("genuine list 2014 (en, error row)", (PAGES / "en_invalid_digits_list_2014.html").read_bytes()),
    ]
    cases += simulator_pages()
    for label, body in cases:
        measure(label, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
