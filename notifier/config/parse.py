"""A whole config text to Settings: each section checked, every problem gathered into one ConfigError."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import httpx

from notifier.config.checks import (
    _STAGE_NAMES,
    _address,
    _anchor_sqlite,
    _database_url,
    _http_url,
    _identity,
    _section,
    _sender_fits,
    _string,
    parse_duration,
)
from notifier.config.intake import _intake
from notifier.config.password import PasswordHash
from notifier.config.rules import _notifications
from notifier.config.settings import (
    _KNOWN,
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
)
from notifier.config.smtp import SmtpSettings
from notifier.config.sources import (
    _anchored,
    _file_path,
    _find_secret,
    _fixed_folder,
    _watch_file,
    environment_has,
    is_folder,
    matching_watch_files,
    read_password,
    working_folder,
)
from notifier.config.toml import _by_place, _parse_toml, _Problems
from notifier.config.watches import _watch_file_patterns, _watches
from notifier.core.eta import Calibration
from notifier.core.model import DEFAULT_BASE_URL
from notifier.core.policy import PollingPolicy
from notifier.core.stages import Stage
from notifier.core.windows import MailWindows, WindowSettings
from notifier.errors import ConfigError
from notifier.store.database import DEFAULT_DATABASE_URL


def _circuit(japanpost: dict[str, Any], problems: _Problems) -> dict[str, Any]:
    """The circuit breaker's settings from [japanpost]: only the keys given, each checked."""
    out: dict[str, Any] = {}
    if "circuit_failures" in japanpost:
        failures = japanpost["circuit_failures"]
        if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= 1000:
            problems.add("japanpost.circuit_failures", "must be a whole number from 1 to 1000")
        else:
            out["circuit_failures"] = failures
    for key in ("circuit_pause", "circuit_pause_max"):
        if key in japanpost:
            try:
                pause = parse_duration(japanpost[key])
            except ValueError as exc:
                problems.add(f"japanpost.{key}", str(exc))
                continue
            if pause <= dt.timedelta(0):
                problems.add(f"japanpost.{key}", "must be more than 0 seconds")
                continue
            out[key] = pause
    defaults = JapanPostSettings()
    pause = out.get("circuit_pause", defaults.circuit_pause)
    if pause > out.get("circuit_pause_max", defaults.circuit_pause_max):
        problems.add("japanpost.circuit_pause", "must not be longer than japanpost.circuit_pause_max")
    return out


# SmtpSettings names its own fields; these are the config keys that set them.
_SMTP_FIELD_KEYS = {"cert_bundle": "ca_file", "password": "username", "connect_timeout": "timeout"}


