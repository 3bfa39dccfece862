"""Config loading never fails with anything but a ConfigError naming file, line and key: fuzzed
TOML values and bytes, `config check` as a real process, and values sized to the database."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from notifier.config import _PLAIN_ADDRESS, _subscriber_address, load_settings, parse_settings, sending_smtp
from notifier.core.mime import AddressError, make_message_id, validate_address
from notifier.core.numbers import s10_check_digit
from notifier.core.views import OutboxDraft
from notifier.errors import ConfigError
from notifier.store import Store
from notifier.store.orm import OutboxMessage, Shipment, Subscriber, Subscription

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
GAP = "could not be checked"  # load_settings' last-resort wrapper: the fuzz must never reach it


def number(i: int) -> str:
    serial = f"{i:08d}"
    return f"EJ{serial}{s10_check_digit(serial)}JP"


# --- a TOML writer small enough to trust, for whatever values hypothesis makes ----------------


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _string(name)


def _string(text: str) -> str:
    # JSON strings are TOML basic strings, but for DEL, which TOML wants escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dump(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text for `data`: scalars first, then [tables] and [[arrays of tables]]."""
    lines = []
    for key, value in data.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(lines) + "\n" if lines else ""
    for key, value in data.items():
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + dump(value, name)
        elif _is_table_array(value):
            for item in value:
                out += f"\n[[{name}]]\n" + dump(item, name)
    return out


BASE: dict[str, Any] = {
    "database": {"url": "sqlite:///n.db"},
    "japanpost": {"base_url": "https://trackings.post.japanpost.jp", "request_interval": 5},
    "polling": {
        "tick": "15s",
        "fixed_interval": "1h",
        "jitter": 0.1,
        "pending_give_up": "14d",
        "terminal_grace": "7d",
        "stale_give_up": "60d",
        "lease": "10m",
        "watch_files": ["watch.d/*.toml"],
        "intervals": {"pending": "6h", "out_for_delivery": "30m"},
    },
    "smtp": {
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "from": "Shop <shop@sakura-bungu.jp>",
        "timeout": "60s",
        "validate_certs": True,
        "local_hostname": "notifier.sakura-bungu.jp",
    },
    "notifications": {
        "operator": "ops@sakura-bungu.jp",
        "shop_name": "Shop",
        "reply_to": "Support <support@sakura-bungu.jp>",
        "unsubscribe": "mailto:ops@sakura-bungu.jp?subject=unsubscribe%20{email}",
        "outbox_dir": "outbox",
        "quiet_hours": "21:00-08:00",
        "default_time_zone": "Asia/Tokyo",
        "max_attempts": 8,
        "outbox_lease": "5m",
        "baseline": "current",
        "multi_stage": "latest",
        "max_event_age": "14d",
        "stall": {"departed_origin": "10d", "customs_presented": "off"},
        "retention": {"hold": "7d", "remind_before": "2d"},
        "rule": [
            {"name": "accepted", "enabled": True, "item_types": ["EMS"]},
            {
                "name": "vip",
                "stages": ["out_for_delivery"],
                "template": "out_for_delivery",
                "tags": ["vip"],
                "destinations": ["US"],
            },
        ],
    },
    "watch": [
        {
            "number": number(1),
            "label": "Order 1",
            "subscribers": ["a@example.com"],
            "locale": "en",
            "time_zone": "Asia/Tokyo",
            "destination": "US",
            "tags": ["vip"],
        },
        {"number": "123456789012", "locale": "ja"},
    ],
}


