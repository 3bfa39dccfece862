"""Config files: the example loads, every problem is named with file, line and key, secrets stay out."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from notifier.config import load_settings, parse_duration, parse_settings, sending_smtp
from notifier.core.messages import Template
from notifier.core.rules import DEFAULT_RULES, Baseline, MultiStage
from notifier.core.stages import Stage
from notifier.errors import ConfigError
from tests.example_shop import SHOP_DOMAIN, made_own

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def test_example_config_loads_completely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the packaged unit runs it: the password is the systemd credential, not a file the
    # example names.
    text = made_own(EXAMPLE.read_text(encoding="utf-8"))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("s3cret\n")
    monkeypatch.delenv("NOTIFIER_SMTP_PASSWORD", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = parse_settings(text, tmp_path / "config.toml")
    assert settings.database.url.startswith("sqlite:////var/lib/notifier")
    assert settings.japanpost.request_interval == 5
    assert settings.japanpost.budget == "shared"
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == (
        f"smtp.{SHOP_DOMAIN}",
        587,
        "starttls",
    )
    assert settings.smtp.password == "s3cret"
    assert "s3cret" not in repr(settings)
    n = settings.notifications
    assert n.operator == f"ops@{SHOP_DOMAIN}"
    assert n.quiet_hours == (dt.time(21), dt.time(8))
    assert n.rules.baseline is Baseline.CURRENT
    assert n.rules.multi_stage is MultiStage.LATEST
    assert n.rules.stalls[Stage.DEPARTED_ORIGIN].after == dt.timedelta(days=10)
    # The rule blocks are commented-out examples: as shipped, exactly the default rules.
    assert n.rules.rules == DEFAULT_RULES
    assert [w.number for w in settings.watches] == ["EJ123456785JP", "123456789012"]
    assert settings.watches[1].locale == "ja"
    assert settings.watches[0].tags == frozenset({"vip"})
    assert settings.polling.intervals[Stage.OUT_FOR_DELIVERY] == dt.timedelta(minutes=30)
    assert settings.poll_tick == 15


COMMENTED_KEY = re.compile(r"^# ?((?:\[\[?[\w.]+\]\]?)|[A-Za-z_][\w.-]*\s*=.*)$")


def test_every_commented_key_in_the_example_can_be_uncommented(tmp_path: Path) -> None:
    """Each `# key = value` (and `# [table]`) line of the example, uncommented all at once, loads."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    uncommented = [m.group(1) if (m := COMMENTED_KEY.match(line)) else line for line in lines]
    changed = [new for old, new in zip(lines, uncommented, strict=True) if old != new]
    assert len(changed) >= 12, changed  # the polling keys, ca_file, templates, a rule...
    etc = tmp_path / "etc"
    (etc / "templates").mkdir(parents=True)
    (etc / "smtp-password").write_text("s3cret\n")
    (etc / "http-secret").write_text("a secret long enough to sign links\n")
    (etc / "http-admin-password").write_text("an operator board password\n")
    (etc / "api-token").write_text("a token for the JSON API\n")
    (etc / "shopify-secret").write_text("a shopify webhook signing key\n")
    (etc / "woocommerce-secret").write_text("a woocommerce webhook secret\n")
    (etc / "ca.pem").write_text("placeholder: only its existence is checked at load time\n")
    (tmp_path / "watch.d").mkdir()
    (tmp_path / "watch.d" / "orders.toml").write_text('[[watch]]\nnumber = "EE123456785JP"\n')
    text = made_own("\n".join(uncommented)).replace("/etc/notifier/", f"{etc}/")
    text = text.replace("/home/shop/.config/notifier/", f"{etc}/")
    settings = parse_settings(text, tmp_path / "config.toml")
    assert settings.polling.jitter == 0.1
    assert settings.polling.stale_give_up == dt.timedelta(days=60)
    assert settings.polling.fixed_interval == dt.timedelta(seconds=1)
    assert settings.watch_files == (tmp_path / "watch.d" / "orders.toml",)
    assert settings.notifications.templates == etc / "templates"
    assert settings.smtp is not None
    assert settings.smtp.cert_bundle == str(etc / "ca.pem")
    assert Stage.CUSTOMS_PRESENTED not in settings.notifications.rules.stalls
    assert not {rule.name: rule for rule in settings.notifications.rules.rules}["delivered"].enabled
    assert "EE123456785JP" in [w.number for w in settings.watches]
    assert settings.intake.api_token == "a token for the JSON API"
    assert settings.http is not None
    assert (settings.http.listen, settings.http.public_url) == (
        "127.0.0.1:8080",
        f"https://track.{SHOP_DOMAIN}",
    )
    rules = {rule.name: rule for rule in settings.notifications.rules.rules}
    assert rules["accepted"].enabled
    assert rules["accepted"].item_types == frozenset({"ems"})
    assert rules["vip-out-for-delivery"].template is Template.OUT_FOR_DELIVERY
    assert rules["vip-out-for-delivery"].destinations == frozenset({"US", "CA"})
    assert settings.http.secret == "a secret long enough to sign links"
    assert settings.http.admin_password is not None
    assert settings.http.admin_password.matches("an operator board password")
    assert settings.intake.shopify_secret == "a shopify webhook signing key"
    assert settings.intake.woocommerce_secret == "a woocommerce webhook secret"


