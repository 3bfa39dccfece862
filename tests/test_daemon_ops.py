"""Operations end to end: the real daemon tells the operator about a dead site at once, keeps
alerts it cannot email visible (log, `alerts`, STATUS), and lives through a full disk."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.testing.simulator import Fault, Simulator, SimulatorServer, builtin_journeys
from tests.smtp_server import SmtpServer
from tests.test_daemon import Run, wait_for

EMS = builtin_journeys()[0].number
OPERATOR = "ops@sakura.example"


def ops_config(db_url: str, jp: str, smtp_port: int, *, japanpost: str = "", notifications: str = "") -> str:
    return f"""
[database]
url = "{db_url}"
[japanpost]
base_url = "{jp}"
request_interval = 0
{japanpost}
[polling]
fixed_interval = "0.3s"
tick = "0.3s"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Sakura <shop@sakura.example>"
allow_example_identity = true
timeout = "5s"
[notifications]
operator = "{OPERATOR}"
max_event_age = "3650d"
multi_stage = "each"
{notifications}
[[watch]]
number = "{EMS}"
label = "Order 1001"
subscribers = ["customer@example.com"]
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def write_config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "notifier.toml"
    config.write_text(text, encoding="utf-8")
    upgrade = cli(config, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    return config


def operator_mail(smtp: SmtpServer) -> list[tuple[str, str]]:
    """(X-Notifier-Rule, plain text) of each message to the operator, in arrival order."""
    out = []
    for m in smtp.messages:
        if OPERATOR not in m.rcpt_tos:
            continue
        message = email.message_from_bytes(m.data, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        out.append((str(message["X-Notifier-Rule"]), body.get_content()))
    return out


def customer_mail(smtp: SmtpServer) -> list[str]:
    return [
        str(email.message_from_bytes(m.data, policy=email.policy.default)["X-Notifier-Stage"])
        for m in smtp.messages
        if "customer@example.com" in m.rcpt_tos
    ]


@pytest.fixture
def jp() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(builtin_journeys())
    with SimulatorServer(simulator) as server:
        yield simulator, server


def alert_texts(smtp: SmtpServer) -> list[str]:
    return [text for rule, text in operator_mail(smtp) if rule == "operator_alert"]


@pytest.mark.timeout(240)
def test_a_dead_site_is_emailed_at_once_and_its_recovery_once(
    tmp_path: Path, jp: tuple[Simulator, SimulatorServer], sqlite_template: Path
) -> None:
    # One backend: the alert rows' storage is tested on both in tests/test_alerting.py; this
    # is the daemon's timing end to end (about 50 s).
    shutil.copyfile(sqlite_template, tmp_path / "ops.db")
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    simulator, server = jp
    simulator.advance(steps=2)  # the EMS has left Japan: one customer message is due
    simulator.set_fault(Fault.SERVER_ERROR)
    with SmtpServer() as smtp:
        config = write_config(
            tmp_path,
            ops_config(
                db_url,
                server.base_url,
                smtp.port,
                japanpost='down_alert_after = "2s"\ncircuit_pause = "1s"\ncircuit_pause_max = "2s"',
                notifications='alert_batch = "1s"',
            ),
        )

        def mails(count: int, what: str, run: Run) -> None:
            wait_for(
                lambda: len(alert_texts(smtp)) >= count,
                60,
                lambda: f"{what} (got {alert_texts(smtp)}; log: {run.output()[-2000:]})",
            )

        run = Run(config)
        try:
            mails(1, "the site_down email", run)
            time.sleep(4)  # still down: nothing more may arrive
            assert [rule for rule, _ in operator_mail(smtp)] == ["operator_alert"]
            assert "Japan Post not answering" in alert_texts(smtp)[0]
            assert "HTTP 500" in alert_texts(smtp)[0]
            assert customer_mail(smtp) == []
            assert (
                "ERROR notifier.pipeline.alerting: Japan Post unreachable or refusing requests"
                in run.output()
            )
            alerts = json.loads(cli(config, "alerts", "--json").stdout)
            assert [(a["kind"], a["count"]) for a in alerts] == [("site_down", 1)]
            simulator.clear_faults()
            mails(2, "the recovery email", run)
            assert "Japan Post answers again" in alert_texts(smtp)[1]
            wait_for(lambda: customer_mail(smtp) == ["departed_origin"], 30, "the delayed customer email")
            assert cli(config, "alerts", "--json").stdout.strip() == "[]"  # the outage closed itself
            # A second outage is news again.
            simulator.set_fault(Fault.SERVER_ERROR)
            mails(3, "the second site_down email", run)
            assert "Japan Post not answering" in alert_texts(smtp)[2]
        finally:
            assert run.stop() == 0, run.output()
        # The site comes back while the daemon is down; the restarted daemon knows the outage
        # was still open and announces its end once.
        simulator.clear_faults()
        run = Run(config)
        try:
            mails(4, "the recovery email after a restart", run)
            time.sleep(3)
        finally:
            assert run.stop() == 0, run.output()
    texts = alert_texts(smtp)
    assert len(texts) == 4
    assert ["answers again" in text for text in texts] == [False, True, False, True]
    assert cli(config, "alerts", "--json").stdout.strip() == "[]"
    closed = json.loads(cli(config, "alerts", "--all", "--json").stdout)
    assert sorted(a["kind"] for a in closed) == ["site_down", "site_down", "site_recovered", "site_recovered"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(1)
    yield sock
    sock.close()


def statuses_until(sock: socket.socket, wanted: list[str], timeout: float, seen: list[str]) -> str:
    """Read datagrams until a STATUS= line contains every string of `wanted`; return that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            datagram = sock.recv(65536).decode()
        except TimeoutError:
            continue
        for line in datagram.splitlines():
            if line.startswith("STATUS="):
                seen.append(line)
                if all(w in line for w in wanted):
                    return line
    raise AssertionError(f"no STATUS with {wanted} in {timeout}s; last ones: {seen[-5:]}")


@pytest.mark.timeout(180)
def test_an_alert_that_cannot_be_emailed_is_in_the_log_alerts_and_status(
    tmp_path: Path, jp: tuple[Simulator, SimulatorServer], notify_socket: socket.socket
) -> None:
    simulator, server = jp
    simulator.set_fault(Fault.CHANGED_LAYOUT)
    config = write_config(
        tmp_path,
        ops_config(
            f"sqlite:///{tmp_path / 'ops.db'}",
            server.base_url,
            closed_port(),  # the mail server is down: nothing can be emailed
            notifications='alert_batch = "0s"',
        ),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFY_SOCKET"] = str(notify_socket.getsockname())
    log = tmp_path / "daemon.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=env,
        )
    seen: list[str] = []
    try:
        status = statuses_until(
            notify_socket,
            [
                "open alerts, newest: site_unrecognized: Japan Post pages are not recognised",
                "alert email not sent",
            ],
            60,
            seen,
        )
        assert "mail PAUSED" in status
        output = log.read_text(encoding="utf-8")
        assert f"ERROR notifier.pipeline.alerting: operator alert email to {OPERATOR} not sent (" in output
        # Once per message and reason, not per tick: held while paused, then what its try met.
        undelivered = [line for line in output.splitlines() if "operator alert email to" in line]
        assert 1 <= len(undelivered) <= 2
        assert len(undelivered) == len(set(undelivered))
        listed = cli(config, "alerts")
        assert listed.returncode == 0
        assert "site_unrecognized" in listed.stdout
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


# --- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs), so writes fail with a real ENOSPC / SQLITE_FULL."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8M,mode=0700", "tmpfs", str(volume)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def fill(volume: Path) -> Path:
    """Take every free byte of the volume; returns the file to delete to give them back."""
    filler = volume / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


class NotifyLog:
    """Collects sd_notify datagrams with the time each arrived, from a background thread."""

    def __init__(self, sock: socket.socket) -> None:
        import threading

        self.sock = sock
        self.items: list[tuple[float, str]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.items.append((time.monotonic(), self.sock.recv(65536).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def since(self, start: float) -> list[str]:
        return [text for at, text in list(self.items) if at >= start]

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)


@pytest.mark.timeout(300)
def test_a_full_disk_is_one_line_a_minute_no_watchdog_a_clean_wait_at_start_and_a_recovery(
    tmp_path: Path, small_volume: Path, notify_socket: socket.socket
) -> None:
    journeys = builtin_journeys()
    simulator = Simulator(journeys)
    simulator.advance(steps=2)
    database = small_volume / "notifier.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFY_SOCKET=str(notify_socket.getsockname()), WATCHDOG_USEC="1000000")
    notes = NotifyLog(notify_socket)

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("w") as handle:
            return subprocess.Popen(
                [sys.executable, "-m", "notifier", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=handle,
                env=env,
            )

    with SimulatorServer(simulator) as server, SmtpServer() as smtp:
        config = write_config(tmp_path, ops_config(f"sqlite:///{database}", server.base_url, smtp.port))
        first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
        proc = start(first_log)
        try:
            wait_for(lambda: customer_mail(smtp) == ["departed_origin"], 60, "the first customer email")
            filler = fill(small_volume)
            # Keep news coming, so the daemon has something to write.
            deadline = time.monotonic() + 90
            while "disk full: database writes fail" not in first_log.read_text(encoding="utf-8"):
                assert time.monotonic() < deadline, first_log.read_text(encoding="utf-8")[-3000:]
                simulator.advance()
                time.sleep(1)
            full_at = time.monotonic()
            time.sleep(10)
            log = first_log.read_text(encoding="utf-8")
            assert log.count("disk full: database writes fail on") == 1, log[-3000:]  # one a minute
            assert "Traceback" not in log
            assert "job failed" not in log
            quiet = notes.since(full_at + 2)
            assert not any("WATCHDOG=1" in note for note in quiet), quiet  # not petted while full
            assert any("DISK FULL since" in note for note in quiet), quiet
            committed = customer_mail(smtp)
            proc.terminate()
            assert proc.wait(timeout=30) == 0, first_log.read_text(encoding="utf-8")[-3000:]

            # Stopped cleanly, and the disk fills while it is stopped: even opening the database
            # fails now (SQLite cannot size its -shm file). The start waits, saying why.
            filler.unlink()
            closing = sqlite3.connect(database)
            closing.execute("SELECT count(*) FROM shipments").fetchone()
            closing.close()
            assert not database.with_name("notifier.db-shm").exists()
            filler = fill(small_volume)
            restarted = time.monotonic()
            proc = start(second_log)
            wait_for(
                lambda: "cannot start: the disk is full" in second_log.read_text(encoding="utf-8"),
                60,
                lambda: second_log.read_text(encoding="utf-8"),
            )
            time.sleep(6)
            assert proc.poll() is None, second_log.read_text(encoding="utf-8")
            waiting = notes.since(restarted)
            assert any("STATUS=waiting for disk space" in n and "EXTEND_TIMEOUT_USEC=" in n for n in waiting)
            assert not any("READY=1" in n for n in waiting)
            assert "Traceback" not in second_log.read_text(encoding="utf-8")

            filler.unlink()  # space comes back
            freed = time.monotonic()
            wait_for(lambda: any("READY=1" in n for n in notes.since(freed)), 60, "READY once space is back")
            wait_for(
                lambda: "disk space is back" in second_log.read_text(encoding="utf-8"),
                60,
                lambda: second_log.read_text(encoding="utf-8"),
            )
            wait_for(lambda: any("WATCHDOG=1" in n for n in notes.since(freed)), 30, "the watchdog again")
            # Everything learnt before and after arrives, once each, in order: nothing was lost.
            for _ in range(10):
                simulator.advance()
                time.sleep(0.5)
            ems = [
                "departed_origin",
                "inward_exchange",
                "customs_presented",
                "customs_cleared",
                "out_for_delivery",
                "attempted_delivery",
                "retention",
                "delivered",
            ]
            wait_for(
                lambda: list(dict.fromkeys(customer_mail(smtp))) == ems,
                90,
                lambda: f"every EMS email (got {customer_mail(smtp)})",
            )
            assert customer_mail(smtp)[: len(committed)] == committed
            alerts = json.loads(cli(config, "alerts", "--json").stdout)
            assert [a["kind"] for a in alerts] == ["disk_full"], alerts
            assert "nothing committed was lost" in alerts[0]["message"]
            wal = database.with_name("notifier.db-wal")
            assert not wal.exists() or wal.stat().st_size < 4 * 2**20
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
            notes.close()
    assert "Traceback" not in second_log.read_text(encoding="utf-8")