def _paths(data: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every place a value sits in `data`, tables and list items included."""
    found = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*path, index))
    return found


PATHS = _paths(BASE)

scalars = st.one_of(
    st.none(),  # stands for "key removed"
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet="0123456789.smhdwy -:", max_size=12),
    st.sampled_from(["", " ", "off", "none", "/etc/notifier/watch.d/*.toml", "\x00", "x" * 500, "1e400"]),
    st.dates(),
    st.times(),
    st.datetimes(timezones=st.just(dt.UTC) | st.none()),
)
values = st.recursive(
    scalars.filter(lambda v: v is not None),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _substitute(data: Any, path: tuple[object, ...], value: object) -> Any:
    head, *rest = path
    if isinstance(data, dict) and head not in data:
        raise KeyError(head)  # an earlier change made this place a different table
    copy = dict(data) if isinstance(data, dict) else list(data)
    if rest:
        copy[head] = _substitute(copy[head], tuple(rest), value)  # type: ignore[call-overload]
    elif value is None and isinstance(copy, dict):
        del copy[head]
    elif value is None:
        copy[head] = {}  # type: ignore[call-overload]
    else:
        copy[head] = value  # type: ignore[call-overload]
    return copy


def check_loads_or_config_error(path: Path) -> str | None:
    """Load; the only failure allowed is a ConfigError each of whose lines names a line or a key."""
    try:
        load_settings(str(path))
    except ConfigError as exc:
        message = str(exc)
        assert GAP not in message, message
        for line in message.split("\n"):
            assert re.match(r"\S.*?(:\d+: |: [^:]+: )", line), line
        return message
    return None


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "watch.d").mkdir()
    (folder / "watch.d" / "orders.toml").write_text(
        dump({"watch": [{"number": number(2)}]}), encoding="utf-8"
    )
    return folder


def test_the_fuzz_base_config_is_valid(fuzz_dir: Path) -> None:
    path = fuzz_dir / "base.toml"
    path.write_text(dump(BASE), encoding="utf-8")
    loaded = load_settings(str(path))
    assert len(loaded.watches) == 3
    assert len(PATHS) > 60


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values | st.none()), min_size=1, max_size=3))
def test_fuzzed_values_give_only_config_errors(
    fuzz_dir: Path, changes: list[tuple[tuple[object, ...], object]]
) -> None:
    data: Any = BASE
    for path, value in changes:
        try:
            data = _substitute(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this place
    target = fuzz_dir / "fuzzed.toml"
    target.write_text(dump(data), encoding="utf-8")
    check_loads_or_config_error(target)


@pytest.mark.timeout(600)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values | st.none()), min_size=1, max_size=3))
def test_config_check_on_fuzzed_values_prints_no_traceback(
    fuzz_dir: Path, changes: list[tuple[tuple[object, ...], object]]
) -> None:
    """The same fuzz, a few examples through the real `notifier config check` process."""
    data: Any = BASE
    for path, value in changes:
        try:
            data = _substitute(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    target = fuzz_dir / "fuzzed-cli.toml"
    target.write_text(dump(data), encoding="utf-8")
    proc = config_check(target)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 2 and proc.stdout:
        # Read without errors, but `run` would not start (a database folder that does not exist...).
        assert proc.stderr.startswith("run would refuse: "), proc.stderr
    elif proc.returncode == 2:
        assert all(line.startswith("notifier config: ") for line in proc.stderr.splitlines()[:1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
@example(data=None)
def test_mangled_bytes_give_only_config_errors(fuzz_dir: Path, data: st.DataObject | None) -> None:
    original = dump(BASE).encode()
    mangled = bytearray(original)
    if data is not None:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(mangled)))
            chunk = data.draw(
                st.binary(min_size=1, max_size=4)
                | st.sampled_from([b"\xff", b"\x00", b"[", b'"', b"\n=", b"\xe3\x81"])
            )
            mangled[at : at + data.draw(st.integers(0, 3))] = chunk
    target = fuzz_dir / "mangled.toml"
    target.write_bytes(bytes(mangled))
    check_loads_or_config_error(target)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_give_only_config_errors(fuzz_dir: Path, blob: bytes) -> None:
    target = fuzz_dir / "random.toml"
    target.write_bytes(blob)
    check_loads_or_config_error(target)


@given(st.from_regex(_PLAIN_ADDRESS, fullmatch=True))
def test_the_fast_address_path_agrees_with_validate_address(address: str) -> None:
    try:
        expected = validate_address(address)
    except AddressError:
        with pytest.raises(AddressError):
            _subscriber_address(address)
        return
    assert _subscriber_address(address) == expected


# --- inputs from the field report, through `load_settings` and the real `config check` --------

BAD_INPUTS: list[tuple[str, bytes, str]] = [
    ("inf", b"[japanpost]\nrequest_interval = inf\n", ":2: japanpost.request_interval: inf is too long"),
    ("days", b'[japanpost]\nrequest_interval = "99999999999999d"\n', ":2: japanpost.request_interval:"),
    (
        "budget",
        b'[japanpost]\nbudget = "global"\n',
        ':2: japanpost.budget: must be "shared" or "per_instance"',
    ),
    ("budget-list", b'[japanpost]\nbudget = ["shared"]\n', ':2: japanpost.budget: must be "shared" or'),
    ("1e400", b"[polling]\ntick = 1e400\n", ":2: polling.tick:"),
    ("nan", b"[polling]\nlease = nan\n", ":2: polling.lease: nan is not a duration"),
    (
        "negative",
        b"[polling]\nstale_give_up = -5\n",
        ":2: polling.stale_give_up: a duration cannot be negative",
    ),
    (
        "huge-int",
        b"[notifications]\nmax_attempts = 99999999999999999999999\n",
        ":2: notifications.max_attempts:",
    ),
    ("digits", b"[notifications]\nmax_attempts = " + b"9" * 5000 + b"\n", ":2: notifications.max_attempts:"),
    ("latin-1", b"[polling]\ntick = 5\n# caf\xe9\n", ":3: polling: byte 0xe9 at column 6 is not UTF-8"),
    ("latin-1-value", b'[notifications]\nshop_name = "caf\xe9"\n', ":2: notifications.shop_name: byte 0xe9"),
    (
        "empty-pattern",
        b'[polling]\nwatch_files = [""]\n',
        ":2: polling.watch_files: '' is not a file pattern",
    ),
    ("pattern-type", b"[polling]\nwatch_files = [3]\n", ":2: polling.watch_files: 3 is not a file pattern"),
    (
        "duplicate",
        b'[database]\nurl = "sqlite:///a.db"\nurl = "sqlite:///b.db"\n',
        ":3: database.url: is set twice",
    ),
    (
        "duplicate-table",
        b"[polling]\ntick = 5\n[polling]\n",
        ":3: polling: the table [polling] is declared twice",
    ),
    (
        "nul",
        b'[notifications]\nshop_name = "a\x00b"\n',
        ":2: notifications.shop_name: contains a NUL character",
    ),
    (
        "nul-escape",
        b'[notifications]\nshop_name = "a\\u0000b"\n',
        ":2: notifications.shop_name: cannot contain a NUL",
    ),
    (
        "smtp-timeout",
        b'[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\ntimeout = 0\n',
        ":5: smtp.timeout: must be more than 0 seconds",
    ),
    (
        "rule-types",
        b'[[notifications.rule]]\nname = "x"\nstages = [{}]\n',
        ":3: notifications.rule[0].stages:",
    ),
    ("baseline-type", b"[notifications]\nbaseline = [1]\n", ":2: notifications.baseline: must be current"),
    (
        "deep",
        b"[polling]\ntick = " + b"[" * 3000 + b"]" * 3000 + b"\n",
        ":2: polling.tick: values are nested too deeply",
    ),
    ("database-url", b'[database]\nurl = "nonsense"\n', ":2: database.url: not a database URL"),
    ("section-type", b"database = 5\n", ":1: database: must be a table"),
    (
        "line-separator",  # only \n ends a TOML line: U+2028 in a string must not shift the count
        '[notifications]\nshop_name = "a\u2028b"\nmax_attempts = 0\n'.encode(),
        ":3: notifications.max_attempts: must be a whole number from 1 to 1000",
    ),
    ("bad-toml", b"[polling\n", ":1:"),
    (
        "label",
        b'[[watch]]\nnumber = "EJ123456785JP"\nlabel = "' + b"x" * 201 + b'"\n',
        ":3: watch[0].label: is 201",
    ),
]


@pytest.mark.parametrize(("name", "content", "expected"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_field_report_inputs_are_config_errors(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_bytes(content)
    message = check_loads_or_config_error(path)
    assert message is not None
    assert f"{path}{expected}" in message, message


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(600)
def test_config_check_never_prints_a_traceback(tmp_path: Path) -> None:
    """The real command, one process per input: one line per problem on stderr, exit 2."""
    paths = []
    for name, content, _ in BAD_INPUTS:
        paths.append(tmp_path / f"{name}.toml")
        paths[-1].write_bytes(content)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(config_check, paths))
    for (name, _, expected), path, proc in zip(BAD_INPUTS, paths, results, strict=True):
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert f"{path}{expected}" in proc.stderr, (name, proc.stderr)
        assert proc.stdout == ""


def test_absolute_watch_file_patterns_work(tmp_path: Path) -> None:
    # What a systemd install writes: watch_files = ["/etc/notifier/watch.d/*.toml"].
    watch_dir = tmp_path / "etc" / "watch.d"
    watch_dir.mkdir(parents=True)
    (watch_dir / "a.toml").write_text(f'[[watch]]\nnumber = "{number(5)}"\n', encoding="utf-8")
    (watch_dir / ".a.toml.swp.toml").write_text("not toml at all", encoding="utf-8")
    (watch_dir / "sub.toml").mkdir()
    config = tmp_path / "elsewhere [*]" / "config.toml"  # glob characters in the config's own folder
    config.parent.mkdir()
    config.write_text(
        f"[polling]\nwatch_files = [{json.dumps(str(watch_dir) + '/*.toml')}]\n", encoding="utf-8"
    )
    loaded = load_settings(str(config))
    assert [w.number for w in loaded.watches] == [number(5)]
    assert loaded.watch_files == (watch_dir / "a.toml",)
    assert loaded.watches[0].source == f"{watch_dir / 'a.toml'}:1"
    # A relative pattern is relative to the config's folder, whatever characters its name has.
    (config.parent / "w").mkdir()
    (config.parent / "w" / "b.toml").write_text(f'[[watch]]\nnumber = "{number(6)}"\n', encoding="utf-8")
    config.write_text('[polling]\nwatch_files = ["w/*.toml"]\n', encoding="utf-8")
    assert [w.number for w in load_settings(str(config)).watches] == [number(6)]
    # Two patterns matching one file read it once; the config itself is never a watch file.
    (config.parent / "w" / "config-copy.toml").symlink_to(config)
    config.write_text('[polling]\nwatch_files = ["w/*.toml", "w/b.toml", "*.toml"]\n', encoding="utf-8")
    loaded = load_settings(str(config))
    assert [w.number for w in loaded.watches] == [number(6)]
    assert loaded.watch_files == (config.parent / "w" / "b.toml",)


def test_watch_file_problems_name_their_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "latin.toml").write_bytes(b'[[watch]]\nnumber = "EJ123456785JP"\nlabel = "caf\xe9"\n')
    (tmp_path / "w" / "dup.toml").write_bytes(b'[[watch]]\nnumber = "EJ123456785JP"\nnumber = "x"\n')
    config = tmp_path / "c.toml"
    config.write_text('[polling]\nwatch_files = ["w/*.toml"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(str(config))
    message = str(info.value)
    assert f"{tmp_path / 'w' / 'latin.toml'}:3: watch[0].label: byte 0xe9" in message
    assert f"{tmp_path / 'w' / 'dup.toml'}:3: watch[0].number: is set twice" in message


def test_rule_keys_get_their_line(tmp_path: Path) -> None:
    text = """[notifications]
operator = "ops@shop.example"

[[notifications.rule]]
name = "first"
stages = ["out_for_delivery"]

[[notifications.rule]]
name = "second"
stages = ["teleported"]
template = "nope"
enabled = "yes"
colour = "red"

[[notifications.rule]]
stages = ["delivered"]
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "c.toml")
    where = tmp_path / "c.toml"
    message = str(info.value)
    for expected in (
        f"{where}:10: notifications.rule[1].stages: not stage names: teleported",
        f"{where}:11: notifications.rule[1].template: no such message 'nope'",
        f"{where}:12: notifications.rule[1].enabled: must be true or false",
        f"{where}:13: notifications.rule[1].colour: unknown key",
        f"{where}:15: notifications.rule[2].name: every rule needs a name",
    ):
        assert expected in message, (expected, message)


