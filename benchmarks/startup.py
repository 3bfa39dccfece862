"""Daemon start-up and reload with 10,000 watches: start to READY, SIGHUP reload, watchdog gaps.

    python benchmarks/startup.py [--watches N]

Everything is real: `python -m notifier run` as a child process on a SQLite file in a temporary
directory, Japan Post answered by the simulator over HTTP on loopback (at the production pace,
5 s between requests, so the daemon polls in the background as it would), and systemd's notify
protocol played by a Unix datagram socket here (NOTIFY_SOCKET, with WATCHDOG_USEC=1 s, so the
daemon pets the watchdog every 0.5 s while its event loop is free).

1. config: the time `load_settings` takes for the config and its watch file of N [[watch]]
   tables (one subscriber each), in this process;
2. first start: an empty database; spawn to READY=1 (loading and syncing all N watches);
3. restart: the N watches already in the database; spawn to READY=1;
4. reload: the watch file edited (1% relabelled, 1% dropped, 1% added), then SIGHUP; RELOADING=1
   to the READY=1 after it, and the longest gap between watchdog pets around it;
5. CLI watches: a fresh database holding N watches added from the CLI (rows written with
   sqlite3), a config without a watchlist; spawn to READY=1.

Runs on older revisions too (nothing here imports the daemon), to give before/after figures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from notifier.config import load_settings
from notifier.core.numbers import s10_check_digit
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys

READY_TIMEOUT = 600.0


class NotifySocket:
    """The systemd side of sd_notify: every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def first(self, field: str, after: float, timeout: float = READY_TIMEOUT) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, payload in self.messages:
                    if at >= after and field in payload.splitlines():
                        return at
            time.sleep(0.01)
        raise SystemExit(f"no {field} within {timeout:.0f} s")

    def pets(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [at for at, payload in self.messages if start <= at <= end and "WATCHDOG=1" in payload]

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def number(serial: int) -> str:
    body = f"{serial:08d}"
    return f"EJ{body}{s10_check_digit(body)}JP"


def watch_file(serials: range | list[int], relabel: frozenset[int] | set[int] = frozenset()) -> str:
    parts = []
    for serial in serials:
        label = f"Order {serial}" + (" (edited)" if serial in relabel else "")
        parts.append(
            f'[[watch]]\nnumber = "{number(serial)}"\nlabel = "{label}"\nsubscribers = ["c{serial}@example.com"]\n'
        )
    return "\n".join(parts)


def config(db: Path, base_url: str, with_watch_files: bool) -> str:
    files = 'watch_files = ["watch.d/*.toml"]\n' if with_watch_files else ""
    return f"""
[database]
url = "sqlite:///{db}"
[japanpost]
base_url = "{base_url}"
request_interval = 5
[polling]
tick = "1s"
{files}
[notifications]
outbox_dir = "outbox"
"""


def phases(log: Path, line: str) -> str:
    """The daemon's own account of the last such line (newer revisions log their phases)."""
    found = [entry for entry in log.read_text(errors="replace").splitlines() if line in entry]
    if not found or "(" not in found[-1]:
        return ""
    return " [daemon: " + found[-1].split("(", 1)[1].rstrip(")") + "]"


class Daemon:
    def __init__(self, config_path: Path, notify: NotifySocket, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "WATCHDOG_"))}
        env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
        self.handle = log.open("a")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.handle,
            env=env,
        )

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.handle.close()
        return time.monotonic() - started


def upgrade(config_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config_path)],
        check=True,
        capture_output=True,
    )


