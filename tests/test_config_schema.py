"""Settings are declared once and checked by the walker; parse(snapshot) does no I/O at all."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from notifier.config import ConfigError, Snapshot, gather, parse, parse_settings
from notifier.config.keys import DECLARED, KEYS
from notifier.config.schema import Kind

# Every kind refuses an inline table with a key no kind knows: a table where it wants a value,
# a list or a duration; an unknown stage or an unknown key where it wants a table.
REFUSED = "{ bogus = 1 }"


class IOAttemptedError(BaseException):
    """Raised by every I/O entry point while parse runs."""


def test_every_declared_key_has_a_kind_of_its_own() -> None:
    for key in KEYS:
        assert isinstance(key.kind, Kind), key
        assert type(key.kind).parse is not Kind.parse, f"{key.section}.{key.name} has no check"
        assert key.shown_type, key
        assert key.doc, key


def _config_refusing_every_key() -> str:
    """Every declared key set to REFUSED, in its table (the arrays of tables: one entry each)."""
    lines: list[str] = []
    for section in DECLARED.sections:
        header = f"[[{section}]]" if section in ("watch", "notifications.rule") else f"[{section}]"
        lines.append(header)
        lines += [f"{key.name} = {REFUSED}" for key in DECLARED.by_section[section]]
        lines.append("")
    # notifications.rule = {...} and [[notifications.rule]] cannot share a file.
    return "\n".join(line for line in lines if line != f"rule = {REFUSED}")


def test_every_declared_key_is_checked_by_the_walker_through_parse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_config_refusing_every_key(), tmp_path / "c.toml")
    message = str(info.value)
    for key in KEYS:
        section = {"watch": "watch[0]", "notifications.rule": "notifications.rule[0]"}.get(
            key.section, key.section
        )
        if (key.section, key.name) == ("notifications", "rule"):
            continue  # below: an array of tables cannot be an inline table in the same file
        assert f": {section}.{key.name}" in message, f"{key.section}.{key.name} is not checked:\n{message}"
    with pytest.raises(ConfigError, match=r"notifications\.rule: must be an array of tables"):
        parse_settings(f"[notifications]\nrule = {REFUSED}\n", tmp_path / "c.toml")


def test_a_key_that_is_not_declared_is_refused_in_every_table(tmp_path: Path) -> None:
    text = "\n".join(
        f"[[{s}]]\nnumber = 'EJ123456785JP'\nbogus = 1\n" if s == "watch" else f"[{s}]\nbogus = 1\n"
        for s in DECLARED.sections
        if s != "notifications.rule"
    )
    text += "[[notifications.rule]]\nname = 'x'\nbogus = 1\n"
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "c.toml")
    assert "unknown key" not in str(info.value).replace(".bogus: unknown key", "")
    for section in DECLARED.sections:
        shown = {"watch": "watch[0]", "notifications.rule": "notifications.rule[0]"}.get(section, section)
        assert f"{shown}.bogus: unknown key" in str(info.value)


@pytest.fixture
def rich_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config that reads everything a config can: secret files, the environment, a systemd
    credential, a templates folder, a CA file, watch files with time zones, a relative database."""
    (tmp_path / "smtp-password").write_text("hunter2hunter2\n", encoding="utf-8")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    (tmp_path / "templates").mkdir()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "http-admin-password").write_text("a board password\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("NOTIFIER_HTTP_SECRET", "s" * 32)
    (tmp_path / "watch.d").mkdir()
    (tmp_path / "watch.d" / "a.toml").write_text(
        '[[watch]]\nnumber = "EJ123456785JP"\ntime_zone = "America/New_York"\nsubscribers = ["a@b.jp"]\n',
        encoding="utf-8",
    )
    config = tmp_path / "notifier.toml"
    config.write_text(
        """
[database]
url = "sqlite:///data/notifier.db"

[smtp]
host = "127.0.0.1"
from = "Shop <shop@sakura-bungu.jp>"
username = "shop"
password_file = "smtp-password"
ca_file = "ca.pem"

[http]
listen = "127.0.0.1:8080"
public_url = "https://track.sakura-bungu.jp"

[notifications]
operator = "ops@sakura-bungu.jp"
templates = "templates"
quiet_hours = "21:00-08:00"
default_time_zone = "Asia/Tokyo"

[polling]
watch_files = ["watch.d/*.toml"]

[[watch]]
number = "EJ000000014JP"
time_zone = "Europe/Paris"
""",
        encoding="utf-8",
    )
    return config


class _NoEnvironment(dict[str, str]):
    def __init__(self, attempts: list[str]) -> None:
        super().__init__()
        self.attempts = attempts

    def _refuse(self, what: str) -> NoReturn:
        self.attempts.append(what)
        raise IOAttemptedError(what)

    def __getitem__(self, key: str) -> NoReturn:
        self._refuse(f"os.environ[{key!r}]")

    def get(self, key: str, default: Any = None) -> NoReturn:
        self._refuse(f"os.environ.get({key!r})")

    def __contains__(self, key: object) -> NoReturn:
        self._refuse(f"{key!r} in os.environ")


@contextlib.contextmanager
def forbidding_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """open(), os.environ and the filesystem calls under pathlib, glob and zoneinfo all raise,
    and are listed in the list it yields."""
    attempts: list[str] = []

    def forbidden(name: str) -> Any:
        def call(*args: object, **kwargs: object) -> NoReturn:
            attempts.append(f"{name}{args}")
            raise IOAttemptedError(f"{name}{args}")

        return call

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", forbidden("open"))
        patch.setattr(io, "open", forbidden("io.open"))
        for name in ("open", "stat", "lstat", "scandir", "listdir", "getcwd", "access", "readlink"):
            patch.setattr(os, name, forbidden(f"os.{name}"))
        patch.setattr(os, "environ", _NoEnvironment(attempts))
        yield attempts


def test_parse_of_a_snapshot_does_no_io(rich_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = gather(rich_config.read_text(encoding="utf-8"), rich_config)
    expected = parse(snapshot)
    assert expected.smtp is not None
    assert expected.smtp.password == "hunter2hunter2"
    assert expected.http is not None
    assert expected.http.admin_password is not None
    assert [w.time_zone for w in expected.watches] == ["Europe/Paris", "America/New_York"]
    assert expected.database.url == f"sqlite:///{rich_config.parent / 'data' / 'notifier.db'}"
    with forbidding_io(monkeypatch) as attempts:
        again = parse(snapshot)
    assert attempts == []
    # Equal but for the password hash, whose salt is new each time it is derived.
    assert again.http is not None
    assert again.http.admin_password is not None
    assert again.http.admin_password.matches("a board password")
    assert (again.smtp, again.watches, again.notifications, again.polling, again.database) == (
        expected.smtp,
        expected.watches,
        expected.notifications,
        expected.polling,
        expected.database,
    )


def test_parse_does_no_io_even_for_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    # Built by hand, not gathered: the folder, the secret and the zone are not in the snapshot.
    text = (
        '[notifications]\ntemplates = "nowhere"\ndefault_time_zone = "Asia/Tokyo"\n'
        '[smtp]\nhost = "127.0.0.1"\nfrom = "a@sakura-bungu.jp"\npassword_file = "pw"\n'
    )
    snapshot = Snapshot(text=text, where="c.toml", base=Path("/etc/notifier"), data=_toml(text))
    with forbidding_io(monkeypatch) as attempts, pytest.raises(ConfigError) as info:
        parse(snapshot)
    assert attempts == []
    message = str(info.value)
    assert "c.toml:2: notifications.templates: /etc/notifier/nowhere is not a directory" in message
    assert "c.toml:3: notifications.default_time_zone: 'Asia/Tokyo' is not an IANA time zone" in message
    assert "c.toml:7: smtp.password_file: cannot read /etc/notifier/pw" in message


def test_parse_of_text_that_is_not_toml_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = Snapshot(text="[x", where="c.toml", toml_error="c.toml:1: Expected ']'")
    with forbidding_io(monkeypatch) as attempts, pytest.raises(ConfigError, match=r"c\.toml:1: "):
        parse(snapshot)
    assert attempts == []


def _toml(text: str) -> dict[str, Any]:
    return tomllib.loads(text)
