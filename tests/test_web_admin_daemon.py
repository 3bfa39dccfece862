"""The operator board inside `notifier run`: off without a password, switched on by a reload that
adds one, and its actions reaching the daemon's own database."""

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
PASSWORD = "a long operator board password"


@pytest.mark.timeout(120)
def test_a_reload_that_adds_the_password_opens_the_board(tmp_path: Path, world: World) -> None:
    port = free_port()
    config = write_http_config(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", world, port)
    run = Run(config)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY")
        assert "operator board off" in run.output()
        assert httpx.get(f"{base}/admin/", timeout=10).status_code == 404

        password = tmp_path / "http-admin-password"
        password.write_text(PASSWORD + "\n", encoding="utf-8")
        text = config.read_text(encoding="utf-8")
        config.write_text(
            re.sub(r"(?m)^(secret_file = .*)$", rf'\1\nadmin_password_file = "{password}"', text, count=1),
            encoding="utf-8",
        )
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")

        with httpx.Client(base_url=base, timeout=10) as client:
            form = client.get("/admin/login")
            assert form.status_code == 200
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token
            login = client.post("/admin/login", data={"csrf": token.group(1), "password": PASSWORD})
            assert login.status_code == 303
            board = client.get("/admin/")
            assert board.status_code == 200
            assert EMS in board.text
            action = re.search(r'name="csrf" value="([^"]+)"', board.text)
            assert action
            poll = client.post("/admin/poll", data={"csrf": action.group(1), "number": EMS})
            assert poll.status_code == 303
            assert f"{EMS} due now" in client.get(poll.headers["location"]).text
        wait_for(lambda: "action=admin_poll_now" in run.output(), 10, "the logged action")
        assert "admin_login" in run.output()
        assert PASSWORD not in run.output()
    finally:
        code = run.stop(signal.SIGTERM)
    assert code == 0, run.output()
    assert "Traceback" not in run.output()
