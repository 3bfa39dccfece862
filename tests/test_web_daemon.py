"""The web face inside `notifier run`: served from the daemon's loop, stopped by the daemon's own
signals, and the one-click unsubscribe of a real email taking effect for the mail that follows."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from notifier.core.links import Purpose, Signer
from notifier.store.database import make_engine
from notifier.testing.simulator import Journey, Simulator, SimulatorServer
from tests import test_daemon
from tests.smtp_server import SmtpServer
from tests.test_daemon import Run, config_text, wait_for

# test_daemon's fixture: the Japan Post simulator and a real SMTP sink, both on loopback.
world = test_daemon.world

World = tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
SECRET = "a test secret of more than sixteen characters"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_http_config(tmp_path: Path, db_url: str, world: World, port: int, extra: str = "") -> Path:
    """test_daemon's configuration with [http] on `port`, at the schema head."""
    _, jp, smtp, _ = world
    secret = tmp_path / "http-secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    http = f'\n[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\nsecret_file = "{secret}"\n'
    text = config_text(db_url, jp.base_url, smtp.port, extra)
    # [http] goes before the first [[watch]], so the keys after it stay in their tables.
    head, watches = text.split("[[watch]]", 1)
    config = tmp_path / "notifier.toml"
    config.write_text(head + http + "[[watch]]" + watches, encoding="utf-8")
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    return config


def start_with_http(
    tmp_path: Path, db_url: str, world: World, port: int, extra: str = ""
) -> tuple[Path, Run]:
    config = write_http_config(tmp_path, db_url, world, port, extra)
    return config, Run(config)


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_daemon_serves_http_and_stops_cleanly_on_its_signals(
    tmp_path: Path, world: World, sig: int
) -> None:
    port = free_port()
    _, run = start_with_http(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        assert f"web face listening on 127.0.0.1:{port}" in run.output()
        css = httpx.get(f"http://127.0.0.1:{port}/static/page.css", timeout=10)
        assert css.status_code == 200
        assert "script-src 'none'" in css.headers["content-security-policy"]
        # SIGHUP is the daemon's: it reloads, and the web face goes on serving.
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")
        assert httpx.get(f"http://127.0.0.1:{port}/nothing-here", timeout=10).status_code == 404
        # The daemon's own health and metrics are served beside the customer pages.
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200,
            30,
            "a healthy daemon",
        )
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert "notifier_database_up 1.0" in metrics.text
        assert run.proc.poll() is None
    finally:
        code = run.stop(sig)
    assert code == 0, run.output()
    output = run.output()
    # The daemon heard the signal and stopped the web face itself (uvicorn did not take it).
    assert output.index("stopping") < output.index("web face stopped")
    assert "Traceback" not in output
    assert refused(port)


def test_a_port_in_use_stops_the_start_with_one_clear_line(tmp_path: Path, world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        _, run = start_with_http(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
        assert run.proc.wait(timeout=30) == 1
    assert f"http.listen: cannot listen on 127.0.0.1:{port}" in run.output()
    assert "Traceback" not in run.output()


def test_http_without_a_secret_refuses_to_start_naming_where_it_looked(tmp_path: Path, world: World) -> None:
    port = free_port()
    config = write_http_config(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
    text = config.read_text(encoding="utf-8")
    config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("secret_file")))
    run = Run(config)
    assert run.proc.wait(timeout=30) == 2
    output = run.output()
    assert "http: needs a secret" in output
    for place in ("http.secret_file", "$NOTIFIER_HTTP_SECRET", '"http-secret"'):
        assert place in output


def _customer_mail(smtp: SmtpServer, address: str) -> list[email.message.EmailMessage]:
    messages = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp.messages]
    return [m for m in messages if str(m["To"]) == address]


@pytest.mark.timeout(300)
def test_one_click_from_a_real_email_stops_the_mail_that_follows(
    db_url: str, tmp_path: Path, world: World
) -> None:
    simulator, _, smtp, _ = world
    port = free_port()
    _, run = start_with_http(tmp_path, db_url, world, port)
    customer = "customer@example.com"
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        while not _customer_mail(smtp, customer):
            simulator.advance()
            time.sleep(0.8)
        first = _customer_mail(smtp, customer)[0]
        assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        uris = re.findall(r"<([^>]+)>", str(first["List-Unsubscribe"]))
        assert uris[0].startswith(f"http://127.0.0.1:{port}/u/")
        assert uris[1].startswith("mailto:ops@sakura.example")  # the mailto stays beside it
        unsubscribe = uris[0]
        html = next(p for p in first.walk() if p.get_content_type() == "text/html").get_content()
        tracking = re.search(rf'href="(http://127\.0\.0\.1:{port}/t/[^"]+)"', html)
        assert tracking, html
        assert httpx.get(tracking.group(1), timeout=10).status_code == 200
        # A scanner's GET (twice) changes nothing: the next message still comes.
        for _ in range(2):
            assert httpx.get(unsubscribe, timeout=10).status_code == 200
        count = len(_customer_mail(smtp, customer))
        while len(_customer_mail(smtp, customer)) == count:
            simulator.advance()
            time.sleep(0.8)
        received = len(_customer_mail(smtp, customer))
        answer = httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert answer.status_code == 200
        for _ in range(12):  # the rest of every journey
            simulator.advance()
            time.sleep(0.8)
        # The other customers still hear everything: the daemon went on working.
        wait_for(
            lambda: len(_customer_mail(smtp, "hanako@example.jp")) == 4,
            60,
            lambda: f"hanako's four messages (got {len(_customer_mail(smtp, 'hanako@example.jp'))})",
        )
        time.sleep(2)
        assert len(_customer_mail(smtp, customer)) == received
    finally:
        assert run.stop() == 0, run.output()
    states = _outbox_states(db_url, customer)
    assert states.get("suppressed", 0) >= 1, states  # queued, then stopped at send time
    assert states.get("sent") == received


def _outbox_states(db_url: str, recipient: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        engine = make_engine(db_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT state, count(*) FROM outbox WHERE recipient = :r GROUP BY state"),
                    {"r": recipient},
                )
                return {str(state): int(count) for state, count in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.timeout(120)
def test_a_reload_rotates_the_secret_and_refuses_to_move_the_listener(tmp_path: Path, world: World) -> None:
    port = free_port()
    config, run = start_with_http(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
    number = test_daemon.EMS
    old = Signer(SECRET).make(Purpose.TRACK, "customer@example.com", number)
    rotated = "a new secret, rotated by the operator"
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        assert httpx.get(f"http://127.0.0.1:{port}/t/{old}", timeout=10).status_code == 200
        (tmp_path / "http-secret").write_text(rotated, encoding="utf-8")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")
        # Old links stop working; links signed with the new secret work.
        assert httpx.get(f"http://127.0.0.1:{port}/t/{old}", timeout=10).status_code == 404
        new = Signer(rotated).make(Purpose.TRACK, "customer@example.com", number)
        assert httpx.get(f"http://127.0.0.1:{port}/t/{new}", timeout=10).status_code == 200
        moved = free_port()
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace(f'listen = "127.0.0.1:{port}"', f'listen = "127.0.0.1:{moved}"'))
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in run.output(), 20, "the refused reload")
        assert "[http] (added, removed, or http.listen changed) cannot change while running" in run.output()
        assert httpx.get(f"http://127.0.0.1:{port}/t/{new}", timeout=10).status_code == 200
        assert refused(moved)
    finally:
        assert run.stop() == 0, run.output()
