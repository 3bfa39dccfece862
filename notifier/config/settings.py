"""The configuration's declaration: the frozen settings dataclasses, their defaults and the known keys."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from notifier.config.password import PasswordHash
from notifier.config.smtp import SmtpSettings
from notifier.core.model import DEFAULT_BASE_URL
from notifier.core.policy import PollingPolicy
from notifier.core.rules import (
    RulesConfig,
)
from notifier.core.windows import WindowSettings
from notifier.store.database import DEFAULT_DATABASE_URL

CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"
SMTP_PASSWORD_ENV = "NOTIFIER_SMTP_PASSWORD"
CREDENTIAL_NAME = "smtp-password"
HTTP_SECRET_ENV = "NOTIFIER_HTTP_SECRET"
HTTP_CREDENTIAL_NAME = "http-secret"
HTTP_ADMIN_PASSWORD_ENV = "NOTIFIER_HTTP_ADMIN_PASSWORD"
HTTP_ADMIN_CREDENTIAL_NAME = "http-admin-password"
# The operator board is on the public web face: a short password is guessed despite the throttle.
HTTP_ADMIN_PASSWORD_MIN = 12
# The web face's links are HMAC-signed with the secret: a short one could be guessed offline
# from one signed link.
HTTP_SECRET_MIN = 16
# [intake]: the shop platforms' webhook signing secrets.
SHOPIFY_SECRET_ENV = "NOTIFIER_SHOPIFY_SECRET"
SHOPIFY_CREDENTIAL_NAME = "shopify-secret"
WOOCOMMERCE_SECRET_ENV = "NOTIFIER_WOOCOMMERCE_SECRET"
WOOCOMMERCE_CREDENTIAL_NAME = "woocommerce-secret"

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
MAX_DURATION = dt.timedelta(days=36525)
MAX_ATTEMPTS = 1000
# C0 and C1 controls and the Unicode line separators: NUL is refused by PostgreSQL, the others
# break log lines, `status` tables and headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# Tags are stored joined by spaces and split on whitespace when read back.
_NOT_IN_A_TAG = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_WATCH_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*watch[ \t]*\]\]", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    url: str = DEFAULT_DATABASE_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class JapanPostSettings:
    base_url: str = DEFAULT_BASE_URL
    request_interval: float = 5.0
    budget: str = "shared"
    """"shared": on PostgreSQL every instance takes its request slots from one budget in the
    database; "per_instance": each instance paces itself (instances leaving through different
    IP addresses)."""
    # After `circuit_failures` failed requests in a row, polling pauses `circuit_pause`,
    # doubling each time it opens again up to `circuit_pause_max`.
    circuit_failures: int = 5
    circuit_pause: dt.timedelta = dt.timedelta(minutes=1)
    circuit_pause_max: dt.timedelta = dt.timedelta(minutes=30)
    # No successful request for this long raises one `site_down` alert (and one notice on recovery).
    down_alert_after: dt.timedelta = dt.timedelta(minutes=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationSettings:
    sender: str = "notifier <notifier@localhost>"
    shop_name: str = "Our shop"
    # Shown in every message's footer as a tel: link; "" leaves it out.
    shop_phone: str = ""
    operator: str | None = None
    reply_to: str | None = None
    unsubscribe: str | None = None
    templates: Path | None = None
    outbox_dir: Path = Path("outbox")
    quiet_hours: tuple[dt.time, dt.time] | None = None
    # The zone quiet hours follow for a subscriber with neither a zone of their own nor a
    # destination country with one (notifier/country_zones.csv); required with quiet_hours.
    default_time_zone: str | None = None
    max_attempts: int = 8
    outbox_lease: dt.timedelta = dt.timedelta(minutes=5)
    # Operator alerts are emailed this long after the first one not yet sent, gathered into one.
    alert_batch: dt.timedelta = dt.timedelta(minutes=5)
    # Each new operator alert is also POSTed here as JSON ({"text": ...} for Slack and alike).
    operator_webhook: str | None = None
    # Pinged after good poll cycles, URL/fail after failing ones (healthchecks.io style).
    heartbeat_url: str | None = None
    # Branding of customer messages: a logo (https), the accent colour of the header, buttons
    # and links (#rrggbb, at least 4.5:1 against white) and a link to the shop in the footer.
    logo_url: str | None = None
    brand_color: str | None = None
    shop_url: str | None = None
    rules: RulesConfig = field(default_factory=RulesConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """The optional web face ([http]): where it listens, how customers reach it, what signs its links."""

    host: str
    port: int
    # Without a trailing slash; links are public_url + "/u/..." and "/t/...".
    public_url: str
    # Signs every link (tokens.py); "" only while Settings.http_secret_problem says why.
    secret: str = field(default="", repr=False)
    # The operator board's password, as a hash only; None: no board (/admin/ answers 404).
    admin_password: PasswordHash | None = field(default=None, repr=False)

    @property
    def listen(self) -> str:
        """host:port as the configuration writes it ([::1]:8080 for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeSettings:
    """[intake]: shop platforms' webhooks; each route exists only when its secret is set."""

    shopify_secret: str | None = field(default=None, repr=False)
    woocommerce_secret: str | None = field(default=None, repr=False)
    # The messages' language when the payload names no customer locale.
    default_locale: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One watched number and who hears about it."""

    number: str
    label: str = ""
    # The customer's name, for the greeting of their messages; "" greets without one.
    name: str = ""
    subscribers: tuple[str, ...] = ()
    locale: str = "en"
    tags: frozenset[str] = frozenset()
    destination: str | None = None
    time_zone: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: Path | None = None
    watches: tuple[Watch, ...] = ()
    watch_files: tuple[Path, ...] = ()
    # The watch_files patterns, anchored at the config's folder: the daemon globs them again to
    # notice a watch file added or removed, not only one edited.
    watch_patterns: tuple[str, ...] = ()
    polling: PollingPolicy = field(default_factory=PollingPolicy)
    poll_tick: float = 5.0
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    japanpost: JapanPostSettings = field(default_factory=JapanPostSettings)
    smtp: SmtpSettings | None = None
    # [smtp] names a login whose password this process cannot see (file:line: key: why). Only
    # what sends mail refuses it (`sending_smtp`); under systemd the service has the credential.
    smtp_login_problem: str | None = None
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    http: HttpSettings | None = None
    # [http] is set but its secret cannot be had here (file:line: key: why, where it looked).
    # As with smtp_login_problem, only what serves or queues customer mail refuses it
    # (`web_secret`): `status` beside a systemd service does not see the service's credential.
    http_secret_problem: str | None = None
    # [smtp] allow_example_identity = true, honoured only for a relay on this machine: a trial
    # may send as the example shop. Logged at every start and shown by `config check`.
    example_identity_allowed: bool = False
    # [estimates]: delivery windows' width and where customers read them.
    estimates: WindowSettings = field(default_factory=WindowSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key as declared: its table, name, type, default and a one-line doc."""

    section: str
    name: str
    type: str
    default: str
    doc: str


def _shown_default(value: object) -> str:
    """A default as the config file would write it: durations in their largest whole unit."""
    if value is None:
        return "(none)"
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f'"{seconds // size}{unit}"'
        return f'"{seconds}s"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | Path):
        return f'"{value}"'
    return str(value)


_JP = JapanPostSettings()
_NOTE = NotificationSettings()
_POLL = PollingPolicy()
_RULES = RulesConfig()
_EST = WindowSettings()
_D = _shown_default
# Every key the config accepts, in the order the reference page lists them. The sets of known
# keys below are derived from it: a key accepted is a key documented.
KEYS: tuple[Key, ...] = (
    Key("database", "url", "URL", _D(DEFAULT_DATABASE_URL), "SQLite or PostgreSQL SQLAlchemy URL"),
    Key(
        "japanpost",
        "base_url",
        "http(s) URL",
        _D(_JP.base_url),
        "the tracking site (or `notifier simulator`)",
    ),
    Key(
        "japanpost",
        "request_interval",
        "duration",
        _D(_JP.request_interval),
        "least gap between two requests",
    ),
    Key(
        "japanpost",
        "budget",
        "shared | per_instance",
        _D(_JP.budget),
        "one request budget for all instances, or one each",
    ),
    Key(
        "japanpost",
        "circuit_failures",
        "whole 1-1000",
        _D(_JP.circuit_failures),
        "failed requests in a row that pause polling",
    ),
    Key("japanpost", "circuit_pause", "duration", _D(_JP.circuit_pause), "first pause after those failures"),
    Key(
        "japanpost",
        "circuit_pause_max",
        "duration",
        _D(_JP.circuit_pause_max),
        "longest pause (each doubles)",
    ),
    Key(
        "japanpost",
        "down_alert_after",
        "duration",
        _D(_JP.down_alert_after),
        "every request failing this long raises site_down",
    ),
    Key(
        "polling",
        "tick",
        "duration",
        _D(dt.timedelta(seconds=Settings().poll_tick)),
        "how often the daemon looks for due shipments (at least 0.1 s)",
    ),
    Key("polling", "intervals", "table of durations", "per stage", "poll interval for each stage"),
    Key(
        "polling",
        "fixed_interval",
        "duration",
        _D(_POLL.fixed_interval),
        "one interval for everything (tests, demos)",
    ),
    Key("polling", "jitter", "fraction 0 to <1", _D(_POLL.jitter), "spread of poll times"),
    Key(
        "polling",
        "pending_give_up",
        "duration",
        _D(_POLL.pending_give_up),
        'stop polling a number "not found" this long',
    ),
    Key(
        "polling",
        "terminal_grace",
        "duration",
        _D(_POLL.terminal_grace),
        "keep polling slowly after delivered/returned",
    ),
    Key(
        "polling", "stale_give_up", "duration", _D(_POLL.stale_give_up), "stop when nothing changed this long"
    ),
    Key("polling", "watch_files", "list of patterns", "[]", "more files of [[watch]] tables"),
    Key("polling", "lease", "duration", "fits the request pace", "how long a claim on due shipments lasts"),
    Key("smtp", "host", "host name", "(required)", "the relay; without [smtp] mail goes to .eml files"),
    Key("smtp", "port", "1-65535", "587 / 465 / 25", "by security: starttls / tls / none"),
    Key("smtp", "security", "starttls | tls | none", '"starttls"', "none only to a relay on this machine"),
    Key("smtp", "from", "address", "(required)", "who messages come from"),
    Key(
        "smtp",
        "username",
        "text",
        "(none)",
        "the login; its password comes from password_file, the environment or systemd",
    ),
    Key(
        "smtp",
        "password_file",
        "path",
        "(none)",
        "file holding the password (else $NOTIFIER_SMTP_PASSWORD, credential smtp-password)",
    ),
    Key("smtp", "timeout", "duration", '"60s"', "total deadline per message"),
    Key("smtp", "validate_certs", "true | false", "true", "verify the relay's certificate"),
    Key("smtp", "ca_file", "path", "(none)", "a private CA for the relay"),
    Key("smtp", "local_hostname", "host name", "(none)", "the name sent in EHLO"),
    Key(
        "smtp",
        "allow_example_identity",
        "true | false",
        "false",
        "a trial on a loopback relay may send as the example shop",
    ),
    Key("notifications", "operator", "address", _D(_NOTE.operator), "where alerts and the daily digest go"),
    Key("notifications", "shop_name", "text", _D(_NOTE.shop_name), "the shop in every message"),
    Key("notifications", "shop_phone", "phone number", "(none)", "the footer's tap-to-call link"),
    Key(
        "notifications",
        "reply_to",
        "address",
        _D(_NOTE.reply_to),
        'the footer\'s address and "Email us" button',
    ),
    Key(
        "notifications",
        "unsubscribe",
        "mailto: or https: URI",
        "mailto: operator",
        "List-Unsubscribe target ({email}, {number})",
    ),
    Key("notifications", "templates", "folder", _D(_NOTE.templates), "templates replacing the packaged ones"),
    Key("notifications", "outbox_dir", "folder", _D(_NOTE.outbox_dir), ".eml files when there is no [smtp]"),
    Key(
        "notifications",
        "quiet_hours",
        "HH:MM-HH:MM",
        _D(_NOTE.quiet_hours),
        "messages wait until the window ends",
    ),
    Key(
        "notifications",
        "default_time_zone",
        "IANA zone",
        _D(_NOTE.default_time_zone),
        "zone for quiet hours when none is known",
    ),
    Key(
        "notifications",
        "max_attempts",
        "whole 1-1000",
        _D(_NOTE.max_attempts),
        "attempts before a message fails",
    ),
    Key(
        "notifications",
        "outbox_lease",
        "duration",
        _D(_NOTE.outbox_lease),
        "how long a sender holds a message",
    ),
    Key(
        "notifications",
        "alert_batch",
        "duration, at most 1d",
        _D(_NOTE.alert_batch),
        "alerts gathered into one email",
    ),
    Key(
        "notifications",
        "operator_webhook",
        "http(s) URL",
        _D(_NOTE.operator_webhook),
        "each new alert POSTed as JSON",
    ),
    Key("notifications", "heartbeat_url", "http(s) URL", _D(_NOTE.heartbeat_url), "pinged after poll cycles"),
    Key("notifications", "logo_url", "https URL", _D(_NOTE.logo_url), "logo at the top of messages"),
    Key(
        "notifications", "brand_color", "#rrggbb", '"#1d4f91"', "header, buttons, links; 4.5:1 against white"
    ),
    Key("notifications", "shop_url", "https URL", _D(_NOTE.shop_url), "link to the shop in the footer"),
    Key(
        "notifications",
        "baseline",
        "current | none | all",
        _D(_RULES.baseline.value),
        "what the first sight of a shipment announces",
    ),
    Key(
        "notifications",
        "multi_stage",
        "latest | each",
        _D(_RULES.multi_stage.value),
        "several stages between two polls",
    ),
    Key(
        "notifications",
        "max_event_age",
        "duration",
        _D(_RULES.max_event_age),
        "older events are history, not news",
    ),
    Key(
        "notifications",
        "settle",
        "duration",
        _D(_RULES.settle),
        "non-urgent news waits this long for the next scan",
    ),
    Key(
        "notifications",
        "stall",
        "table of durations",
        "per stage",
        '"no new event" limits ("off" switches one off)',
    ),
    Key(
        "notifications",
        "retention",
        "table",
        f"hold (none), remind_before {_D(_RULES.retention_remind_before)}",
        "reminder before a known hold ends; hold: the shop's own period where none is known",
    ),
    Key(
        "notifications",
        "rule",
        "array of tables",
        "the default rules",
        "rules ([[notifications.rule]] below)",
    ),
    Key(
        "notifications.rule",
        "name",
        "text",
        "(required)",
        "a default rule's name changes it; another adds one",
    ),
    Key("notifications.rule", "stages", "list of stages", "(required for a new rule)", "stages it announces"),
    Key(
        "notifications.rule", "template", "template name", "(required for a new rule)", "the message it sends"
    ),
    Key("notifications.rule", "enabled", "true | false", "true", "switch a rule off or on"),
    Key(
        "notifications.rule",
        "item_types",
        "list",
        "(any)",
        "class of goods as Japan Post prints it (e.g. EMS)",
    ),
    Key("notifications.rule", "destinations", "list of country codes", "(any)", "the watch's destination"),
    Key("notifications.rule", "tags", "list", "(any)", "any of the watch's tags"),
    Key(
        "estimates",
        "calibration",
        "conservative | balanced | aggressive",
        _D(_EST.calibration.value),
        "how wide delivery windows are (balanced aims at 9 in 10 inside)",
    ),
    Key(
        "estimates",
        "mail",
        "history | always | never",
        _D(_EST.mail.value),
        "windows in customer mail: from the lane's own deliveries, also the prior's, or none",
    ),
    Key("http", "listen", "host:port", "(required)", "where the web face listens"),
    Key("http", "public_url", "http(s) URL", "(required)", "how customers reach it; links in mail use it"),
    Key(
        "http",
        "secret_file",
        "path",
        "(none)",
        "signs links (else $NOTIFIER_HTTP_SECRET, credential http-secret)",
    ),
    Key("http", "secret", "-", "-", "refused: secrets do not go in the config file"),
    Key(
        "http",
        "admin_password_file",
        "path",
        "(none)",
        "the operator board's password (else $NOTIFIER_HTTP_ADMIN_PASSWORD)",
    ),
    Key("http", "admin_password", "-", "-", "refused: passwords do not go in the config file"),
    Key(
        "intake",
        "shopify_secret_file",
        "path",
        "(none)",
        "Shopify webhook secret (else $NOTIFIER_SHOPIFY_SECRET, credential shopify-secret)",
    ),
    Key(
        "intake",
        "woocommerce_secret_file",
        "path",
        "(none)",
        "WooCommerce webhook secret (else $NOTIFIER_WOOCOMMERCE_SECRET, credential woocommerce-secret)",
    ),
    Key("intake", "default_locale", "en | ja", '"en"', "messages' language when the order names none"),
    Key("watch", "number", "tracking number", "(required)", "the number watched"),
    Key("watch", "label", "text, at most 200", '""', "shown in messages (e.g. the order)"),
    Key("watch", "name", "text", '""', "the customer's name for the greeting"),
    Key("watch", "subscribers", "list of addresses", "[]", "who hears about it"),
    Key("watch", "locale", "en | ja", '"en"', "language of the messages"),
    Key("watch", "tags", "list of words", "[]", "for rules"),
    Key("watch", "destination", "country code", "(none)", "for rules and the destination post's link"),
    Key("watch", "time_zone", "IANA zone", "(none)", "for quiet hours"),
)


def _keys_of(section: str) -> set[str]:
    return {key.name for key in KEYS if key.section == section}


# "secret" and "admin_password" are refused with their own message, not as unknown keys.
_KNOWN: dict[str, set[str]] = {
    section: _keys_of(section)
    for section in (
        "database",
        "japanpost",
        "smtp",
        "notifications",
        "http",
        "polling",
        "estimates",
        "intake",
    )
}
_RULE_KEYS = _keys_of("notifications.rule")
_WATCH_KEYS = _keys_of("watch")
