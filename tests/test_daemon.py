"""End to end: `notifier run` as a real process against the simulator, a real SMTP server and a
real database, driven through four journeys and sent real signals."""

from __future__ import annotations

import contextlib
import email
import email.policy
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from notifier.core.numbers import s10_check_digit
from notifier.testing.simulator import Fault, Journey, Simulator, SimulatorServer, builtin_journeys
from tests.smtp_server import SmtpServer

EMS, YUPACK, RETURNED, NEVER = (j.number for j in builtin_journeys())

# What each customer must receive, in order, once each (default rules, one message per stage).
EXPECTED = {
    ("customer@example.com", EMS): [
        "departed_origin",
        "inward_exchange",
        "customs_presented",
        "customs_cleared",
        "out_for_delivery",
        "attempted_delivery",
        "retention",
        "delivered",
    ],
    ("hanako@example.jp", YUPACK): [
        "out_for_delivery",
        "attempted_delivery",
        "out_for_delivery",
        "delivered",
    ],
    ("sender@example.com", RETURNED): [
        "departed_origin",
        "inward_exchange",
        "customs_presented",
        "returning",
        "returned",
    ],
}
LANGUAGE = {EMS: "en", YUPACK: "ja", RETURNED: "en"}


def config_text(
    db_url: str, jp: str, smtp_port: int, extra: str = "", polling: str = "", japanpost: str = ""
) -> str:
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
{polling}
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Sakura <shop@sakura.example>"
allow_example_identity = true
[notifications]
operator = "ops@sakura.example"
max_event_age = "3650d"
multi_stage = "each"
{extra}
[[watch]]
number = "{EMS}"
label = "Order 1001"
subscribers = ["customer@example.com"]
[[watch]]
number = "{YUPACK}"
label = "注文 42"
subscribers = ["hanako@example.jp"]
locale = "ja"
time_zone = "Asia/Tokyo"
[[watch]]
number = "{RETURNED}"
label = "Order 1003"
subscribers = ["sender@example.com"]
[[watch]]
number = "{NEVER}"
label = "Order 1004"
subscribers = ["waiting@example.com"]
"""


class Run:
    """A daemon process and what it logs."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        self.log = config.with_suffix(f".{time.monotonic_ns()}.log")
        with self.log.open("w") as handle:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "notifier", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=handle,
                env=env,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str | Callable[[], str] = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.1)


def received(server: SmtpServer) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """(recipient, number) -> [(stage, language, Message-ID)] in arrival order, copies included."""
    out: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for m in server.messages:
        message = email.message_from_bytes(m.data, policy=email.policy.default)
        if message["X-Notifier-Tracking-Number"] is None:
            continue  # the operator digest
        key = (str(message["To"]), str(message["X-Notifier-Tracking-Number"]))
        out.setdefault(key, []).append(
            (str(message["X-Notifier-Stage"]), str(message["Content-Language"]), str(message["Message-ID"]))
        )
    return out


def texts(server: SmtpServer) -> dict[tuple[str, str], list[str]]:
    """(recipient, number) -> the decoded text and HTML of each message, in arrival order."""
    out: dict[tuple[str, str], list[str]] = {}
    for m in server.messages:
        message = email.message_from_bytes(m.data, policy=email.policy.default)
        if message["X-Notifier-Tracking-Number"] is None:
            continue
        parts = [str(p.get_content()) for p in message.walk() if not p.is_multipart()]
        key = (str(message["To"]), str(message["X-Notifier-Tracking-Number"]))
        out.setdefault(key, []).append("\n".join(parts))
    return out


def assert_quotes_only(text: str, journey: Journey, locale: str) -> None:
    """The message quotes Japan Post's wording of `locale`'s page (some scan's status and office)
    and nothing of the other page's that differs (romaji offices abroad are the same in both)."""
    own = [
        (s.status_en, s.office_en) if locale == "en" else (s.status_ja, s.office_ja) for s in journey.scans
    ]
    assert any(status in text and office in text for status, office in own), text
    for scan in journey.scans:
        for en, ja in (
            (scan.status_en, scan.status_ja),
            (scan.office_en, scan.office_ja),
            (scan.region_en, scan.region_ja),
        ):
            if en and ja and en != ja:
                other = ja if locale == "en" else en
                assert other not in text, f"{other!r} in the {locale} message:\n{text}"


def stages_of(server: SmtpServer) -> dict[tuple[str, str], list[str]]:
    return {key: [stage for stage, _, _ in values] for key, values in received(server).items()}


def ready_check(run: Run) -> Callable[[], bool]:
    return lambda: "notifier running" in run.output()


def advance_all(simulator: Simulator, journeys: list[Journey], pause: float) -> None:
    for _ in range(max(len(j.scans) for j in journeys)):
        simulator.advance()
        time.sleep(pause)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]]:
    journeys = builtin_journeys()
    simulator = Simulator(journeys)
    with SimulatorServer(simulator) as jp, SmtpServer() as smtp:
        yield simulator, jp, smtp, journeys


