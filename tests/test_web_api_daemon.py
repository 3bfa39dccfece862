"""The JSON API inside `notifier run`: a number posted with a subscriber is polled and its customer
mailed, once; a reload keeps it; DELETE stops it; a wrong token changes nothing."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from tests import test_daemon
from tests.test_daemon import EMS, Run, wait_for
from tests.test_web_daemon import World, free_port, write_http_config

world = test_daemon.world
TOKEN = "a token for the daemon's JSON API"
CUSTOMER = "api-customer@example.com"


@pytest.mark.timeout(120)
def test_a_number_posted_to_the_daemon_is_watched_mailed_kept_and_unwatched(
    tmp_path: Path, world: World
) -> None:
    simulator, _, smtp, _ = world
    simulator.advance(steps=2)  # the EMS has left Japan: its first poll queues a message
    port = free_port()
    config = write_http_config(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
    token = tmp_path / "api-token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    text = config.read_text(encoding="utf-8")
    # The EMS number leaves the watchlist (the API may not take the configuration's numbers) and
    # [intake] goes before the first [[watch]].
    text = re.sub(r'\[\[watch\]\]\nnumber = "' + EMS + r'"\n(?:[a-z_]+ = .*\n)*', "", text, count=1)
    head, watches = text.split("[[watch]]", 1)
    config.write_text(f'{head}[intake]\napi_token_file = "{token}"\n[[watch]]{watches}', encoding="utf-8")
    assert EMS not in config.read_text(encoding="utf-8")
    run = Run(config)
    base = f"http://127.0.0.1:{port}/api/v1"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        wrong = httpx.post(f"{base}/watches", json={"number": EMS}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(f"{base}/watches/{EMS}", headers=auth).status_code == 404
        assert httpx.get(f"{base}/openapi.json").json()["openapi"] == "3.1.0"

        posted = httpx.post(
            f"{base}/watches", json={"number": EMS, "subscribers": [CUSTOMER], "label": "API 1"}, headers=auth
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["watched_by"] == "api"

        def mailed() -> list[bytes]:
            return [m.data for m in smtp.messages if CUSTOMER in m.rcpt_tos]

        wait_for(lambda: len(mailed()) >= 1, 60, lambda: f"mail to the API's subscriber\n{run.output()}")
        subjects = [re.search(rb"(?m)^Subject: (.*)$", data).group(1) for data in mailed()]  # type: ignore[union-attr]
        assert len(subjects) == len(set(subjects)), subjects  # one message per stage, never twice

        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")
        kept = httpx.get(f"{base}/watches/{EMS}", headers=auth)
        assert kept.status_code == 200
        assert kept.json()["active"] is True
        assert kept.json()["stage"] != "pending"
        assert kept.json()["events"]
        # Polled again many times since (every 0.3 s) with nothing new: still that one message.
        assert len(mailed()) == 1

        assert httpx.delete(f"{base}/watches/{EMS}", headers=auth).status_code == 204
        listed = httpx.get(f"{base}/watches", headers=auth).json()["watches"]
        assert EMS not in [w["number"] for w in listed]
        wait_for(lambda: "action=api_unwatch" in run.output(), 10, "the logged unwatch")
        assert TOKEN not in run.output()
    finally:
        code = run.stop(signal.SIGTERM)
    assert code == 0, run.output()
    assert "Traceback" not in run.output()
