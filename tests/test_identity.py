"""The shop's identity: with [smtp], `config check` and `run` refuse the example shop and reserved domains."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from notifier.core.identity import reserved_domain
from notifier.core.rules import DEFAULT_RULES
from tests.example_shop import EXAMPLE, SHOP_DOMAIN, made_own, marked_lines
from tests.smtp_server import SmtpServer


def notifier(config: Path, *args: str, password: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "CREDENTIALS_"))}
    if password:  # the example names a login; its password is not the point
        env["NOTIFIER_SMTP_PASSWORD"] = "s3cret"
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def example(tmp_path: Path, text: str | None = None) -> Path:
    """config.example.toml with only its paths moved under tmp_path (as on a machine without /var/lib/notifier)."""
    text = EXAMPLE.read_text(encoding="utf-8") if text is None else text
    config = tmp_path / "config.toml"
    config.write_text(text.replace("/var/lib/notifier", str(tmp_path)), encoding="utf-8")
    return config


def test_the_example_shop_is_refused_with_smtp_on_exactly_the_marked_lines(tmp_path: Path) -> None:
    config = example(tmp_path)
    check = notifier(config, "config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    refused = re.findall(
        rf"^(?:notifier config: )?{re.escape(str(config))}:(\d+): ([\w.]+): (.*)$", check.stderr, re.M
    )
    keys = {key for _, key, _ in refused}
    assert keys == {
        "smtp.host",
        "smtp.from",
        "notifications.operator",
        "notifications.reply_to",
        "notifications.unsubscribe",
        "notifications.shop_name",
        "notifications.shop_phone",
    }, check.stderr
    # Every refused line is one the example's comments tell every shop to change.
    assert {int(line) for line, _, _ in refused} <= marked_lines(EXAMPLE.read_text(encoding="utf-8"))
    assert "smtp.from: Sakura Stationery <shop@sakura.example> is on .example" in check.stderr
    # Not customer-facing, but mail would be lost: no relay answers there, alerts reach nobody.
    assert "smtp.host: smtp.example.com is on example.com, a domain reserved for examples" in check.stderr
    assert "notifications.operator: ops@sakura.example is on .example" in check.stderr
    assert "operator alerts and the daily digest would reach nobody" in check.stderr
    assert "allow_example_identity" in check.stderr  # the way out for a trial is named
    run = notifier(config, "run")
    assert run.returncode == 2, run.stderr
    for line, key, message in refused:
        assert f"invalid configuration: {config}:{line}: {key}: {message}" in run.stderr


def test_the_example_made_the_shops_own_is_valid_and_sends_exactly_the_default_rules(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    config = example(tmp_path, made_own(text))
    check = notifier(config, "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"from Sakura Bungu <shop@{SHOP_DOMAIN}>" in check.stdout
    rules_on = re.search(r"^rules on: (.*)$", check.stdout, re.M)
    assert rules_on is not None, check.stdout
    enabled = set(rules_on.group(1).split(", "))
    assert enabled == {rule.name for rule in DEFAULT_RULES if rule.enabled}
    # ...which is what the example's own comment says is on.
    documented = re.search(r"# Rules\. .*?: (.*?) \(on\)", text, re.S)
    assert documented is not None
    assert enabled == {
        name.strip() for name in re.split(r",|\band\b", documented.group(1).replace("#", "")) if name.strip()
    }


def smtp_config(tmp_path: Path, smtp: str, notifications: str, extra: str = "") -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n'
        f"[smtp]\n{smtp}\n[notifications]\n{notifications}\n{extra}"
        '[[watch]]\nnumber = "EJ123456785JP"\nsubscribers = ["customer@example.com"]\n',
        encoding="utf-8",
    )
    return config


def test_an_unsubscribe_that_defaults_to_an_example_operator_is_refused(tmp_path: Path) -> None:
    relay = 'host = "smtp.sakura-bungu.jp"\nfrom = "Sakura <shop@sakura-bungu.jp>"'
    config = smtp_config(tmp_path, relay, 'operator = "ops@shop.example.org"')
    check = notifier(config, "config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"{config}:7: notifications.operator: ops@shop.example.org is on example.org" in check.stderr
    assert "List-Unsubscribe defaults to mailto: the operator" in check.stderr
    # With its own unsubscribe address the operator's is no customer's business, but alerts and
    # the digest sent there would reach nobody: still refused, for that reason.
    own = 'unsubscribe = "mailto:unsubscribe@sakura-bungu.jp"'
    config = smtp_config(tmp_path, relay, f'operator = "ops@shop.example.org"\n{own}')
    check = notifier(config, "config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "ops@shop.example.org is on example.org" in check.stderr
    assert "operator alerts and the daily digest would reach nobody" in check.stderr
    assert "List-Unsubscribe defaults" not in check.stderr
    config = smtp_config(tmp_path, relay, f'operator = "ops@sakura-bungu.jp"\n{own}')
    check = notifier(config, "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_links_to_a_reserved_or_loopback_public_url_are_refused_with_smtp(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("a secret long enough to sign links\n")
    relay = 'host = "smtp.sakura-bungu.jp"\nfrom = "Sakura <shop@sakura-bungu.jp>"'
    for url, why in (("https://track.shop.test", "is on .test"), ("http://localhost:8080", "loopback")):
        http = f'[http]\nlisten = "127.0.0.1:8080"\npublic_url = "{url}"\nsecret_file = "secret"\n'
        config = smtp_config(tmp_path, relay, 'shop_name = "Sakura"', http)
        check = notifier(config, "config", "check")
        assert check.returncode == 2, check.stdout + check.stderr
        assert f"{config}:10: http.public_url: {url} " in check.stderr
        assert why in check.stderr


def test_without_smtp_the_example_identity_is_fine(tmp_path: Path) -> None:
    """Mail written to .eml files reaches no customer: trials need not invent a shop."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start, end = text.index("\n[smtp]"), text.index("\n[notifications]\n")
    config = example(tmp_path, text[:start] + text[end:])
    check = notifier(config, "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "mail: no [smtp]" in check.stdout


def test_a_trial_against_a_local_test_relay_may_opt_out_loudly_and_only_there(tmp_path: Path) -> None:
    trial = 'host = "127.0.0.1"\nport = 2525\nsecurity = "none"\nfrom = "Sakura <shop@sakura.example>"\n'
    config = smtp_config(tmp_path, trial + "allow_example_identity = true", 'operator = "ops@sakura.example"')
    check = notifier(config, "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "note: [smtp] allow_example_identity = true" in check.stdout
    # `run` says so at every start (here it then stops: the database was never upgraded).
    started = notifier(config, "run")
    assert started.returncode == 3, started.stderr
    assert (
        "WARNING notifier.daemon.service: [smtp] allow_example_identity = true: mail may go out as a placeholder shop"
        in started.stderr
    )
    # A relay elsewhere delivers to customers: the opt-out does not count there.
    remote = trial.replace('"127.0.0.1"', '"smtp.sakura-bungu.jp"').replace('"none"', '"starttls"')
    config = smtp_config(
        tmp_path, remote + "allow_example_identity = true", 'operator = "ops@sakura.example"'
    )
    check = notifier(config, "config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert (
        f"{config}:8: smtp.allow_example_identity: is only for a test relay on this machine" in check.stderr
    )
    assert f"{config}:7: smtp.from: Sakura <shop@sakura.example> is on .example" in check.stderr


def test_reserved_names() -> None:
    for host in (
        "sakura.example",
        "EXAMPLE.COM",
        "a.b.example.net",
        "example.org.",
        "x.test",
        "y.invalid",
        "localhost",
        "127.0.0.2",
        "[::1]",
    ):
        assert reserved_domain(host) is not None, host
    for host in (
        "sakura-bungu.jp",
        "example.co.jp",
        "myexample.com",
        "examples.org",
        "testing.jp",
        "192.0.2.1",
    ):
        assert reserved_domain(host) is None, host


# --- `config check` runs every check `run` makes before it is ready ---------------------------


def test_config_check_says_what_run_would_refuse_in_runs_words(tmp_path: Path) -> None:
    """Each of these read without errors but cannot start: `config check` says so and exits 2,
    with the very line `run` logs."""
    missing = tmp_path / "nowhere" / "notifier.db"
    cases = {
        "database folder": f'[database]\nurl = "sqlite:///{missing}"\n',
        "login without a password": (
            f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n[smtp]\nhost = "smtp.sakura-bungu.jp"\n'
            'from = "Sakura <shop@sakura-bungu.jp>"\nusername = "shop@sakura-bungu.jp"\n'
        ),
        "web face without its secret": (
            f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n[http]\nlisten = "127.0.0.1:8080"\n'
            'public_url = "https://track.sakura-bungu.jp"\n'
        ),
    }
    expected = {
        "database folder": f"the folder {missing.parent} of database {missing} does not exist: create it",
        "login without a password": "c.toml:6: smtp.username: needs a password",
        "web face without its secret": "c.toml:3: http: needs a secret",
    }
    config = tmp_path / "c.toml"
    for case, text in cases.items():
        config.write_text(text, encoding="utf-8")
        check = notifier(config, "config", "check", password=False)
        assert check.returncode == 2, (case, check.stdout, check.stderr)
        assert "is valid" not in check.stdout, case
        refusals = re.findall(r"^run would refuse: (.*)$", check.stderr, re.M)
        assert len(refusals) == 1, (case, check.stderr)
        assert expected[case] in refusals[0], (case, check.stderr)
        started = notifier(config, "run", password=False)
        assert started.returncode == 2, (case, started.stderr)
        assert f"invalid configuration: {refusals[0]}" in started.stderr, (case, started.stderr)
        assert not missing.parent.exists()


# --- a login configured for a relay that offers none --------------------------------------------


def test_a_relay_without_auth_is_named_and_the_login_keys_to_remove_too(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("pw\n", encoding="utf-8")
    with SmtpServer() as server:  # aiosmtpd without an authenticator advertises no AUTH
        config = tmp_path / "c.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n[smtp]\nhost = "127.0.0.1"\n'
            f'port = {server.port}\nsecurity = "none"\nfrom = "Sakura <shop@sakura-bungu.jp>"\n'
            'username = "shop"\npassword_file = "smtp-password"\n',
            encoding="utf-8",
        )
        assert notifier(config, "db", "upgrade", password=False).returncode == 0
        sent = notifier(config, "test-email", "ops@sakura-bungu.jp", password=False)
        assert sent.returncode == 1, sent.stdout + sent.stderr
        assert "refused our login" not in sent.stderr
        assert "the server offers no login (AUTH is not in its EHLO reply" in sent.stderr
        assert (
            f"smtp.username is set ({config}:8): remove smtp.username and smtp.password_file" in sent.stderr
        )
        assert server.messages == []
        assert server.handler.verbs() == ["EHLO"]
