"""`notifier poll` of many numbers: requests, wall and CPU of a one-off poll, first sight and unchanged.

    python -m benchmarks.poll [--shipments N] [--postgresql]

N numbers (default 1,000) of the cycle benchmark's fleet (benchmarks/cycle.py: each on its own
copy of a builtin journey, 1 to len-2 scans shown) served by the in-process simulator over HTTP
on loopback; `notifier poll N1 N2 …` run as a child process with `request_interval = 0` on a
fresh SQLite file (or, with `--postgresql`, a scratch database on the tests' server). The first
run sees every number for the first time; the second finds nothing new; each is run 3 times
(on fresh copies for the first) and reported with the median. CPU is the child's (user +
system), so interpreter start and imports (about 0.4 s of it here) are included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.cycle import fleet
from notifier.testing.simulator import Simulator, SimulatorServer

ROUNDS = 3


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def database(folder: Path, postgresql: bool) -> Iterator[str]:
    if not postgresql:
        yield f"sqlite:///{folder / 'notifier.db'}"
        return
    from tests.databases import fresh_postgres

    yield from fresh_postgres(None)


def poll(config: Path, numbers: list[str], simulator: Simulator) -> tuple[float, float, int]:
    """(wall, CPU, requests) of one `notifier poll` of every number."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    simulator.reset_requests()
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "poll", *numbers, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall, used = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"notifier poll failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, used, simulator.request_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shipments", type=int, default=1_000)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args(argv)
    ships = fleet(args.shipments)
    numbers = [s.number.value for s in ships]
    simulator = Simulator((s.journey for s in ships), seed=1)
    print(f"{len(numbers):,} numbers, request_interval 0; load average {load()}", flush=True)
    figures: dict[str, list[tuple[float, float, int]]] = {"first sight": [], "unchanged": []}
    with tempfile.TemporaryDirectory(prefix="notifier-poll-") as directory, SimulatorServer(simulator) as jp:
        folder = Path(directory)
        for round_ in range(ROUNDS):
            with database(folder / str(round_), args.postgresql) as url:
                (folder / str(round_)).mkdir(exist_ok=True)
                config = folder / str(round_) / "notifier.toml"
                config.write_text(
                    f'[database]\nurl = "{url}"\n[japanpost]\nbase_url = "{jp.base_url}"\nrequest_interval = 0\n',
                    encoding="utf-8",
                )
                subprocess.run(
                    [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
                    check=True,
                    capture_output=True,
                )
                figures["first sight"].append(poll(config, numbers, simulator))
                for _ in range(ROUNDS if round_ == 0 else 0):
                    figures["unchanged"].append(poll(config, numbers, simulator))
            shutil.rmtree(folder / str(round_), ignore_errors=True)
    count = len(numbers)
    for name, runs in figures.items():
        walls = [w for w, _, _ in runs]
        cpus = [c for _, c, _ in runs]
        requests = runs[0][2]
        print(
            f"{name:<12} requests {requests:6,} ({requests / count:.3f} per number)  "
            f"wall {statistics.median(walls):6.2f} s [{min(walls):.2f}–{max(walls):.2f}]  "
            f"CPU {statistics.median(cpus):6.2f} s = {statistics.median(cpus) / count * 1e3:.2f} ms per number "
            f"[{min(cpus):.2f}–{max(cpus):.2f}]"
        )
    print(f"load average {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