def test_smtp_problems_are_reported_under_their_own_key(tmp_path: Path) -> None:
    text = '[smtp]\nhost = "mail.example.com"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\nca_file = "nope.pem"\n'
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "c.toml")
    message = str(info.value)
    assert f"{tmp_path / 'c.toml'}:3: smtp.security: smtp.security = none sends mail" in message
    assert f"{tmp_path / 'c.toml'}:5: smtp.ca_file: smtp.cert_bundle" in message


def test_a_missing_password_is_reported_once_and_an_unused_one_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFIER_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    relay = '[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\n'
    missing = parse_settings(relay + 'username = "u"\n', tmp_path / "c.toml")
    with pytest.raises(ConfigError) as info:
        sending_smtp(missing)
    assert str(info.value).count("\n") == 0, str(info.value)
    assert f"{tmp_path / 'c.toml'}:5: smtp.username: needs a password" in str(info.value)
    # An empty password file is not "no password": it is what a prompt without a terminal
    # leaves, and it is named.
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError) as info:
        parse_settings(relay + 'username = "u"\npassword_file = "empty"\n', tmp_path / "c.toml")
    assert str(info.value).count("\n") == 0, str(info.value)
    assert f"c.toml:6: smtp.password_file: {tmp_path / 'empty'} is empty" in str(info.value)
    monkeypatch.setenv("NOTIFIER_SMTP_PASSWORD", "for another service")
    loaded = parse_settings(relay, tmp_path / "c.toml")
    assert loaded.smtp is not None
    assert (loaded.smtp.username, loaded.smtp.password) == (None, None)