def seed_cli_watches(db: Path, count: int) -> None:
    """N watches as `notifier watch` leaves them: a shipment, a subscriber, a subscription."""
    now = "2026-12-01 00:00:00.000000"
    later = "2026-12-02 00:00:00.000000"  # not due during the run
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "INSERT INTO shipments (number, incarnation, label, origin, tags, stage, active, created_at, "
            "next_poll_at, consecutive_failures) VALUES (?, 1, ?, 'JP', '', 'pending', 1, ?, ?, 0)",
            [(number(i), f"Order {i}", now, later) for i in range(count)],
        )
        connection.executemany(
            "INSERT INTO subscribers (email, name, locale, created_at) VALUES (?, '', 'en', ?)",
            [(f"c{i}@example.com", now) for i in range(count)],
        )
        connection.execute(
            "INSERT INTO subscriptions (subscriber_id, shipment_id, locale, active, created_at) "
            "SELECT s.id, p.id, 'en', 1, ? FROM subscribers s JOIN shipments p "
            "ON p.label = 'Order ' || substr(s.email, 2, instr(s.email, '@') - 2)",
            (now,),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watches", type=int, default=10_000)
    args = parser.parse_args()
    n = args.watches
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {n} watches"
    )
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(Simulator(builtin_journeys())) as jp:
        root = Path(tmp)
        notify = NotifySocket(root / "notify.sock")
        log = root / "daemon.log"
        db = root / "notifier.db"
        (root / "watch.d").mkdir()
        orders = root / "watch.d" / "orders.toml"
        orders.write_text(watch_file(range(n)), encoding="utf-8")
        config_path = root / "notifier.toml"
        config_path.write_text(config(db, jp.base_url, True), encoding="utf-8")
        upgrade(config_path)
        try:
            started = time.monotonic()
            settings = load_settings(str(config_path))
            loaded = time.monotonic() - started
            assert len(settings.watches) == n
            print(f"1. config: load_settings of {n} watches: {loaded:.2f} s")

            daemon = Daemon(config_path, notify, log)
            ready = notify.first("READY=1", daemon.started) - daemon.started
            time.sleep(0.2)
            print(
                f"2. first start (empty database): spawn to READY {ready:.2f} s{phases(log, 'notifier running')}"
            )
            print(f"   stop: SIGTERM to exit {daemon.stop():.2f} s")

            daemon = Daemon(config_path, notify, log)
            ready = notify.first("READY=1", daemon.started) - daemon.started
            time.sleep(0.2)
            print(
                f"3. restart ({n} watches in the database): spawn to READY {ready:.2f} s"
                f"{phases(log, 'notifier running')}"
            )
            time.sleep(3)  # settled: first poll ticks, housekeeping

            kept = [i for i in range(n) if i % 100 != 1]  # 1% dropped
            added = list(range(n, n + n // 100))  # 1% new
            relabel = {i for i in kept if i % 100 == 2}  # 1% relabelled
            orders.write_text(watch_file(kept + added, relabel), encoding="utf-8")
            signalled = time.monotonic()
            daemon.proc.send_signal(signal.SIGHUP)
            reloading = notify.first("RELOADING=1", signalled)
            done = notify.first("READY=1", reloading)
            time.sleep(2)
            pets = notify.pets(signalled - 3, done + 2)
            gaps = [b - a for a, b in itertools.pairwise(pets)]
            print(
                f"4. reload (SIGHUP; {len(added)} added, {n - len(kept)} dropped, {len(relabel)} relabelled): "
                f"RELOADING to READY {done - reloading:.2f} s; SIGHUP to READY {done - signalled:.2f} s"
                f"{phases(log, 'configuration reloaded')}"
            )
            print(
                f"   watchdog pets every 0.5 s when idle: {len(pets)} pets around the reload, "
                f"longest gap {max(gaps) if gaps else float('nan'):.2f} s"
            )
            print(f"   stop: SIGTERM to exit {daemon.stop():.2f} s")

            cli_db = root / "cli.db"
            cli_config = root / "cli.toml"
            cli_config.write_text(config(cli_db, jp.base_url, False), encoding="utf-8")
            upgrade(cli_config)
            seed_cli_watches(cli_db, n)
            daemon = Daemon(cli_config, notify, log)
            ready = notify.first("READY=1", daemon.started) - daemon.started
            time.sleep(0.2)
            print(
                f"5. CLI watches ({n} in the database, no watchlist in the config): spawn to READY {ready:.2f} s"
                f"{phases(log, 'notifier running')}"
            )
            daemon.stop()
            with sqlite3.connect(cli_db) as connection:
                active = connection.execute("SELECT count(*) FROM shipments WHERE active").fetchone()[0]
            print(f"   still watched after the start: {active} of {n}")
        except BaseException:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            notify.close()


if __name__ == "__main__":
    main()
