"""The mail commands as a user runs them: watch, poll, outbox, preview, test-email, unsubscribe."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests.smtp_server import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def write_config(tmp_path: Path, db_url: str, base_url: str, smtp: SmtpServer | None) -> list[str]:
    lines = [
        f'[database]\nurl = "{db_url}"',
        f'[japanpost]\nbase_url = "{base_url}"\nrequest_interval = 0',
        '[notifications]\noperator = "ops@sakura.example"\nshop_name = "Sakura Stationery"\n'
        # The CLI's mechanics: news is sent as soon as it is seen (the settle window: test_settle).
        'outbox_dir = "eml"\nmax_event_age = "3650d"\nsettle = "0s"',
    ]
    if smtp is not None:
        lines.append(
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\nfrom = "Sakura <shop@sakura.example>"\nallow_example_identity = true'
        )
    config = tmp_path / "notifier.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["--config", str(config)]


def parsed(server: SmtpServer) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=email.policy.default) for m in server.messages]


def test_watch_poll_send_in_each_language(
    db_url: str, tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    journeys = builtin_journeys()
    ems, yupack = journeys[0], journeys[1]
    simulator = Simulator(journeys)
    simulator.reveal(ems.number, 3)  # departed Japan
    simulator.reveal(yupack.number, 1)
    with SimulatorServer(simulator) as jp:
        opts = write_config(tmp_path, db_url, jp.base_url, smtp)
        assert main(["db", "upgrade", *opts]) == 0
        assert (
            main(["watch", ems.number, "--label", "Order 1001", "--subscriber", "alice@example.com", *opts])
            == 0
        )
        assert (
            main(
                [
                    "watch",
                    yupack.number,
                    "--label",
                    "注文 42",
                    "--subscriber",
                    "hanako@example.jp",
                    "--locale",
                    "ja",
                    *opts,
                ]
            )
            == 0
        )
        assert main(["watch", "EJ12345678", "--subscriber", "x@example.com", *opts]) == 2
        assert main(["poll", ems.number, yupack.number, *opts]) == 0
        assert "1 message(s) queued" in capsys.readouterr().out
        simulator.reveal(yupack.number, 5)  # absence: attempted delivery
        assert main(["poll", ems.number, yupack.number, *opts]) == 0
        assert main(["outbox", "send", *opts]) == 0
        assert "sent 2 via SMTP" in capsys.readouterr().out
        assert main(["outbox", "send", *opts]) == 0  # nothing twice
        assert "sent 0" in capsys.readouterr().out
    messages = parsed(smtp)
    assert [(m["To"], m["Content-Language"], m["X-Notifier-Stage"]) for m in messages] == [
        ("alice@example.com", "en", "departed_origin"),
        ("hanako@example.jp", "ja", "attempted_delivery"),
    ]
    assert "Order 1001" in messages[0]["Subject"]
    assert messages[0]["X-Notifier-Tracking-Number"] == ems.number
    japanese = messages[1].get_body(preferencelist=("plain",))
    assert japanese is not None
    assert "再配達" in japanese.get_content()
    assert main(["outbox", "--json", *opts]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {item["state"] for item in listed} == {"sent"}


def test_unsubscribe_is_checked_at_send_time(db_url: str, tmp_path: Path, smtp: SmtpServer) -> None:
    journey = builtin_journeys()[0]
    simulator = Simulator([journey])
    simulator.reveal(journey.number, 3)
    with SimulatorServer(simulator) as jp:
        opts = write_config(tmp_path, db_url, jp.base_url, smtp)
        assert main(["db", "upgrade", *opts]) == 0
        assert main(["watch", journey.number, "--subscriber", "alice@example.com", *opts]) == 0
        assert main(["poll", journey.number, *opts]) == 0
        assert main(["unsubscribe", "ALICE@example.com", *opts]) == 0  # queued before, stopped now
        assert main(["outbox", "send", *opts]) == 0
        assert smtp.messages == []
        assert main(["resubscribe", "alice@example.com", *opts]) == 0
        assert main(["unsubscribe", "not an address", *opts]) == 2


def test_failed_messages_can_be_shown_and_retried(
    db_url: str, tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    journey = builtin_journeys()[0]
    simulator = Simulator([journey])
    simulator.reveal(journey.number, 3)
    with SimulatorServer(simulator) as jp:
        opts = write_config(tmp_path, db_url, jp.base_url, smtp)
        assert main(["db", "upgrade", *opts]) == 0
        assert main(["watch", journey.number, "--subscriber", "alice@example.com", *opts]) == 0
        assert main(["poll", journey.number, *opts]) == 0
    smtp.faults.rcpt_reply = "550 5.1.1 No such user"
    assert main(["outbox", "send", *opts]) == 1
    capsys.readouterr()
    assert main(["outbox", "--state", "failed", "--json", *opts]) == 0
    (failed,) = json.loads(capsys.readouterr().out)
    assert "550" in failed["last_error"]
    assert main(["outbox", "show", str(failed["id"]), *opts]) == 0
    shown = capsys.readouterr().out
    assert failed["message_id"] in shown
    assert "Japan" in shown  # the decoded text body
    smtp.faults.rcpt_reply = None
    assert main(["outbox", "retry", *opts]) == 0
    assert main(["outbox", "send", *opts]) == 0
    delivered = {m["To"]: m for m in parsed(smtp)}
    assert (
        delivered["alice@example.com"]["Message-ID"] == failed["message_id"]
    )  # the same message, not a new one
    # The operator hears about the failure in the daily digest.
    digest = delivered["ops@sakura.example"].get_body(preferencelist=("plain",))
    assert digest is not None
    assert "550" in digest.get_content()


def test_preview_renders_any_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "retention.html"
    assert main(["preview", "--stage", "retention", "--locale", "ja", "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Subject: ")
    assert "保管" in text
    assert 'lang="ja"' in out.read_text(encoding="utf-8")
    assert main(["preview", "--template", "operator_digest"]) == 0


def test_test_email_over_smtp_and_to_files(
    tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = write_config(tmp_path, "sqlite:///unused.db", "http://127.0.0.1:9", smtp)
    assert main(["test-email", "me@example.com", *opts]) == 0
    assert "sent <" in capsys.readouterr().out
    (message,) = parsed(smtp)
    assert message["X-Notifier-Rule"] == "test"
    assert message["From"] == "Sakura <shop@sakura.example>"
    files_opts = write_config(tmp_path, "sqlite:///unused.db", "http://127.0.0.1:9", None)
    assert main(["test-email", "me@example.com", *files_opts]) == 0
    (eml,) = (tmp_path / "eml").glob("*.eml")
    assert email.message_from_bytes(eml.read_bytes())["To"] == "me@example.com"
    assert main(["test-email", "me@@example.com", *files_opts]) == 2


def test_watch_refuses_bad_zone_and_destination_and_unwatch_keeps_history(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = write_config(tmp_path, db_url, "http://127.0.0.1:9", None)
    assert main(["db", "upgrade", *opts]) == 0
    assert (
        main(["watch", "EJ202603021JP", "--subscriber", "z@example.com", "--time-zone", "Tokyo", *opts]) == 2
    )
    assert "IANA time zone" in capsys.readouterr().err
    assert main(["watch", "EJ202603021JP", "--destination", "USA", *opts]) == 2
    assert main(["watch", "EJ202603021JP", "--time-zone", "Asia/Tokyo", "--destination", "us", *opts]) == 0
    assert main(["unwatch", "EJ202603021JP", *opts]) == 0
    assert "history is kept" in capsys.readouterr().out
    assert main(["status", "--json", *opts]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["unwatch", "EJ271828189JP", *opts]) == 1


def test_preview_and_test_email_speak_for_the_configured_shop(
    tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = write_config(tmp_path, "sqlite:///unused.db", "http://127.0.0.1:9", smtp)
    assert main(["preview", "--stage", "delivered", *opts]) == 0
    text = capsys.readouterr().out
    assert "Sakura Stationery" in text  # the configured shop_name
    assert "mailto:ops@sakura.example" in text  # the configured unsubscribe (default: the operator)
    assert main(["test-email", "me@example.com", *opts]) == 0
    (message,) = parsed(smtp)
    assert message["List-Unsubscribe"] == "<mailto:ops@sakura.example?subject=unsubscribe%20me%40example.com>"


def test_relative_sqlite_path_is_beside_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from notifier.config import load_settings

    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "n.toml"
    config.write_text('[database]\nurl = "sqlite:///state/n.db"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(str(config)).database.url == f"sqlite:///{tmp_path / 'etc' / 'state' / 'n.db'}"


def test_a_message_that_cannot_be_built_fails_alone_with_one_alert(
    db_url: str, tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    first = builtin_journeys()[0]
    second = dataclasses.replace(first, number="EJ314159268JP")  # another EMS on the same route
    simulator = Simulator([first, second])
    simulator.reveal(first.number, 3)
    simulator.reveal(second.number, 3)
    # The operator's own Japanese subject expects every label to hold a "#".
    override = tmp_path / "tpl" / "ja"
    override.mkdir(parents=True)
    (override / "departed_origin.subject.j2").write_text(
        "{{ shop_name }}: {{ label.split('#')[1] }}\n", encoding="utf-8"
    )
    with SimulatorServer(simulator) as jp:
        opts = write_config(tmp_path, db_url, jp.base_url, smtp)
        config = Path(opts[1])
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                "[notifications]\n", '[notifications]\ntemplates = "tpl"\n'
            ),
            encoding="utf-8",
        )
        assert main(["db", "upgrade", *opts]) == 0
        for number, label in ((first.number, "Order 1001"), (second.number, "Order #1002")):
            assert (
                main(["watch", number, "--label", label, "--subscriber", f"{number}@example.com", *opts]) == 0
            )
            assert (
                main(
                    [
                        "watch",
                        number,
                        "--label",
                        label,
                        "--subscriber",
                        "hanako@example.jp",
                        "--locale",
                        "ja",
                        *opts,
                    ]
                )
                == 0
            )
        assert main(["poll", first.number, second.number, *opts]) == 0
        polled = capsys.readouterr().out
        assert polled.count("stage departed_origin, 2 message(s) queued") == 2
        assert main(["outbox", "send", *opts]) == 0
        # Three customers, and the operator's digest with the alert.
        assert "queued 1 timed message(s); sent 4 via SMTP" in capsys.readouterr().out
        # Polled again later: the history was committed, so nothing is new and nothing repeats.
        assert main(["poll", first.number, *opts]) == 0
        assert "0 new event(s), stage departed_origin" in capsys.readouterr().out
        assert main(["history", first.number, *opts]) == 0
        assert "departed_origin" in capsys.readouterr().out
        assert main(["outbox", "--state", "failed", "--json", *opts]) == 0
        (failed,) = json.loads(capsys.readouterr().out)
        assert (failed["recipient"], failed["number"]) == ("hanako@example.jp", first.number)
        assert "departed_origin.subject.j2, line 1: UndefinedError" in failed["last_error"]
        assert main(["alerts", "--json", *opts]) == 0
        (alert,) = json.loads(capsys.readouterr().out)
        assert (alert["kind"], alert["subject"], alert["count"]) == (
            "message_build_failed",
            "ja/departed_origin",
            1,
        )
        assert "hanako@example.jp" in alert["message"]
        assert "departed_origin.subject.j2, line 1" in alert["message"]
        # There are no bytes to send again; the command says so instead of queueing nothing.
        assert main(["outbox", "retry", *opts]) == 0
        retried = capsys.readouterr()
        assert "0 failed message(s) queued again" in retried.out
        assert f"not queued: {failed['id']}: never built" in retried.err
        assert main(["outbox", "show", str(failed["id"]), *opts]) == 0
        assert "never built" in capsys.readouterr().out
    delivered = sorted((m["To"], m["Content-Language"]) for m in parsed(smtp))
    assert delivered == sorted(
        [
            (f"{first.number}@example.com", "en"),
            (f"{second.number}@example.com", "en"),
            ("hanako@example.jp", "ja"),
            ("ops@sakura.example", "en"),
        ]
    )
    (digest,) = [m for m in parsed(smtp) if m["To"] == "ops@sakura.example"]
    body = digest.get_body(preferencelist=("plain",))
    assert body is not None
    assert "could not be built" in body.get_content()
    (japanese,) = [m for m in parsed(smtp) if m["Content-Language"] == "ja"]
    assert japanese["Subject"] == "Sakura Stationery: 1002"


def test_test_email_to_an_unsubscribed_address_sends_nothing_and_says_so(
    db_url: str, tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = write_config(tmp_path, db_url, "http://127.0.0.1:9", smtp)
    assert main(["db", "upgrade", *opts]) == 0
    assert main(["unsubscribe", "me@example.com", *opts]) == 0
    capsys.readouterr()
    assert main(["test-email", "Me@Example.com", *opts]) == 1
    said = capsys.readouterr()
    assert "nothing sent: Me@example.com is unsubscribed" in said.err
    assert "notifier resubscribe" in said.err
    assert said.out == ""
    assert smtp.messages == []
    assert main(["resubscribe", "me@example.com", *opts]) == 0
    assert main(["test-email", "me@example.com", *opts]) == 0
    assert len(smtp.messages) == 1


def test_a_login_without_its_password_blocks_sending_commands_only(tmp_path: Path) -> None:
    """Beside a systemd service, root has the config but not the service's credential: reading
    commands work, and whatever would send says why it cannot."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n'
        '[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\nfrom = "Shop <shop@example.com>"\n'
        'username = "shop"\nallow_example_identity = true\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "CREDENTIALS_"))}

    def notifier(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "notifier", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )

    # `config check` runs run's start-up checks: it says what run would refuse, in run's words.
    check = notifier("config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"run would refuse: {config}:8: smtp.username: needs a password" in check.stderr
    assert notifier("db", "upgrade").returncode == 0
    for reading in (("status",), ("alerts",), ("outbox",)):
        result = notifier(*reading)
        assert result.returncode == 0, (reading, result.stderr)
    for sending in (("test-email", "ops@example.com"), ("outbox", "send"), ("run",)):
        result = notifier(*sending)
        assert result.returncode == 2, (sending, result.stdout, result.stderr)
        assert f"{config}:8: smtp.username: needs a password" in result.stderr, (sending, result.stderr)
        assert "Traceback" not in result.stderr


def test_the_configured_shop_phone_is_in_the_footer_and_none_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = write_config(tmp_path, "sqlite:///unused.db", "http://127.0.0.1:9", None)
    html = tmp_path / "m.html"
    assert main(["preview", "--stage", "delivered", "--html", str(html), *opts]) == 0
    assert "tel:" not in html.read_text(encoding="utf-8").split("Questions?")[-1]  # no phone configured
    capsys.readouterr()
    config = Path(opts[1])
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'shop_name = "Sakura Stationery"',
            'shop_name = "Sakura Stationery"\nshop_phone = "+81 3-1234-5678"',
        ),
        encoding="utf-8",
    )
    assert main(["preview", "--stage", "delivered", "--html", str(html), *opts]) == 0
    assert "+81 3-1234-5678" in capsys.readouterr().out
    assert 'href="tel:+81312345678"' in html.read_text(encoding="utf-8")