def test_a_relay_without_login_ignores_the_units_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the unit loads the smtp-password credential whatever the config says; a
    relay without AUTH (no username) keeps an empty file there, which is not an error."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.delenv("NOTIFIER_SMTP_PASSWORD", raising=False)
    relay = '[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\nfrom = "a@sakura-bungu.jp"\n'
    loaded = parse_settings(relay, tmp_path / "c.toml")
    assert loaded.smtp is not None
    assert (loaded.smtp.username, loaded.smtp.password) == (None, None)
    # With a login the same empty credential is named.
    with pytest.raises(ConfigError, match=r"smtp\.username: .*smtp-password.*is empty"):
        parse_settings(relay + 'username = "u"\n', tmp_path / "c.toml")


# --- sizes: what passes the check fits the database, on PostgreSQL too -------------------------


def size(attribute: Any) -> int:
    length: int = attribute.expression.type.length
    return length


def test_values_over_a_column_size_are_refused_with_the_limit(tmp_path: Path) -> None:
    long_domain = ".".join(["d" * 60] * 3) + ".example"  # a valid domain; its Message-ID would not fit
    tags = [f"t{i:03d}" for i in range(size(Shipment.tags) // 5 + 1)]
    text = f"""[smtp]
host = "127.0.0.1"
security = "none"
from = "shop@{long_domain}"

[[notifications.rule]]
name = "{"r" * (size(OutboxMessage.rule) + 1)}"
stages = ["delivered"]

[[watch]]
number = "{number(1)}"
label = "{"ラ" * (size(Shipment.label) + 1)}"
tags = {json.dumps(tags)}

[[watch]]
number = "{number(2)}"
label = "two\\nlines"
tags = ["two words"]
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, tmp_path / "c.toml")
    where = tmp_path / "c.toml"
    message = str(info.value)
    for expected in (
        f"{where}:4: smtp.from: its domain makes a Message-ID that is {len(make_message_id(long_domain))} "
        f"characters long; at most {size(OutboxMessage.message_id)} fit "
        "(database column outbox.message_id)",
        f"{where}:7: notifications.rule[0].name: is {size(OutboxMessage.rule) + 1} characters long; "
        f"at most {size(OutboxMessage.rule)} fit (database column outbox.rule)",
        f"{where}:12: watch[0].label: is {size(Shipment.label) + 1} characters long; "
        f"at most {size(Shipment.label)} fit (database column shipments.label)",
        f"{where}:13: watch[0].tags: joined by spaces, they make a text that is",
        "(database column shipments.tags)",
        f"{where}:17: watch[1].label: cannot contain control characters",
        f"{where}:18: watch[1].tags: each tag is one word",
    ):
        assert expected in message, (expected, message)


def max_size_config(tmp_path: Path) -> Path:
    """A config with every stored value at its column's limit (or the longest the check allows)."""
    domain = ".".join(["d" * 50] * 3) + ".ex"  # the longest that leaves a Message-ID that fits
    assert len(make_message_id(domain)) <= size(OutboxMessage.message_id)
    local = "l" * 64
    tags = [f"t{i:04d}" for i in range(size(Shipment.tags) // 6 - 1)]
    tags.append("z" * (size(Shipment.tags) - len(" ".join(tags)) - 1))
    label = "注" * size(Shipment.label)
    zone = max(("America/Argentina/ComodRivadavia", "Asia/Tokyo"), key=len)
    text = f"""[smtp]
host = "127.0.0.1"
security = "none"
from = "{"S" * 100} <{local}@{domain}>"

[notifications]
operator = "{local}@{domain}"

[[notifications.rule]]
name = "{"r" * size(OutboxMessage.rule)}"
stages = ["delivered"]

[[watch]]
number = "{number(7)}"
label = "{label}"
tags = {json.dumps(tags)}
subscribers = ["{local}@{"e" * 60}.{"f" * 60}.{"g" * 60}.{"h" * 3}.jp"]
destination = "us"
time_zone = "{zone}"
locale = "ja"
"""
    path = tmp_path / "max.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_at_the_maximum_sizes_passes_the_check(tmp_path: Path) -> None:
    loaded = load_settings(str(max_size_config(tmp_path)))
    watch = loaded.watches[0]
    assert len(watch.label) == size(Shipment.label)
    assert len(" ".join(sorted(watch.tags))) == size(Shipment.tags)
    assert len(watch.subscribers[0]) == 254  # the longest address there is
    assert len(max(r.name for r in loaded.notifications.rules.rules)) == size(OutboxMessage.rule)
    assert size(Subscriber.email) >= 254
    assert size(Subscription.time_zone) >= len("America/Argentina/ComodRivadavia")


async def test_a_config_that_passes_the_check_can_be_stored(tmp_path: Path, db_url: str) -> None:
    """What the daemon stores from a config at the maximum sizes goes in, on SQLite and PostgreSQL."""
    from notifier.core.numbers import parse_number

    loaded = load_settings(str(max_size_config(tmp_path)))
    watch = loaded.watches[0]
    rule = max(loaded.notifications.rules.rules, key=lambda r: len(r.name))
    sender = loaded.notifications.sender
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    store = await Store.open(db_url)
    try:
        # As the daemon's watch sync does it.
        view = await store.watch(
            parse_number(watch.number),
            now=now,
            label=watch.label,
            destination=watch.destination,
            tags=watch.tags,
        )
        await store.set_subscribers(
            view.id, [(email, watch.locale, watch.time_zone) for email in watch.subscribers], now=now
        )
        domain = sender.rsplit("@", 1)[1].rstrip(">")
        for recipient in (watch.subscribers[0], loaded.notifications.operator):
            assert recipient is not None
            await store.enqueue(
                [
                    OutboxDraft(
                        dedup_key=f"{2**63 - 1}:{2**63 - 1}:{rule.name}:{'k' * 32}:{recipient[:1]}",
                        recipient=recipient,
                        sender=sender,
                        locale=watch.locale,
                        rule=rule.name,
                        template=str(rule.template),
                        stage="delivered",
                        number=watch.number,
                        subject="s",
                        message_id=make_message_id(domain),
                        raw=b"x",
                        shipment_id=view.id,
                        time_zone=watch.time_zone,
                    )
                ],
                now=now,
            )
        stored = (await store.shipments())[0]
        assert stored.label == watch.label
        assert stored.tags == watch.tags
    finally:
        await store.close()


def test_problem_lines_follow_toml_not_look_alike_text(tmp_path: Path) -> None:
    """Multi-line strings and arrays, comments, quoted and dotted keys do not shift the lines
    problems are reported at."""
    text = '''# a comment with [brackets] and key = value
[notifications]
shop_name = """
[polling]
[[watch]]
max_attempts = 5
"""
reply_to = 'not-an-address'  # [x] = y
"max_attempts" = 0
stall . "departed_origin" = "soon"

[[watch]]
number = "EJ123456785JP"
subscribers = [
  "a@example.com",  # [[watch]]
  "bad",
]
tags = ["ok"]
label = "x\\"\\n[[watch]]"
locale = "fr"

[[watch]]
number = "EJ 123 456 785 JP"
time_zone = "Nowhere/Else"
'''
    where = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as info:
        parse_settings(text, where)
    message = str(info.value)
    for expected in (
        f"{where}:8: notifications.reply_to:",
        f"{where}:9: notifications.max_attempts: must be a whole number",
        f"{where}:10: notifications.stall.departed_origin: 'soon' is not a duration",
        f"{where}:14: watch[0].subscribers: 'bad' is not a valid email address",
        f"{where}:19: watch[0].label: cannot contain control characters",
        f"{where}:20: watch[0].locale: must be en or ja",
        f"{where}:22: watch.number: EJ123456785JP is already watched at {where}:12",
        f"{where}:24: watch[1].time_zone:",
    ):
        assert expected in message, (expected, message)
