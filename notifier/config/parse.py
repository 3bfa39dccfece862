"""A snapshot of the configuration's sources to Settings, with no I/O: every problem in one ConfigError."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from notifier.config.checks import _identity
from notifier.config.intake import _intake
from notifier.config.keys import DECLARED
from notifier.config.password import PasswordHash
from notifier.config.rules import _notifications
from notifier.config.schema import Snapshot, Unreadable, table_of
from notifier.config.settings import (
    CREDENTIAL_NAME,
    HTTP_ADMIN_CREDENTIAL_NAME,
    HTTP_ADMIN_PASSWORD_ENV,
    HTTP_ADMIN_PASSWORD_MIN,
    HTTP_CREDENTIAL_NAME,
    HTTP_SECRET_ENV,
    HTTP_SECRET_MIN,
    SMTP_PASSWORD_ENV,
    DatabaseSettings,
    HttpSettings,
    JapanPostSettings,
    Settings,
    Watch,
)
from notifier.config.smtp import SmtpSettings
from notifier.config.toml import _by_place, _Problems
from notifier.config.watches import _watches
from notifier.core.adaptive import AdaptivePolling, Rule
from notifier.core.eta import Calibration
from notifier.core.policy import PollingPolicy
from notifier.core.stages import Stage
from notifier.core.windows import MailWindows, WindowSettings
from notifier.errors import ConfigError
from notifier.store.database import DEFAULT_DATABASE_URL


def _japanpost(data: Mapping[str, Any], problems: _Problems, snap: Snapshot) -> JapanPostSettings:
    values = DECLARED.walk(table_of(data, "japanpost", problems), "japanpost", problems, snap)
    defaults = JapanPostSettings()
    pause = values.get("circuit_pause", defaults.circuit_pause)
    if pause > values.get("circuit_pause_max", defaults.circuit_pause_max):
        problems.add("japanpost.circuit_pause", "must not be longer than japanpost.circuit_pause_max")
    return JapanPostSettings(**values)


def _read_secret(snap: Snapshot, file: Any, dotted: str, problems: _Problems, origin: str = "") -> str | None:
    secret = snap.reads.get(file, Unreadable(f"cannot read {file}: it was not gathered"))
    if isinstance(secret, Unreadable):
        problems.add(dotted, secret.why)
        return None
    if not secret:
        # A password prompt run without a terminal writes an empty file and exits 0.
        problems.add(
            dotted, f"{file}{origin} is empty: write the secret into it again (see docs/how-to/systemd.md)"
        )
        return None
    return secret


def _find_secret(
    snap: Snapshot,
    table: Mapping[str, Any],
    values: Mapping[str, Any],
    file_key: str,
    section: str,
    *,
    env: str,
    credential: str,
    credential_key: str,
    problems: _Problems,
) -> str | None:
    """A secret from the file `table[file_key]` names, else $`env`, else the systemd credential
    `credential` (in $CREDENTIALS_DIRECTORY); None when none of them is there."""
    if file_key in table:
        path = values.get(file_key)  # the walker has said why when it is not a path
        return None if path is None else _read_secret(snap, path, f"{section}.{file_key}", problems)
    if snap.environment.get(env):
        return snap.environment[env]
    if (file := snap.credentials.get(credential)) is not None:
        return _read_secret(
            snap,
            file,
            credential_key,
            problems,
            f' (the systemd credential "{credential}", from LoadCredential={credential}:/etc/notifier/{credential})',
        )
    return None


# SmtpSettings names its own fields; these are the config keys that set them.
_SMTP_FIELD_KEYS = {"cert_bundle": "ca_file", "password": "username", "connect_timeout": "timeout"}
_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _smtp(
    data: Mapping[str, Any], problems: _Problems, snap: Snapshot
) -> tuple[SmtpSettings | None, str | None, bool]:
    """[smtp]: the transport's settings, the From address, and whether a trial may use the
    example identity."""
    if "smtp" not in data:
        return None, None, False
    table = table_of(data, "smtp", problems)
    values = DECLARED.walk(table, "smtp", problems, snap)
    host, sender = values.get("host"), values.get("from")
    security = values.get("security", "starttls")
    username = values.get("username")
    password = None
    # Without a login only a password_file the config names is read: the environment and the
    # credential may be there for other reasons (the unit's empty fallback for a relay without AUTH).
    if username or "password_file" in table:
        password = _find_secret(
            snap,
            table,
            values,
            "password_file",
            "smtp",
            env=SMTP_PASSWORD_ENV,
            credential=CREDENTIAL_NAME,
            credential_key="smtp.username",
            problems=problems,
        )
    login_problem = None
    if username and not password:
        # Only sending needs it: `status`, `db backup` and the like run as root beside a service
        # whose password is a systemd credential only the service sees.
        login_problem = problems.located(
            "smtp.username",
            f"needs a password: set smtp.password_file, ${SMTP_PASSWORD_ENV}, or under systemd the "
            f'credential "{CREDENTIAL_NAME}" (LoadCredential={CREDENTIAL_NAME}:/etc/notifier/{CREDENTIAL_NAME})',
        )
        username = None  # no half-given login reaches the transport
    if host is None:
        return None, sender, False
    problems.smtp_login = login_problem
    ca_file = values.get("ca_file")
    try:
        # A password found in the environment or a credential is unused by a relay without AUTH.
        settings = SmtpSettings(
            host=host,
            port=values.get("port", _SMTP_PORTS[security]),
            security=security,
            username=username,
            password=password if username else None,
            timeout=values.get("timeout", 60.0),
            validate_certs=values.get("validate_certs", True),
            cert_bundle=str(ca_file) if ca_file else None,
            local_hostname=values.get("local_hostname"),
            username_at=problems.place("smtp.username") if username else None,
            bundle_checked=True,  # against the snapshot, by the ca_file key's kind
        )
    except ConfigError as exc:  # the transport's own checks, e.g. security=none off loopback
        for part in str(exc).split("; "):
            found = re.match(r"smtp\.(\w+)", part)
            field_name = found.group(1) if found else "security"
            problems.add(f"smtp.{_SMTP_FIELD_KEYS.get(field_name, field_name)}", part)
        return None, sender, False
    return settings, sender, values.get("allow_example_identity", False)


def _secret_too_short(
    table: Mapping[str, Any], snap: Snapshot, file_key: str, env: str, credential: str
) -> tuple[str, str]:
    """The key to blame for a short secret and where it came from, as the message says it."""
    if file_key in table:
        return f"http.{file_key}", f"in {table[file_key]}"
    if snap.environment.get(env):
        return "http", f"in ${env}"
    return "http", f'of the systemd credential "{credential}"'


def _http(data: Mapping[str, Any], problems: _Problems, snap: Snapshot) -> HttpSettings | None:
    if "http" not in data:
        return None
    table = table_of(data, "http", problems)
    values = DECLARED.walk(table, "http", problems, snap)
    secret = _find_secret(
        snap,
        table,
        values,
        "secret_file",
        "http",
        env=HTTP_SECRET_ENV,
        credential=HTTP_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
    )
    if secret is None:
        if "secret_file" not in table:
            problems.http_secret = problems.located(
                "http",
                f"needs a secret to sign its links: none in http.secret_file (not set), ${HTTP_SECRET_ENV} "
                f'(not set) or the systemd credential "{HTTP_CREDENTIAL_NAME}" (no $CREDENTIALS_DIRECTORY/'
                f"{HTTP_CREDENTIAL_NAME}); create one with `openssl rand -base64 32`",
            )
        secret = ""
    elif len(secret) < HTTP_SECRET_MIN:
        key, source = _secret_too_short(table, snap, "secret_file", HTTP_SECRET_ENV, HTTP_CREDENTIAL_NAME)
        problems.add(
            key,
            f"the secret {source} is {len(secret)} characters long; at least {HTTP_SECRET_MIN} are "
            "needed (create one with `openssl rand -base64 32`)",
        )
        return None
    admin_password = _admin_password(table, values, problems, snap)
    listen, public_url = values.get("listen"), values.get("public_url")
    if listen is None or public_url is None:
        return None
    return HttpSettings(
        host=listen[0], port=listen[1], public_url=public_url, secret=secret, admin_password=admin_password
    )


def _admin_password(
    table: Mapping[str, Any], values: Mapping[str, Any], problems: _Problems, snap: Snapshot
) -> PasswordHash | None:
    """The operator board's password: admin_password_file, else $NOTIFIER_HTTP_ADMIN_PASSWORD,
    else the systemd credential `http-admin-password`; None (no board) when none is there."""
    password = _find_secret(
        snap,
        table,
        values,
        "admin_password_file",
        "http",
        env=HTTP_ADMIN_PASSWORD_ENV,
        credential=HTTP_ADMIN_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
    )
    if password is None:
        return None
    if len(password) < HTTP_ADMIN_PASSWORD_MIN:
        key, source = _secret_too_short(
            table, snap, "admin_password_file", HTTP_ADMIN_PASSWORD_ENV, HTTP_ADMIN_CREDENTIAL_NAME
        )
        problems.add(
            key,
            f"the operator board's password {source} is {len(password)} characters long; at least "
            f"{HTTP_ADMIN_PASSWORD_MIN} are needed (create one with `openssl rand -base64 18`)",
        )
        return None
    return PasswordHash.of(password)


# The [polling] keys that are PollingPolicy fields of the same name, as walked (intervals merge
# over the defaults instead).
_POLICY_KEYS = DECLARED.names["polling"] & {field.name for field in dataclasses.fields(PollingPolicy)} - {
    "intervals",
    "adaptive",
}


def _polling(data: Mapping[str, Any], problems: _Problems, snap: Snapshot) -> tuple[PollingPolicy, float]:
    values = DECLARED.walk(table_of(data, "polling", problems), "polling", problems, snap)
    intervals = dict(PollingPolicy().intervals)
    intervals.update(values.get("intervals", {}))
    policy = PollingPolicy(
        intervals=intervals,
        adaptive=_adaptive(values, data, problems),
        **{key: values[key] for key in _POLICY_KEYS if key in values},
    )
    return policy, values.get("tick", 5.0)


def _adaptive(values: Mapping[str, Any], data: Mapping[str, Any], problems: _Problems) -> AdaptivePolling:
    """[polling] adaptive*, walked already; here the cross-check of the bounds (min <= max)."""
    defaults = AdaptivePolling()
    minimum: dict[Stage, dt.timedelta] = values.get("adaptive_min", {})
    maximum: dict[Stage, dt.timedelta] = values.get("adaptive_max", {})
    for stage in sorted(minimum.keys() & maximum.keys()):
        if minimum[stage] > maximum[stage]:
            raw = data.get("polling", {}).get("adaptive_min", {}).get(str(stage))
            problems.add(f"polling.adaptive_max.{stage}", f"is shorter than adaptive_min.{stage} ({raw})")
    return AdaptivePolling(
        enabled=values.get("adaptive", defaults.enabled),
        rule=Rule(values.get("adaptive_rule", str(defaults.rule))),
        target=values.get("adaptive_target"),
        minimum=minimum,
        maximum=maximum,
    )


def _watch_files(snap: Snapshot, problems: _Problems) -> list[Watch]:
    """The [[watch]] tables of every watch file; their problems join the main file's."""
    watches: list[Watch] = []
    for file in snap.watch_files:
        if file.error is not None:
            problems.items.append(file.error)
            continue
        extra_problems = _Problems(file.text, str(file.path))
        for key in sorted(set(file.data) - {"watch"}):
            extra_problems.add(key, "watch files hold only [[watch]] tables")
        watches += _watches(file.data, extra_problems, snap)
        problems.items += extra_problems.items
    return watches


