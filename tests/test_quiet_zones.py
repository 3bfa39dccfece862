"""Quiet hours in the recipient's zone: their own, else their destination country's, else the shop's."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from notifier.core.compose import drafts_for
from notifier.core.messages import Template
from notifier.core.rules import Notification, Recipient, ShipmentFacts, recipient_zone
from notifier.core.sending import OutboxPolicy
from notifier.core.stages import Stage
from notifier.core.views import OutboxState
from notifier.core.zones import country_zones
from notifier.pipeline.outbox import reevaluate_quiet_hours
from notifier.store import Store
from tests.smtp_server import SmtpServer
from tests.test_outbox import MAIL, RENDERER, Clock, message, run_drain, smtp, store

__all__ = ["smtp", "store"]

QUIET = (dt.time(21), dt.time(8))
# 13:06 in Tokyo: the delivered message to hanako@example.jp waited until 08:00Z.
TOKYO_AFTERNOON = dt.datetime(2026, 12, 7, 4, 6, tzinfo=dt.UTC)
TABLE = Path(__file__).parent.parent / "notifier" / "core" / "country_zones.csv"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_the_country_table_names_real_zones_and_its_sources() -> None:
    zones = country_zones()
    for country, zone in zones.items():
        assert len(country) == 2, country
        assert country.isupper(), country
        ZoneInfo(zone)  # every zone exists in the tz database
    assert zones["JP"] == "Asia/Tokyo"
    assert zones["US"] == "America/New_York"
    assert zones["FR"] == "Europe/Paris"
    assert len(zones) > 240
    text = TABLE.read_text(encoding="utf-8")
    assert "zone.tab" in text
    assert "iana.org/time-zones" in text
    # Each country with several zones says which default was chosen and why.
    noted = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    for row in noted:
        if row["note"]:
            assert "the capital's" in row["note"], row
            assert "tz: " in row["note"], row


def test_the_recipients_own_zone_wins_then_the_destination_country() -> None:
    countries = {"US": "America/New_York", "JP": "Asia/Tokyo"}
    assert recipient_zone("Europe/Paris", "US", countries) == "Europe/Paris"
    assert recipient_zone(None, "us", countries) == "America/New_York"
    assert recipient_zone(None, "ZZ", countries) is None  # left to default_time_zone
    assert recipient_zone(None, None, countries) is None  # a domestic parcel: no destination
    policy = OutboxPolicy(quiet_hours=QUIET, default_time_zone="Asia/Tokyo")
    assert policy.zone_of(None) == "Asia/Tokyo"
    assert policy.zone_of("America/New_York") == "America/New_York"


def test_a_message_stores_the_zone_of_its_recipient_or_destination() -> None:
    def zones(destination: str | None) -> list[str | None]:
        notifications = [
            Notification(
                dedup_key=f"k{i}",
                template=Template.DELIVERED,
                rule="delivered",
                stage=Stage.DELIVERED,
                recipient=Recipient(subscription_id=i, email=f"c{i}@example.com", time_zone=own),
            )
            for i, own in enumerate([None, "Europe/Paris"])
        ]
        shipment = ShipmentFacts(id=1, number="EJ123456785JP", destination=destination, stage=Stage.DELIVERED)
        drafts = drafts_for(
            notifications, shipment, [], [], mail=MAIL, renderer=RENDERER, now=TOKYO_AFTERNOON
        )
        return [d.time_zone for d in drafts]

    assert zones("US") == ["America/New_York", "Europe/Paris"]
    assert zones(None) == [None, "Europe/Paris"]  # domestic: the shop's default applies when sending


async def test_a_subscriber_without_a_zone_gets_the_shops_quiet_hours_not_utcs(
    store: Store, smtp: SmtpServer
) -> None:
    await store.enqueue([message(1, "hanako@example.jp", None)], now=TOKYO_AFTERNOON)
    clock = Clock(TOKYO_AFTERNOON)  # 04:06Z: inside 21:00-08:00 in UTC
    result = await run_drain(
        store, smtp, clock, OutboxPolicy(quiet_hours=QUIET, default_time_zone="Asia/Tokyo")
    )
    assert (result.sent, result.deferred) == (1, 0)
    # At 22:00 in Tokyo the same message waits for 08:00 Tokyo (23:00Z), not 08:00Z.
    await store.enqueue([message(2, "hanako@example.jp", None)], now=TOKYO_AFTERNOON)
    clock.now = dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)
    result = await run_drain(
        store, smtp, clock, OutboxPolicy(quiet_hours=QUIET, default_time_zone="Asia/Tokyo")
    )
    assert result.deferred == 1
    (waiting,) = [i for i in await store.outbox() if i.state is OutboxState.PENDING]
    assert waiting.next_attempt_at == dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)


def _config(tmp_path: Path, db_url: str, notifications: str) -> Path:
    config = tmp_path / "notifier.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[notifications]\nshop_name = "Sakura"\noutbox_dir = "eml"\n'
        f"{notifications}",
        encoding="utf-8",
    )
    return config


def test_quiet_hours_without_a_default_zone_are_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'n.db'}", 'quiet_hours = "21:00-08:00"\n')
    checked = cli(config, "config", "check")
    assert checked.returncode != 0
    assert f"{config}:7: notifications.default_time_zone: required when quiet_hours is set" in checked.stderr
    config = _config(
        tmp_path,
        f"sqlite:///{tmp_path / 'n.db'}",
        'quiet_hours = "21:00-08:00"\ndefault_time_zone = "Asia/Tokio"\n',
    )
    checked = cli(config, "config", "check")
    assert checked.returncode != 0
    assert (
        f"{config}:8: notifications.default_time_zone: 'Asia/Tokio' is not an IANA time zone"
        in checked.stderr
    )
    config.write_text(
        config.read_text(encoding="utf-8").replace("Asia/Tokio", "Asia/Tokyo"), encoding="utf-8"
    )
    checked = cli(config, "config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "quiet hours: 21:00-08:00 in each recipient's zone (else the destination's, else Asia/Tokyo)" in (
        checked.stdout
    )


def test_outbox_send_keeps_quiet_hours_in_the_shops_zone(db_url: str, tmp_path: Path) -> None:
    """A message with no zone (a CSV import) outside quiet hours in Tokyo goes now, although
    the window covers the present hour in UTC."""
    hour = dt.datetime.now(dt.UTC).hour
    window = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"  # now in UTC; not in Tokyo (+9)
    config = _config(tmp_path, db_url, f'quiet_hours = "{window}"\ndefault_time_zone = "Asia/Tokyo"\n')

    async def fill() -> None:
        store = await Store.open(db_url)
        try:
            await store.enqueue([message(1, "hanako@example.jp", None)], now=dt.datetime.now(dt.UTC))
        finally:
            await store.close()

    asyncio.run(fill())
    sent = cli(config, "outbox", "send")
    assert sent.returncode == 0, sent.stderr
    assert "sent 1 via files" in sent.stdout
    assert "deferred 0" in sent.stdout
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 1


async def test_a_new_default_zone_moves_the_messages_waiting_for_quiet_hours(
    store: Store, smtp: SmtpServer
) -> None:
    night_utc = dt.datetime(2026, 12, 7, 22, 0, tzinfo=dt.UTC)  # 07:00 the next morning in Tokyo
    await store.enqueue([message(1, "hanako@example.jp", None)], now=night_utc)
    clock = Clock(night_utc)
    result = await run_drain(store, smtp, clock, OutboxPolicy(quiet_hours=QUIET, default_time_zone="UTC"))
    assert result.deferred == 1
    tokyo = OutboxPolicy(quiet_hours=QUIET, default_time_zone="Asia/Tokyo")
    assert await reevaluate_quiet_hours(store, tokyo, now=night_utc) == 1
    (waiting,) = await store.outbox()
    assert waiting.next_attempt_at == dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)  # 08:00 in Tokyo
