"""The frozen settings dataclasses and their defaults (keys.py declares the keys that set them)."""

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
API_TOKEN_ENV = "NOTIFIER_API_TOKEN"
API_TOKEN_CREDENTIAL_NAME = "api-token"
# The JSON API's bearer token lets anyone holding it add and remove watches: as long as a link secret.
API_TOKEN_MIN = 16
# [intake]: the shop platforms' webhook signing secrets (config/intake.py).
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
    # Apprise URLs (Slack, Telegram, ntfy, json://...): each new alert and the daily digest, as short text.
    operator_urls: tuple[str, ...] = ()
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
    """[intake]: how numbers come in besides the watchlist and the CLI: shop platforms' webhooks
    (each route exists only when its secret is set) and the JSON API (only with its token)."""

    shopify_secret: str | None = field(default=None, repr=False)
    woocommerce_secret: str | None = field(default=None, repr=False)
    # The messages' language when the payload names no customer locale.
    default_locale: str = "en"
    # The JSON API's bearer token; None: no API (/api/v1/ answers 404).
    api_token: str | None = field(default=None, repr=False)


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
