"""The tutorial "Trying the web face locally" (docs/tutorial/web-face-locally.md), as written: its config runs and mails links that work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys, recent_journeys
from tests.test_daemon import wait_for
from tests.test_web_daemon import free_port

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial" / "web-face-locally.md"


def local_try_config() -> str:
    section = TUTORIAL.read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section shows one config"
    return blocks[0]


@pytest.mark.timeout(180)
def test_the_local_try_config_mails_links_that_work(tmp_path: Path) -> None:
    port = free_port()
    config = local_try_config()
    assert 'base_url = "http://127.0.0.1:8088"' in config
    assert 'listen = "127.0.0.1:8080"' in config
    (tmp_path / "http-secret").write_text("bG9jYWwgdHJ5IHNlY3JldCBmb3IgdGhlIHRlc3Q=\n", encoding="utf-8")
    (tmp_path / "admin-password").write_text("a long board password\n", encoding="utf-8")
    # As `notifier simulator --now` serves them: every journey complete, ending two days ago.
    section = TUTORIAL.read_text(encoding="utf-8")
    assert "`notifier simulator --now --port 8088`" in section
    assert "max_event_age" not in config  # the trial needs no setting against old news
    (ems,) = recent_journeys(builtin_journeys()[:1], dt.datetime.now(dt.UTC).date())
    simulator = Simulator([dataclasses.replace(ems, revealed=len(ems.scans))])
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    with SimulatorServer(simulator) as server:
        text = config.replace("http://127.0.0.1:8088", server.base_url).replace("8080", str(port))
        (tmp_path / "try.toml").write_text(text, encoding="utf-8")

        def notifier(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "notifier", *args, "--config", "try.toml"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        checked = notifier("config", "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        upgraded = notifier("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        log = tmp_path / "run.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "notifier", "run", "--config", "try.toml"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )
        try:
            outbox = tmp_path / "outbox"
            wait_for(lambda: outbox.is_dir() and any(outbox.glob("*.eml")), 60, lambda: log.read_text())
            (eml,) = outbox.glob("*.eml")
            message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            assert message["To"] == "emma@example.com"
            links = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
            web = [link for link in links if link.startswith(f"http://127.0.0.1:{port}/u/")]
            assert web, message["List-Unsubscribe"]
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(web[0], timeout=10).status_code == 200
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200
            assert httpx.get(f"{base}/admin/login", timeout=10).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        assert code == 0, log.read_text()