def test_send_says_what_it_leaves_waiting_for_the_settle_window(
    db_url: str, tmp_path: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`poll` then `outbox send` by hand: news held for the settle window is named, with when it
    goes, instead of a bare "sent 0" that reads as "nothing to send"."""
    ems = builtin_journeys()[0]
    simulator = Simulator([ems])
    simulator.reveal(ems.number, 3)  # departed Japan: news that waits for the next scan
    with SimulatorServer(simulator) as jp:
        opts = write_config(tmp_path, db_url, jp.base_url, smtp)
        config = Path(opts[1])
        config.write_text(config.read_text(encoding="utf-8").replace('settle = "0s"', ""), encoding="utf-8")
        assert main(["db", "upgrade", *opts]) == 0
        assert main(["watch", ems.number, "--subscriber", "alice@example.com", *opts]) == 0
        assert main(["poll", ems.number, *opts]) == 0
        capsys.readouterr()
        assert main(["outbox", "send", *opts]) == 0
        out = capsys.readouterr().out
    assert "sent 0 via SMTP" in out
    waiting = re.search(r"^waiting: 1 for the settle window \(first at (\S+ \S+)Z\)", out, re.M)
    assert waiting, out
    assert f"`notifier outbox --config {config}` lists them" in out
    assert smtp.messages == []
