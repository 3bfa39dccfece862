"""A customer chooses their language on the tracking page and the next email about the parcel
is in it: the real CLI, the simulator, SMTP and the web face over one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifier.cli import main
from notifier.config import parse_settings
from notifier.pipeline.wiring import web_links
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests.smtp_server import SmtpServer
from tests.web_site import running

CUSTOMER = "alice@example.com"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_choosing_japanese_on_the_page_makes_the_next_email_japanese(
    db_url: str, tmp_path: Path, smtp: SmtpServer
) -> None:
    journeys = builtin_journeys()
    ems = journeys[0]
    simulator = Simulator(journeys)
    simulator.reveal(ems.number, 3)  # departed Japan
    secret = tmp_path / "http-secret"
    secret.write_text("a secret for the language test, long enough", encoding="utf-8")
    with SimulatorServer(simulator) as jp:
        text = f"""
[database]
url = "{db_url}"
[japanpost]
base_url = "{jp.base_url}"
request_interval = 0
[notifications]
operator = "ops@sakura.example"
shop_name = "Sakura Stationery"
max_event_age = "3650d"
settle = "0s"  # each poll's news goes at once
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
from = "Sakura <shop@sakura.example>"
allow_example_identity = true  # a trial against the test relay
[http]
listen = "127.0.0.1:8080"
public_url = "https://track.sakura.example"
secret_file = "{secret}"
"""
        config = tmp_path / "notifier.toml"
        config.write_text(text, encoding="utf-8")
        opts = ["--config", str(config)]
        assert main(["db", "upgrade", *opts]) == 0
        assert main(["watch", ems.number, "--subscriber", CUSTOMER, *opts]) == 0
        assert main(["poll", ems.number, *opts]) == 0
        assert main(["outbox", "send", *opts]) == 0
        settings = parse_settings(text, config)
        links = web_links(settings)
        assert links is not None
        with running(settings) as base_url:
            page = links.tracking(CUSTOMER, ems.number).replace(links.public_url, base_url)
            chosen = httpx.post(page + "?lang=ja", data={"action": "language", "lang": "ja"}, timeout=10)
            assert chosen.status_code == 200
            assert '<html lang="ja">' in chosen.text
        # Watching the number again (as a shop's script might) keeps the customer's choice.
        assert main(["watch", ems.number, "--subscriber", CUSTOMER, *opts]) == 0
        simulator.reveal(ems.number, 4)  # arrived in the destination country
        assert main(["poll", ems.number, *opts]) == 0
        assert main(["outbox", "send", *opts]) == 0
    messages = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp.messages]
    assert [(m["To"], m["Content-Language"]) for m in messages] == [(CUSTOMER, "en"), (CUSTOMER, "ja")]
    body = messages[1].get_body(preferencelist=("plain",))
    assert body is not None
    assert "お荷物" in body.get_content()