def _smtp(data: dict[str, Any], problems: _Problems, base: Path) -> tuple[SmtpSettings | None, str | None]:
    if "smtp" not in data:
        return None, None
    smtp = _section(data, "smtp", problems)
    host = _string(smtp, "host", "smtp.host", problems)
    sender = _address(smtp, "from", "smtp.from", problems, display=True)
    if host is None and "host" not in smtp:
        problems.add("smtp.host", "is required in [smtp]")
    if "from" not in smtp:
        problems.add("smtp.from", 'is required in [smtp] (e.g. "Shop <shop@example.com>")')
    if sender is not None and not _sender_fits(sender, "smtp.from", problems):
        sender = None
    security = smtp.get("security", "starttls")
    if security not in ("starttls", "tls", "none"):
        problems.add("smtp.security", "must be starttls, tls or none")
        security = "starttls"
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    port = smtp.get("port", default_port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.add("smtp.port", "must be a port number 1-65535")
        port = default_port
    timeout = 60.0
    if "timeout" in smtp:
        try:
            timeout = parse_duration(smtp["timeout"]).total_seconds()
        except ValueError as exc:
            problems.add("smtp.timeout", str(exc))
        else:
            if timeout <= 0:
                problems.add("smtp.timeout", "must be more than 0 seconds")
                timeout = 60.0
    username = _string(smtp, "username", "smtp.username", problems)
    password = read_password(smtp, problems, base, login=bool(username))
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
    validate = smtp.get("validate_certs", True)
    if not isinstance(validate, bool):
        problems.add("smtp.validate_certs", "must be true or false")
        validate = True
    ca_file = _string(smtp, "ca_file", "smtp.ca_file", problems)
    local_hostname = _string(smtp, "local_hostname", "smtp.local_hostname", problems)
    if host is None:
        return None, sender
    problems.smtp_login = login_problem
    try:
        # A password found in the environment or a credential is unused by a relay without AUTH.
        settings = SmtpSettings(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password if username else None,
            timeout=timeout,
            validate_certs=validate,
            cert_bundle=str(_file_path(base, ca_file)) if ca_file else None,
            local_hostname=local_hostname,
            username_at=problems.place("smtp.username") if username else None,
        )
    except ConfigError as exc:  # the transport's own checks, e.g. security=none off loopback
        for part in str(exc).split("; "):
            found = re.match(r"smtp\.(\w+)", part)
            field_name = found.group(1) if found else "security"
            problems.add(f"smtp.{_SMTP_FIELD_KEYS.get(field_name, field_name)}", part)
        return None, sender
    return settings, sender


_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>[0-9]{1,5})")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def _listen(value: object, problems: _Problems) -> tuple[str, int] | None:
    if value is None:
        problems.add("http.listen", 'is required in [http] (host:port, e.g. "127.0.0.1:8080")')
        return None
    found = _LISTEN.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        problems.add(
            "http.listen",
            'must be host:port, e.g. "127.0.0.1:8080" or "[::1]:8080" (an IPv6 address in brackets)',
        )
        return None
    port = int(found["port"])
    if not 1 <= port <= 65535:
        problems.add("http.listen", f"port {port} is not a port number 1-65535")
        return None
    return found["v6"] or found["host"], port


def _public_url(value: object, problems: _Problems) -> str | None:
    if value is None:
        problems.add(
            "http.public_url",
            'is required in [http]: the address customers open, e.g. "https://track.example.com"',
        )
        return None
    if not isinstance(value, str) or not _http_url(value) or not (value.isascii() and value.isprintable()):
        problems.add("http.public_url", 'must be an https: URL, e.g. "https://track.example.com"')
        return None
    url = httpx.URL(value)
    if url.query or url.fragment or " " in value:
        problems.add("http.public_url", "must be a plain URL without a query (?...) or fragment (#...)")
        return None
    if url.scheme != "https" and url.netloc.decode("ascii").rsplit(":", 1)[0] not in _LOCAL_HOSTS:
        # Unsubscribe and tracking links travel in email; over plain http anyone on the path reads them.
        problems.add(
            "http.public_url",
            "must be https: (plain http: only for localhost, 127.0.0.1 or [::1] while testing)",
        )
        return None
    return value.rstrip("/")


