"""`notifier outbox` tells when a waiting message goes: after an SMTP pause, after quiet hours."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from notifier.core.sending import recorded_pause
from notifier.core.views import AlertView
from notifier.store import Store
from tests.smtp_server import AUTH_PASSWORD, AUTH_USER, SmtpServer
from tests.test_outbox import message

TOKYO = ZoneInfo("Asia/Tokyo")


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [sys.executable, "-m", "notifier", "outbox", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def enqueue(db_url: str, *numbers: int) -> None:
    async def run() -> None:
        store = await Store.open(db_url)
        try:
            now = dt.datetime.now(dt.UTC)
            await store.enqueue([message(n, f"c{n}@example.com") for n in numbers], now=now)
        finally:
            await store.close()

    asyncio.run(run())


def pending_lines(listing: str) -> list[str]:
    return [line for line in listing.splitlines() if " pending " in line]


def test_a_message_held_by_a_refused_login_is_not_listed_as_going_now(db_url: str, tmp_path: Path) -> None:
    password = tmp_path / "smtp-password"
    password.write_text("wrong\n", encoding="utf-8")
    password.chmod(0o600)
    enqueue(db_url, 1, 2)
    with SmtpServer(auth=True) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
            f'from = "shop@sakura.example"\nallow_example_identity = true\nusername = "{AUTH_USER}"\npassword_file = "{password}"\n',
            encoding="utf-8",
        )
        sent = cli(config, "send")
        assert sent.returncode == 1
        assert "sending paused" in sent.stderr
        listing = cli(config)
        assert listing.returncode == 0, listing.stderr
        lines = pending_lines(listing.stdout)
        assert len(lines) == 2, listing.stdout
        for line in lines:
            assert "goes now" not in line
            assert "goes when sending resumes (paused since " in line
            assert "the SMTP server refused our login; see `notifier alerts`)" in line
        listed = json.loads(cli(config, "--json").stdout)
        assert {m["goes_at"] for m in listed} == {None}
        assert all(m["waits_for"].startswith("sending resumes") for m in listed)

        # A send that goes through ends the pause: what is queued next goes now again.
        password.write_text(f"{AUTH_PASSWORD}\n", encoding="utf-8")
        sent = cli(config, "send")
        assert sent.returncode == 0, sent.stderr
        assert "sent 2 via SMTP" in sent.stdout
        enqueue(db_url, 3)
        (line,) = pending_lines(cli(config).stdout)
        assert line.endswith("goes now")


def test_a_message_held_by_quiet_hours_says_until_when_in_its_zone_and_utc(
    db_url: str, tmp_path: Path
) -> None:
    tokyo = dt.datetime.now(TOKYO)
    window = f"{(tokyo.hour - 1) % 24:02d}:00-{(tokyo.hour + 3) % 24:02d}:00"  # now, in Tokyo
    config = tmp_path / "notifier.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[notifications]\noutbox_dir = "eml"\n'
        f'quiet_hours = "{window}"\ndefault_time_zone = "Asia/Tokyo"\n',
        encoding="utf-8",
    )
    enqueue(db_url, 1)
    sent = cli(config, "send")
    assert "deferred 1 (quiet hours)" in sent.stdout, sent.stdout + sent.stderr
    end = tokyo.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=3)
    (line,) = pending_lines(cli(config).stdout)
    assert line.endswith(
        f"goes {end:%Y-%m-%d %H:%M} Asia/Tokyo ({end.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z) (quiet hours)"
    ), line


def test_only_an_open_pause_alert_newer_than_the_last_send_is_a_pause() -> None:
    t = dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)

    def alert(kind: str, seen: dt.datetime, acknowledged: bool = False) -> AlertView:
        return AlertView(
            id=1,
            kind=kind,
            subject="",
            message="…",
            first_seen_at=seen,
            last_seen_at=seen,
            count=1,
            acknowledged_at=seen if acknowledged else None,
        )

    assert recorded_pause([], None) is None
    pause = recorded_pause([alert("smtp_tls_failed", t)], t - dt.timedelta(minutes=5))
    assert pause is not None
    assert (pause.kind, pause.since) == ("tls", t)
    assert recorded_pause([alert("smtp_tls_failed", t)], t + dt.timedelta(minutes=1)) is None
    assert recorded_pause([alert("smtp_tls_failed", t, acknowledged=True)], None) is None
    assert recorded_pause([alert("poll_failed", t)], None) is None


def test_the_operator_board_says_the_same_of_paused_and_quiet_messages() -> None:
    from notifier.core.rules import DEFAULT_STALLS
    from notifier.core.sending import OutboxPolicy
    from notifier.core.views import OutboxItem, OutboxState
    from notifier.web.admin import BoardSnapshot, Filters, build_board

    now = dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)  # 13:00 in Tokyo

    def item(n: int) -> OutboxItem:
        return OutboxItem(
            id=n,
            dedup_key=f"k{n}",
            recipient="hanako@example.jp",
            sender="shop@sakura.example",
            locale="ja",
            time_zone=None,
            rule="delivered",
            template="delivered",
            stage="delivered",
            number="EJ112345678JP",
            subject="お届けしました",
            message_id=f"<{n}@sakura.example>",
            raw=b"bytes",
            state=OutboxState.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            created_at=now,
            sent_at=None,
        )

    def goes(alerts: list[AlertView], policy: OutboxPolicy) -> str:
        snapshot = BoardSnapshot(
            shipments=[],
            subscribers={},
            suppressed=frozenset(),
            alerts=alerts,
            outbox=[item(1)],
            depth={},
            suppressions=[],
            last_sent_at=now - dt.timedelta(hours=1),
        )
        board = build_board(snapshot, Filters(), now=now, policy=policy, stalls=DEFAULT_STALLS)
        return board.outbox[0].goes

    refused = AlertView(
        id=1,
        kind="smtp_auth_failed",
        subject="",
        message="…",
        first_seen_at=now - dt.timedelta(minutes=10),
        last_seen_at=now - dt.timedelta(minutes=10),
        count=1,
        acknowledged_at=None,
    )
    assert goes([refused], OutboxPolicy()).startswith(
        "goes when sending resumes (paused since 2026-12-07 03:50Z: the SMTP server refused our login"
    )
    assert goes([], OutboxPolicy()) == "goes now"
    quiet = OutboxPolicy(quiet_hours=(dt.time(12), dt.time(14)), default_time_zone="Asia/Tokyo")
    assert goes([], quiet) == "goes 2026-12-07 14:00 Asia/Tokyo (2026-12-07 05:00Z) (quiet hours)"