def parse(snap: Snapshot) -> Settings:
    """Validate a whole configuration from its snapshot; raise one ConfigError listing every problem."""
    try:
        return _parse(snap)
    except ConfigError:
        raise
    except Exception as exc:  # a gap in the checks must still not crash `config check` or a reload
        raise ConfigError(
            f"{snap.where}: could not be checked ({type(exc).__name__}: {exc}); please report this"
        ) from exc


_TOP = frozenset(section for section in DECLARED.sections if "." not in section)


def _parse(snap: Snapshot) -> Settings:
    if snap.data is None:
        raise ConfigError(snap.toml_error or f"{snap.where}: not TOML")
    data = snap.data
    problems = _Problems(snap.text, snap.where)
    database = DECLARED.walk(table_of(data, "database", problems), "database", problems, snap)
    url = database.get("url", DEFAULT_DATABASE_URL)
    url = snap.sqlite_urls.get(url, url) if snap.source is not None else url
    japanpost = _japanpost(data, problems, snap)
    smtp, sender, allow_example = _smtp(data, problems, snap)
    http = _http(data, problems, snap)
    notifications = _notifications(data, problems, snap, sender)
    example_identity_allowed = _identity(data, problems, smtp, notifications, http, allow=allow_example)
    polling, tick = _polling(data, problems, snap)
    estimates = DECLARED.walk(table_of(data, "estimates", problems), "estimates", problems, snap)
    intake = _intake(data, problems, snap, _find_secret)
    watches = _watches(data, problems, snap) + _watch_files(snap, problems)
    seen: dict[str, str] = {}
    for watch in watches:
        if watch.number in seen:
            problems.items.append(
                f"{watch.source}: watch.number: {watch.number} is already watched at {seen[watch.number]}"
            )
        else:
            seen[watch.number] = watch.source
    for key in sorted(set(data) - _TOP):
        problems.add(key, "unknown section")
    if problems.items:
        raise ConfigError("\n".join(sorted(problems.items, key=_by_place)))
    return Settings(
        source=snap.source,
        watches=tuple(watches),
        watch_files=tuple(file.path for file in snap.watch_files),
        watch_patterns=snap.watch_patterns,
        polling=polling,
        poll_tick=tick,
        database=DatabaseSettings(url=url),
        japanpost=japanpost,
        smtp=smtp,
        smtp_login_problem=problems.smtp_login,
        notifications=notifications,
        http=http,
        http_secret_problem=problems.http_secret,
        example_identity_allowed=example_identity_allowed,
        estimates=WindowSettings(
            calibration=Calibration(estimates.get("calibration", WindowSettings().calibration.value)),
            mail=MailWindows(estimates.get("mail", WindowSettings().mail.value)),
        ),
        intake=intake,
    )
