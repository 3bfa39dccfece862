"""Configuration files (TOML) to validated, frozen settings; every problem names its file, line and key.

The package is split by concern: keys (every key declared once with its kind, default and doc),
schema (the declaration's types, the Snapshot and the walker), kinds and watch_kinds (the values
a key takes), settings (the dataclasses), toml (positions), checks (values, identity), watches,
rules, parse (a Snapshot to Settings, pure) and sources (gather: the only module that reads
files, the environment or systemd credentials)."""

from notifier.config.checks import (
    EXAMPLE_IDENTITY_WARNING,
    name_problem,
    parse_duration,
    sending_smtp,
    web_secret,
)
from notifier.config.parse import parse
from notifier.config.schema import Snapshot
from notifier.config.settings import (
    CONFIG_ENV,
    CREDENTIAL_NAME,
    DATABASE_URL_ENV,
    HTTP_ADMIN_CREDENTIAL_NAME,
    HTTP_ADMIN_PASSWORD_ENV,
    HTTP_ADMIN_PASSWORD_MIN,
    HTTP_CREDENTIAL_NAME,
    HTTP_SECRET_ENV,
    HTTP_SECRET_MIN,
    MAX_ATTEMPTS,
    MAX_DURATION,
    SMTP_PASSWORD_ENV,
    DatabaseSettings,
    HttpSettings,
    JapanPostSettings,
    NotificationSettings,
    Settings,
    Watch,
)
from notifier.config.sources import (
    gather,
    load_settings,
    matching_watch_files,
    parse_settings,
    start_refusals,
)
from notifier.config.watch_kinds import _PLAIN_ADDRESS, _subscriber_address
from notifier.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CREDENTIAL_NAME",
    "DATABASE_URL_ENV",
    "EXAMPLE_IDENTITY_WARNING",
    "HTTP_ADMIN_CREDENTIAL_NAME",
    "HTTP_ADMIN_PASSWORD_ENV",
    "HTTP_ADMIN_PASSWORD_MIN",
    "HTTP_CREDENTIAL_NAME",
    "HTTP_SECRET_ENV",
    "HTTP_SECRET_MIN",
    "MAX_ATTEMPTS",
    "MAX_DURATION",
    "SMTP_PASSWORD_ENV",
    "_PLAIN_ADDRESS",
    "ConfigError",
    "DatabaseSettings",
    "HttpSettings",
    "JapanPostSettings",
    "NotificationSettings",
    "Settings",
    "Snapshot",
    "Watch",
    "_subscriber_address",
    "gather",
    "load_settings",
    "matching_watch_files",
    "name_problem",
    "parse",
    "parse_duration",
    "parse_settings",
    "sending_smtp",
    "start_refusals",
    "web_secret",
]