def test_watchlists_name_file_line_and_key_for_every_problem(tmp_path: Path) -> None:
    (tmp_path / "watch.d").mkdir()
    (tmp_path / "watch.d" / "orders.toml").write_text(
        '[[watch]]\nnumber = "EJ123456785JP"\nlabel = "dup"\n\n[[watch]]\nnumber = "1234"\n', encoding="utf-8"
    )
    text = """[polling]
watch_files = ["watch.d/*.toml"]

[[watch]]
number = "EJ123456785JP"
subscribers = ["a@example.com", "not an address"]
locale = "fr"
colour = "red"

[[watch]]
number = "EL015307998JP"
time_zone = "Mars/Olympus"
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "config.toml")
    message = str(info.value)
    config, orders = tmp_path / "config.toml", tmp_path / "watch.d" / "orders.toml"
    for expected in (
        f"{config}:6: watch[0].subscribers:",
        f"{config}:7: watch[0].locale: must be en or ja",
        f"{config}:8: watch[0].colour: unknown key",
        f"{config}:11: watch[1].number: 'EL015307998JP' is not a valid tracking number: the check digit",
        # A bad number no longer hides the other problems of its [[watch]].
        f"{config}:12: watch[1].time_zone: 'Mars/Olympus' is not an IANA time zone",
        f"{orders}:6: watch[1].number: '1234' is not a valid tracking number",
        f"{orders}:1: watch.number: EJ123456785JP is already watched at {config}:4",
    ):
        assert expected in message, (expected, message)


def test_every_problem_is_reported_at_once_with_line_and_key(tmp_path: Path) -> None:
    text = """[database]
url = "sqlite:///x.db"
[smtp]
host = "mail.example.com"
port = 70000
security = "maybe"
from = "Shop <shop@exa mple.com>"
password = "hunter2"
[notifications]
operator = "not-an-address"
quiet_hours = "late"
colour = "blue"

[[notifications.rule]]
name = "x"
stages = ["teleported"]
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "c.toml")
    message = str(info.value)
    where = tmp_path / "c.toml"
    for expected in (
        f"{where}:5: smtp.port: must be a port number",
        f"{where}:6: smtp.security: must be starttls, tls or none",
        f"{where}:7: smtp.from:",
        f"{where}:8: smtp.password: passwords do not go in the config file",
        f"{where}:10: notifications.operator:",
        f"{where}:11: notifications.quiet_hours:",
        f"{where}:12: notifications.colour: unknown key",
        "notifications.rule[0].stages: not stage names: teleported",
    ):
        assert expected in message, expected


def test_plaintext_smtp_only_to_loopback(tmp_path: Path) -> None:
    text = '[smtp]\nhost = "mail.example.com"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\n'
    with pytest.raises(ConfigError, match=r"smtp\.security"):
        parse_settings(text, tmp_path / "c.toml")
    ok = parse_settings(text.replace("mail.example.com", "127.0.0.1"), tmp_path / "c.toml")
    assert ok.smtp is not None
    assert ok.smtp.port == 25


def test_password_from_environment_or_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\nusername = "u"\n'
    # Loading works without it (status, db backup beside a systemd service); sending does not.
    missing = parse_settings(text)
    with pytest.raises(ConfigError, match="needs a password"):
        sending_smtp(missing)
    monkeypatch.setenv("NOTIFIER_SMTP_PASSWORD", "from-env")
    settings = parse_settings(text)
    assert settings.smtp is not None
    assert settings.smtp.password == "from-env"
    monkeypatch.delenv("NOTIFIER_SMTP_PASSWORD")
    (tmp_path / "smtp-password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = parse_settings(text)
    assert settings.smtp is not None
    assert settings.smtp.password == "from-systemd"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30),
        (1.5, 1.5),
        ("30s", 30),
        ("15m", 900),
        ("6h", 21600),
        ("7d", 604800),
        ("2w", 1209600),
        (" 1 h ", 3600),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == seconds