def _http(data: dict[str, Any], problems: _Problems, base: Path) -> HttpSettings | None:
    if "http" not in data:
        return None
    table = _section(data, "http", problems)
    listen = _listen(table.get("listen"), problems)
    public_url = _public_url(table.get("public_url"), problems)
    if "secret" in table:
        problems.add(
            "http.secret",
            f"secrets do not go in the config file; use secret_file or ${HTTP_SECRET_ENV}",
        )
    secret = _find_secret(
        table,
        "secret_file",
        "http",
        env=HTTP_SECRET_ENV,
        credential=HTTP_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
        base=base,
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
        if "secret_file" in table:
            key, source = "http.secret_file", f"in {table['secret_file']}"
        elif environment_has(HTTP_SECRET_ENV):
            key, source = "http", f"in ${HTTP_SECRET_ENV}"
        else:
            key, source = "http", f'of the systemd credential "{HTTP_CREDENTIAL_NAME}"'
        problems.add(
            key,
            f"the secret {source} is {len(secret)} characters long; at least {HTTP_SECRET_MIN} are "
            "needed (create one with `openssl rand -base64 32`)",
        )
        return None
    admin_password = _admin_password(table, problems, base)
    if listen is None or public_url is None:
        return None
    return HttpSettings(
        host=listen[0], port=listen[1], public_url=public_url, secret=secret, admin_password=admin_password
    )


def _admin_password(table: dict[str, Any], problems: _Problems, base: Path) -> PasswordHash | None:
    """The operator board's password: admin_password_file, else $NOTIFIER_HTTP_ADMIN_PASSWORD,
    else the systemd credential `http-admin-password`; None (no board) when none is there."""
    if "admin_password" in table:
        problems.add(
            "http.admin_password",
            f"passwords do not go in the config file; use admin_password_file or ${HTTP_ADMIN_PASSWORD_ENV}",
        )
    password = _find_secret(
        table,
        "admin_password_file",
        "http",
        env=HTTP_ADMIN_PASSWORD_ENV,
        credential=HTTP_ADMIN_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
        base=base,
    )
    if password is None:
        return None
    if len(password) < HTTP_ADMIN_PASSWORD_MIN:
        if "admin_password_file" in table:
            key, source = "http.admin_password_file", f"in {table['admin_password_file']}"
        elif environment_has(HTTP_ADMIN_PASSWORD_ENV):
            key, source = "http", f"in ${HTTP_ADMIN_PASSWORD_ENV}"
        else:
            key, source = "http", f'of the systemd credential "{HTTP_ADMIN_CREDENTIAL_NAME}"'
        problems.add(
            key,
            f"the operator board's password {source} is {len(password)} characters long; at least "
            f"{HTTP_ADMIN_PASSWORD_MIN} are needed (create one with `openssl rand -base64 18`)",
        )
        return None
    return PasswordHash.of(password)


def _polling(data: dict[str, Any], problems: _Problems) -> tuple[PollingPolicy, float]:
    table = _section(data, "polling", problems)
    defaults = PollingPolicy()
    values: dict[str, Any] = {}
    for key in ("fixed_interval", "pending_give_up", "terminal_grace", "stale_give_up", "lease"):
        if key in table:
            try:
                values[key] = parse_duration(table[key])
            except ValueError as exc:
                problems.add(f"polling.{key}", str(exc))
    if "jitter" in table:
        jitter = table["jitter"]
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            problems.add("polling.jitter", "must be a fraction from 0 to below 1")
        else:
            values["jitter"] = float(jitter)
    intervals = dict(defaults.intervals)
    table_intervals = table.get("intervals", {})
    if not isinstance(table_intervals, dict):
        problems.add("polling.intervals", "must be a table of stage = duration")
        table_intervals = {}
    for stage_name, value in table_intervals.items():
        if stage_name not in _STAGE_NAMES:
            problems.add(f"polling.intervals.{stage_name}", "not a stage name")
            continue
        try:
            intervals[Stage(stage_name)] = parse_duration(value)
        except ValueError as exc:
            problems.add(f"polling.intervals.{stage_name}", str(exc))
    tick = 5.0
    if "tick" in table:
        try:
            tick = max(0.1, parse_duration(table["tick"]).total_seconds())
        except ValueError as exc:
            problems.add("polling.tick", str(exc))
    return PollingPolicy(intervals=intervals, **values), tick


def _estimates(data: dict[str, Any], problems: _Problems) -> WindowSettings:
    table = _section(data, "estimates", problems)
    defaults = WindowSettings()
    calibration, mail = defaults.calibration, defaults.mail
    if "calibration" in table:
        try:
            calibration = Calibration(table["calibration"])
        except ValueError:
            problems.add("estimates.calibration", 'must be "conservative", "balanced" or "aggressive"')
    if "mail" in table:
        try:
            mail = MailWindows(table["mail"])
        except ValueError:
            problems.add("estimates.mail", 'must be "history", "always" or "never"')
    return WindowSettings(calibration=calibration, mail=mail)


def parse_settings(text: str, source: Path | None = None) -> Settings:
    """Validate a whole config file; raise one ConfigError listing every problem."""
    where = str(source) if source else "<config>"
    try:
        return _parse_settings(text, source, where)
    except ConfigError:
        raise
    except Exception as exc:  # a gap in the checks must still not crash `config check` or a reload
        raise ConfigError(
            f"{where}: could not be checked ({type(exc).__name__}: {exc}); please report this"
        ) from exc


def _parse_settings(text: str, source: Path | None, where: str) -> Settings:
    data = _parse_toml(text, where)
    problems = _Problems(text, where)
    base = source.parent if source else working_folder()
    database = _section(data, "database", problems)
    japanpost = _section(data, "japanpost", problems)
    url = database.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str) or not url:
        problems.add("database.url", "must be a non-empty string")
        url = DEFAULT_DATABASE_URL
    elif (reason := _database_url(url)) is not None:
        problems.add("database.url", reason)
        url = DEFAULT_DATABASE_URL
    url = _anchor_sqlite(url, base) if source is not None else url
    base_url = japanpost.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not _http_url(base_url):
        problems.add("japanpost.base_url", "must be an http(s) URL")
        base_url = DEFAULT_BASE_URL
    interval = 5.0
    if "request_interval" in japanpost:
        try:
            interval = parse_duration(japanpost["request_interval"]).total_seconds()
        except ValueError as exc:
            problems.add("japanpost.request_interval", str(exc))
    budget = japanpost.get("budget", "shared")
    if budget not in ("shared", "per_instance"):
        problems.add("japanpost.budget", 'must be "shared" or "per_instance"')
        budget = "shared"
    circuit = _circuit(japanpost, problems)
    down_alert_after = JapanPostSettings().down_alert_after
    if "down_alert_after" in japanpost:
        try:
            down_alert_after = parse_duration(japanpost["down_alert_after"])
        except ValueError as exc:
            problems.add("japanpost.down_alert_after", str(exc))
    smtp, sender = _smtp(data, problems, base)
    http = _http(data, problems, base)
    notifications = _notifications(data, problems, base, sender)
    example_identity_allowed = _identity(data, problems, smtp, notifications, http)
    polling, tick = _polling(data, problems)
    estimates = _estimates(data, problems)
    intake = _intake(data, problems, base)
    watches = _watches(data, problems)
    patterns = tuple(
        _anchored(base, pattern) for pattern in _watch_file_patterns(data.get("polling"), problems)
    )
    watch_files = matching_watch_files(patterns, source)
    for pattern in _watch_file_patterns(data.get("polling"), _Problems("", where)):
        folder = _fixed_folder(base, pattern)
        if not is_folder(folder):
            # A mistyped folder would match nothing and unwatch every number it should hold; an
            # existing empty folder (nothing imported yet) is fine.
            problems.add("polling.watch_files", f"{pattern!r}: the folder {folder} does not exist")
    for path in watch_files:
        watches += _watch_file(path, problems)
    seen: dict[str, str] = {}
    for watch in watches:
        if watch.number in seen:
            problems.items.append(
                f"{watch.source}: watch.number: {watch.number} is already watched at {seen[watch.number]}"
            )
        else:
            seen[watch.number] = watch.source
    known_tables = set(_KNOWN) | {"watch"}
    for key in sorted(set(data) - known_tables):
        problems.add(key, "unknown section")
    if problems.items:
        raise ConfigError("\n".join(sorted(problems.items, key=_by_place)))
    return Settings(
        source=source,
        watches=tuple(watches),
        watch_files=tuple(watch_files),
        watch_patterns=patterns,
        polling=polling,
        poll_tick=tick,
        database=DatabaseSettings(url=str(url)),
        japanpost=JapanPostSettings(
            base_url=str(base_url),
            request_interval=interval,
            budget=str(budget),
            down_alert_after=down_alert_after,
            **circuit,
        ),
        smtp=smtp,
        smtp_login_problem=problems.smtp_login,
        notifications=notifications,
        http=http,
        http_secret_problem=problems.http_secret,
        example_identity_allowed=example_identity_allowed,
        estimates=estimates,
        intake=intake,
    )