def start(
    tmp_path: Path,
    db_url: str,
    jp: SimulatorServer,
    smtp: SmtpServer,
    extra: str = "",
    polling: str = "",
    japanpost: str = "",
) -> tuple[Path, Run]:
    config = tmp_path / "notifier.toml"
    config.write_text(
        config_text(db_url, jp.base_url, smtp.port, extra, polling, japanpost), encoding="utf-8"
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    return config, Run(config)


@pytest.mark.timeout(300)
def test_four_journeys_arrive_in_order_once_each_in_the_right_language(
    db_url: str, tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, journeys = world
    _, run = start(tmp_path, db_url, jp, smtp)
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        advance_all(simulator, journeys, 0.8)
        wait_for(lambda: stages_of(smtp) == EXPECTED, 60, f"the expected emails (got {stages_of(smtp)})")
        time.sleep(1.5)  # nothing more may arrive
        assert stages_of(smtp) == EXPECTED
        for (_, number), values in received(smtp).items():
            assert {language for _, language, _ in values} == {LANGUAGE[number]}
            assert len({mid for _, _, mid in values}) == len(values)
        # Japan Post's own words in each customer's language: the Japanese customer's emails
        # quote the Japanese page only, the English customers' the English page only.
        by_number = {j.number: j for j in journeys}
        for (_, number), bodies in texts(smtp).items():
            for body in bodies:
                assert_quotes_only(body, by_number[number], LANGUAGE[number])
        assert all(m.rcpt_tos != ("waiting@example.com",) for m in smtp.messages)
    finally:
        assert run.stop() == 0, run.output()
    assert "stopping" in run.output()
    assert "action=stopped" in run.output().splitlines()[-1]  # the run's last line says it ended


@pytest.mark.timeout(300)
def test_sighup_with_a_broken_config_keeps_the_old_one(
    db_url: str, tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, journeys = world
    config, run = start(tmp_path, db_url, jp, smtp)
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace('locale = "ja"', 'locale = "fr"\ncolour = "red"'), encoding="utf-8")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in run.output(), 20, "the refused reload")
        assert "locale: must be en or ja" in run.output()
        assert "colour: unknown key" in run.output()
        assert run.proc.poll() is None  # still running, on the old configuration
        advance_all(simulator, journeys, 0.8)
        wait_for(lambda: stages_of(smtp) == EXPECTED, 60, f"the expected emails (got {stages_of(smtp)})")
        hanako = received(smtp)[("hanako@example.jp", YUPACK)]
        assert {language for _, language, _ in hanako} == {"ja"}  # the old locale still applies
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_kill_9_and_restart_loses_nothing_and_repeats_nothing(
    db_url: str, tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, journeys = world
    config, run = start(tmp_path, db_url, jp, smtp, extra='outbox_lease = "1s"', polling='lease = "2s"')
    kills = 0
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        for step in range(max(len(j.scans) for j in journeys)):
            simulator.advance()
            time.sleep(0.4 + 0.3 * (step % 3))
            run.proc.kill()  # SIGKILL at an arbitrary point of its work
            run.proc.wait(timeout=10)
            kills += 1
            run = Run(config)
            wait_for(ready_check(run), 30, "READY after restart")
        wait_for(
            lambda: (
                {k: list(dict.fromkeys(v)) for k, v in stages_of(smtp).items()}
                == {k: list(dict.fromkeys(v)) for k, v in EXPECTED.items()}
                and all(len(set(v)) >= 1 for v in stages_of(smtp).values())
            ),
            60,
            lambda: f"every expected email (got {stages_of(smtp)})",
        )
        time.sleep(2)
    finally:
        assert run.stop() == 0, run.output()
    got = received(smtp)
    for key, stages in EXPECTED.items():
        values = got[key]
        # Nothing lost: every expected message arrived, in order.
        unique = list(dict.fromkeys((stage, mid) for stage, _, mid in values))
        assert [stage for stage, _ in unique] == stages
        # Copies only from the post-250 window: same Message-ID, at most one per kill.
        assert len(values) - len(unique) <= kills


def test_second_instance_on_the_same_sqlite_database_is_refused(
    tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    _, jp, smtp, _ = world
    config, first = start(tmp_path, f"sqlite:///{tmp_path / 'one.db'}", jp, smtp)
    try:
        wait_for(lambda: "notifier running" in first.output(), 30, "READY")
        second = Run(config)
        assert second.proc.wait(timeout=30) == 1
        assert "another notifier is already running" in second.output()
    finally:
        assert first.stop() == 0


@pytest.mark.timeout(180)
def test_mail_queued_by_a_poll_is_sent_at_once_not_at_the_send_jobs_next_tick(
    tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, _ = world
    simulator.advance(steps=2)  # the EMS has left Japan: its first poll queues a message
    config = tmp_path / "notifier.toml"
    # Both jobs tick every 300 s; each runs its first poll at start, the send job not before
    # its first tick: only the wake-up on commit can send the message within the test.
    text = config_text(f"sqlite:///{tmp_path / 'wake.db'}", jp.base_url, smtp.port)
    config.write_text(text.replace('tick = "0.3s"', 'tick = "300s"'), encoding="utf-8")
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    run = Run(config)
    try:
        wait_for(ready_check(run), 30, "READY")
        wait_for(
            lambda: ("customer@example.com", EMS) in stages_of(smtp),
            120,
            lambda: f"the EMS message before the send job's first tick (got {stages_of(smtp)})",
        )
        # The server has the message; the drain logs once it has marked it sent.
        wait_for(lambda: "outbox: sent=" in run.output(), 30, "the outbox line of that drain")
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_unreadable_pages_pause_customer_mail_with_one_alert(
    db_url: str, tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, journeys = world
    simulator.advance(steps=2)  # the EMS and the returned parcel have left Japan: two messages are due
    config, run = start(tmp_path, db_url, jp, smtp)

    def first(counts: dict[str, int]) -> dict[tuple[str, str], list[str]]:
        return {key: EXPECTED[key][: counts[key[1]]] for key in EXPECTED if counts.get(key[1])}

    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        due = first({EMS: 1, RETURNED: 1})
        wait_for(lambda: stages_of(smtp) == due, 60, lambda: f"the two due emails (got {stages_of(smtp)})")
        simulator.set_fault(Fault.CHANGED_LAYOUT)
        simulator.advance()
        simulator.advance()

        def asked_twice_under_fault() -> bool:
            faulty = [r.numbers for r in simulator.requests if r.fault is Fault.CHANGED_LAYOUT]
            return all(sum(j.number in numbers for numbers in faulty) >= 2 for j in journeys)

        wait_for(asked_twice_under_fault, 60, "every number asked twice while pages are unreadable")
        assert stages_of(smtp) == due  # no customer mail while pages are unreadable
        alerts = subprocess.run(
            [sys.executable, "-m", "notifier", "alerts", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        import json

        kinds = [a["kind"] for a in json.loads(alerts.stdout)]
        assert kinds.count("site_unrecognized") == 1
        # Deferred, not dropped: once pages read again, the news of both steps goes out, once each.
        simulator.clear_faults()
        later = first({EMS: 3, YUPACK: 2, RETURNED: 3})
        wait_for(lambda: stages_of(smtp) == later, 60, lambda: f"the deferred emails (got {stages_of(smtp)})")
        assert "customer mail resumed" in run.output()
        ids = [mid for values in received(smtp).values() for _, _, mid in values]
        assert len(ids) == len(set(ids))
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_server_errors_and_rate_limits_are_backed_off(
    tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, smtp, _ = world
    simulator.advance(steps=2)
    simulator.set_fault(Fault.RATE_LIMITED, retry_after=3)
    # Short circuit-breaker pauses keep the test quick; Retry-After still sets the floor.
    _config, run = start(
        tmp_path,
        f"sqlite:///{tmp_path / 'limits.db'}",
        jp,
        smtp,
        japanpost='circuit_pause = "1s"\ncircuit_pause_max = "4s"',
    )
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        wait_for(lambda: any(r.status == 429 for r in simulator.requests), 30, "a 429")
        time.sleep(8)
        limited = [r.at for r in simulator.requests if r.status == 429]
        # Retry-After: 3 is honoured: never two requests closer than that while limited.
        gaps = [b - a for a, b in itertools.pairwise(limited)]
        assert gaps
        assert min(gaps) >= 2.9, gaps
        simulator.clear_faults()
        simulator.inject(Fault.SERVER_ERROR, times=4)
        wait_for(lambda: len(stages_of(smtp)) >= 1, 90, "mail once Japan Post answers again")
        errors = [r for r in simulator.requests if r.status == 500]
        assert len(errors) == 4
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(120)
def test_sigterm_mid_cycle_waits_for_one_request_not_the_rest_of_the_cycle(
    tmp_path: Path, world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
) -> None:
    simulator, jp, _, _ = world
    numbers = [f"EJ{n:08d}{s10_check_digit(f'{n:08d}')}JP" for n in range(90000001, 90000021)]
    db = tmp_path / "stop.db"
    config = tmp_path / "stop.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[japanpost]\nbase_url = "{jp.base_url}"\n'
        'request_interval = 1\n[polling]\ntick = "0.5s"\n'
        + "".join(f'[[watch]]\nnumber = "{n}"\n' for n in numbers),
        encoding="utf-8",
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    run = Run(config)
    try:
        # Twenty new numbers, one detail page each at one request a second: a 20 s cycle.
        wait_for(lambda: len(simulator.requests) >= 2, 60, "the cycle under way")
        run.proc.send_signal(signal.SIGTERM)
        signalled = len(simulator.requests)
        assert run.proc.wait(timeout=30) == 0, run.output()
    finally:
        run.stop()
    # The request in flight (and at most one the pacer had already let through) finishes.
    assert len(simulator.requests) - signalled <= 2, len(simulator.requests) - signalled
    assert "handed back unpolled, still due" in run.output()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        leased = connection.execute("SELECT count(*) FROM shipments WHERE leased_by IS NOT NULL").fetchone()
        unpolled = connection.execute(
            "SELECT count(*) FROM shipments WHERE last_polled_at IS NULL AND next_poll_at IS NOT NULL"
        ).fetchone()
    assert leased == (0,)
    assert unpolled[0] >= 10  # handed back, due: the next start polls them first