@pytest.mark.parametrize("value", ["soon", "-1s", True, "5y", [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_environment_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "n.toml"
    config.write_text('[database]\nurl = "sqlite:///from-file.db"\n')
    monkeypatch.setenv("NOTIFIER_CONFIG", str(config))
    assert load_settings(None).database.url == f"sqlite:///{tmp_path / 'from-file.db'}"
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", "sqlite:///from-env.db")
    assert load_settings(None).database.url == "sqlite:///from-env.db"
    assert load_settings(None, database_url="sqlite:///from-flag.db").database.url == "sqlite:///from-flag.db"
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(str(tmp_path / "missing.toml"))


def test_circuit_breaker_settings(tmp_path: Path) -> None:
    settings = parse_settings(
        '[japanpost]\ncircuit_failures = 3\ncircuit_pause = "10s"\ncircuit_pause_max = "5m"\n',
        tmp_path / "c.toml",
    )
    assert settings.japanpost.circuit_failures == 3
    assert settings.japanpost.circuit_pause == dt.timedelta(seconds=10)
    assert settings.japanpost.circuit_pause_max == dt.timedelta(minutes=5)
    defaults = parse_settings("", tmp_path / "d.toml").japanpost
    assert (defaults.circuit_failures, defaults.circuit_pause, defaults.circuit_pause_max) == (
        5,
        dt.timedelta(minutes=1),
        dt.timedelta(minutes=30),
    )
    with pytest.raises(ConfigError) as info:
        parse_settings(
            '[japanpost]\ncircuit_failures = 0\ncircuit_pause = "0s"\ncircuit_pause_max = "soon"\n',
            tmp_path / "e.toml",
        )
    text = str(info.value)
    assert "e.toml:2: japanpost.circuit_failures: must be a whole number from 1 to 1000" in text
    assert "e.toml:3: japanpost.circuit_pause: must be more than 0 seconds" in text
    assert "e.toml:4: japanpost.circuit_pause_max:" in text
    with pytest.raises(ConfigError, match="circuit_pause: must not be longer than"):
        parse_settings('[japanpost]\ncircuit_pause = "2h"\n', tmp_path / "f.toml")


def test_a_watch_files_folder_that_does_not_exist_is_an_error_not_an_empty_watchlist(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[polling]\nwatch_files = ["watch.d/*.toml", "/nowhere/at/all/*.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(str(config))
    text = str(info.value)
    assert (
        f"{config}:2: polling.watch_files: 'watch.d/*.toml': the folder {tmp_path / 'watch.d'} does not exist"
        in text
    )
    assert "the folder /nowhere/at/all does not exist" in text
    (tmp_path / "watch.d").mkdir()
    config.write_text('[polling]\nwatch_files = ["watch.d/*.toml"]\n')
    assert load_settings(str(config)).watch_files == ()  # an empty folder: nothing imported yet


def test_shop_phone(tmp_path: Path) -> None:
    settings = parse_settings('[notifications]\nshop_phone = "+81 3-1234-5678"\n', tmp_path / "c.toml")
    assert settings.notifications.shop_phone == "+81 3-1234-5678"
    assert parse_settings("", tmp_path / "d.toml").notifications.shop_phone == ""
    with pytest.raises(ConfigError, match=r"e.toml:2: notifications.shop_phone: must be a phone number"):
        parse_settings('[notifications]\nshop_phone = "call us!"\n', tmp_path / "e.toml")


def test_branding_settings(tmp_path: Path) -> None:
    text = (
        "[notifications]\n"
        'logo_url = "https://sakura.example/logo.png"\n'
        'brand_color = "#8A1538"\n'
        'shop_url = "https://sakura.example/"\n'
    )
    n = parse_settings(text, tmp_path / "c.toml").notifications
    assert (n.logo_url, n.brand_color, n.shop_url) == (
        "https://sakura.example/logo.png",
        "#8a1538",
        "https://sakura.example/",
    )
    default = parse_settings("", tmp_path / "d.toml").notifications
    assert (default.logo_url, default.brand_color, default.shop_url) == (None, None, None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'brand_color = "#ffcc00"',
            r"e.toml:3: notifications.brand_color: #ffcc00 has a contrast of 1.\d\d:1 against white",
        ),
        ('brand_color = "#777777"', r"e.toml:3: notifications.brand_color: #777777 has a contrast of 4.48:1"),
        ('brand_color = "navy"', r"e.toml:3: notifications.brand_color: must be a colour written #rrggbb"),
        (
            'logo_url = "http://sakura.example/logo.png"',
            r"e.toml:3: notifications.logo_url: must be an https:// URL",
        ),
        ('shop_url = "sakura.example"', r"e.toml:3: notifications.shop_url: must be an https:// URL"),
    ],
)
def test_bad_branding_is_refused_naming_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(f'[notifications]\nshop_name = "Sakura"\n{line}\n', tmp_path / "e.toml")


def test_branding_reaches_the_messages_mail_settings(tmp_path: Path) -> None:
    from notifier.pipeline.wiring import mail_settings

    text = '[notifications]\nbrand_color = "#8a1538"\nshop_url = "https://sakura.example/"\n'
    mail = mail_settings(parse_settings(text, tmp_path / "c.toml"))
    assert (mail.brand_color, mail.shop_url, mail.logo_url) == ("#8a1538", "https://sakura.example/", None)
