"""Configuration files (TOML) to validated, frozen settings; every problem names its file, line and key.

The package is split by concern: settings (the dataclasses, the declaration), toml (positions),
checks (values, addresses, URLs, identity), watches, rules, parse (the sections, pure) and
sources (the only module that reads files, the environment or systemd credentials)."""

from notifier.config.checks import (
    EXAMPLE_IDENTITY_WARNING,
    name_problem,
    parse_duration,
    sending_smtp,
    web_secret,
)
from notifier.config.parse import parse_settings
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
from notifier.config.sources import load_settings, matching_watch_files, read_password, start_refusals
from notifier.config.watches import _PLAIN_ADDRESS, _subscriber_address
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
    "Watch",
    "_subscriber_address",
    "load_settings",
    "matching_watch_files",
    "name_problem",
    "parse_duration",
    "parse_settings",
    "read_password",
    "sending_smtp",
    "start_refusals",
    "web_secret",
]
