"""[http]: where the web face listens, how customers reach it, and where its secret comes from;
every problem names the file, line and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import HttpSettings, Settings, parse_settings, web_secret
from notifier.errors import ConfigError

SECRET = "0123456789abcdef-a-good-secret"


@pytest.fixture(autouse=True)
def no_secret_around(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFIER_HTTP_SECRET", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def http(body: str, tmp_path: Path) -> str:
    return f'[notifications]\nshop_name = "Sakura"\n\n[http]\n{body}'


def settings(body: str, tmp_path: Path) -> Settings:
    return parse_settings(http(body, tmp_path), tmp_path / "notifier.toml")


def served(body: str, tmp_path: Path) -> HttpSettings:
    loaded = settings(body, tmp_path).http
    assert loaded is not None
    return loaded


def problems(body: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(body, tmp_path)
    return str(caught.value)


GOOD = 'listen = "127.0.0.1:8080"\npublic_url = "https://track.sakura.example/"\n'


def test_without_http_nothing_listens(tmp_path: Path) -> None:
    plain = parse_settings('[notifications]\nshop_name = "Sakura"\n', tmp_path / "n.toml")
    assert plain.http is None
    assert web_secret(plain) is None


def test_a_complete_section_with_a_secret_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "http-secret").write_text(SECRET + "\n", encoding="utf-8")
    loaded = settings(GOOD + 'secret_file = "http-secret"\n', tmp_path)
    assert loaded.http == HttpSettings(
        host="127.0.0.1", port=8080, public_url="https://track.sakura.example", secret=SECRET
    )
    assert web_secret(loaded) == SECRET
    assert SECRET not in repr(loaded)
    assert loaded.http is not None
    assert loaded.http.listen == "127.0.0.1:8080"


def test_the_secret_comes_from_the_file_then_the_environment_then_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "http-secret").write_text("from-the-systemd-credential\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert served(GOOD, tmp_path).secret == "from-the-systemd-credential"
    monkeypatch.setenv("NOTIFIER_HTTP_SECRET", "from-the-environment-variable")
    assert served(GOOD, tmp_path).secret == "from-the-environment-variable"
    (tmp_path / "file").write_text("from-the-secret-file-itself", encoding="utf-8")
    assert served(GOOD + 'secret_file = "file"\n', tmp_path).secret == "from-the-secret-file-itself"


def test_no_secret_anywhere_refuses_what_serves_naming_where_it_looked(tmp_path: Path) -> None:
    loaded = settings(GOOD, tmp_path)  # reading commands (status, db backup) still load it
    assert loaded.http_secret_problem is not None
    with pytest.raises(ConfigError) as caught:
        web_secret(loaded)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'notifier.toml'}:4: http: needs a secret")
    for place in ("http.secret_file", "$NOTIFIER_HTTP_SECRET", '"http-secret"', "openssl rand"):
        assert place in message


def test_a_short_secret_is_refused_naming_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_HTTP_SECRET", "short")
    assert "the secret in $NOTIFIER_HTTP_SECRET is 5 characters long; at least 16" in problems(GOOD, tmp_path)
    (tmp_path / "s").write_text("tiny", encoding="utf-8")
    message = problems(GOOD + 'secret_file = "s"\n', tmp_path)
    assert ":7: http.secret_file: the secret in s is 4 characters long" in message


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    message = problems(GOOD + 'secret_file = "missing"\n', tmp_path)
    assert f"http.secret_file: cannot read {tmp_path / 'missing'}" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('listen = "8080"', "http.listen: must be host:port"),
        ('listen = "127.0.0.1:0"', "port 0 is not a port number"),
        ('listen = "127.0.0.1:70000"', "port 70000 is not a port number"),
        ("listen = 8080", "http.listen: must be host:port"),
        ('listen = "::1:8080"', "an IPv6 address in brackets"),
    ],
)
def test_listen_must_be_host_and_port(tmp_path: Path, line: str, expected: str) -> None:
    (tmp_path / "s").write_text(SECRET, encoding="utf-8")
    body = f'{line}\npublic_url = "https://track.example.com"\nsecret_file = "s"\n'
    assert expected in problems(body, tmp_path)
    assert ":5: http.listen" in problems(body, tmp_path)


def test_an_ipv6_listen_address(tmp_path: Path) -> None:
    (tmp_path / "s").write_text(SECRET, encoding="utf-8")
    loaded = served(
        'listen = "[::1]:8443"\npublic_url = "https://t.example.com"\nsecret_file = "s"\n', tmp_path
    )
    assert (loaded.host, loaded.port, loaded.listen) == ("::1", 8443, "[::1]:8443")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://track.example.com", "must be https:"),
        ("ftp://track.example.com", "must be an https: URL"),
        ("https://track.example.com/?a=1", "without a query"),
        ("https://track.example.com/#x", "fragment"),
        ("track.example.com", "must be an https: URL"),
    ],
)
def test_public_url_must_be_https_except_on_this_machine(tmp_path: Path, url: str, expected: str) -> None:
    (tmp_path / "s").write_text(SECRET, encoding="utf-8")
    message = problems(f'listen = "127.0.0.1:8080"\npublic_url = "{url}"\nsecret_file = "s"\n', tmp_path)
    assert ":6: http.public_url: " in message
    assert expected in message


@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.1:9000/", "http://[::1]:8080"])
def test_plain_http_is_allowed_for_localhost_while_testing(tmp_path: Path, url: str) -> None:
    (tmp_path / "s").write_text(SECRET, encoding="utf-8")
    loaded = served(f'listen = "127.0.0.1:8080"\npublic_url = "{url}"\nsecret_file = "s"\n', tmp_path)
    assert loaded.public_url == url.rstrip("/")


def test_required_keys_secrets_in_the_file_and_unknown_keys(tmp_path: Path) -> None:
    message = problems('secret = "do not put me here"\ncolour = "red"\n', tmp_path)
    assert "http.listen: is required in [http]" in message
    assert "http.public_url: is required in [http]" in message
    assert "http.secret: secrets do not go in the config file" in message
    assert "http.colour: unknown key" in message


def test_config_check_reports_the_web_face_and_a_missing_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "n.db"}"\n[http]\n{GOOD}', encoding="utf-8")
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

    check = notifier("config", "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "web face: listening on 127.0.0.1:8080, links to https://track.sakura.example" in check.stdout
    assert f"run would refuse: {config}:3: http: needs a secret" in check.stderr
    assert notifier("db", "upgrade").returncode == 0
    assert notifier("status").returncode == 0
    for serving in (("run",), ("outbox", "send")):
        result = notifier(*serving)
        assert result.returncode == 2, (serving, result.stdout, result.stderr)
        assert f"{config}:3: http: needs a secret" in result.stderr
        assert "Traceback" not in result.stderr
