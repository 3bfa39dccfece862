"""Every configuration key, declared once: its table, kind, default and one-line doc.

The walker (schema.Declaration.walk) checks each table against these keys, the reference page
(reference.py → docs/reference/configuration.md) is generated from them, and the sets of known
keys come from them: a key accepted is a key checked and documented. To add a setting, add one
Key here and its field to the dataclass in settings.py (docs/explanation/settings.md).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from notifier.config.checks import _STAGE_NAMES, _TEMPLATE_NAMES, _stored_text
from notifier.config.kinds import (
    Address,
    AppriseUrls,
    Checked,
    Choice,
    ClockWindow,
    Color,
    DatabaseUrl,
    Duration,
    Durations,
    FilePath,
    Flag,
    Folder,
    Fraction,
    HttpsUrl,
    Listen,
    OutboundUrl,
    Patterns,
    Phone,
    PublicUrl,
    Refused,
    Sender,
    SiteUrl,
    StageDurations,
    StoredText,
    Tables,
    Text,
    Unsubscribe,
    Whole,
    Words,
    Zone,
)
from notifier.config.schema import Declaration, Invalid, Key
from notifier.config.settings import (
    API_TOKEN_ENV,
    HTTP_ADMIN_PASSWORD_ENV,
    HTTP_SECRET_ENV,
    MAX_ATTEMPTS,
    JapanPostSettings,
    NotificationSettings,
    Settings,
)
from notifier.config.watch_kinds import Country, Subscribers, Tags, TrackingNumber
from notifier.core.adaptive import DEFAULT_TARGETS, Rule
from notifier.core.mime import header_token
from notifier.core.policy import PollingPolicy
from notifier.core.rules import Baseline, MultiStage, RulesConfig
from notifier.core.windows import WindowSettings
from notifier.store.database import DEFAULT_DATABASE_URL
from notifier.store.orm import OutboxMessage, Shipment, Subscription


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


_NO_NAME = "every rule needs a name (a default rule's name overrides it)"


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(_NO_NAME)
    if not header_token(value):
        raise Invalid("must contain ASCII letters or digits (it names the rule in each message)")
    if (reason := _stored_text(value, OutboxMessage.rule)) is not None:
        raise Invalid(reason)
    return value


def rule_stages(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Invalid("must list at least one stage")
    if bad := [s for s in value if not (isinstance(s, str) and s in _STAGE_NAMES)]:
        raise Invalid(f"not stage names: {', '.join(map(str, bad))}")
    return value


def rule_template(value: Any) -> str:
    if not (isinstance(value, str) and value in _TEMPLATE_NAMES):
        raise Invalid(f"no such message {value!r}")
    return value


_JP = JapanPostSettings()
_NOTE = NotificationSettings()
_POLL = PollingPolicy()
_RULES = RulesConfig()


def _open_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise Invalid("must be a fraction above 0 and below 1 (e.g. 0.2)")
    return float(value)


_EST = WindowSettings()
_D = _shown_default
_POSITIVE = Duration(positive=True)
_SECONDS = Duration(seconds=True)
_SECRET_PATH = FilePath(message="must be a path")
# Every key the config accepts, in the order the reference page lists them.
KEYS: tuple[Key, ...] = (
    Key("database", "url", DatabaseUrl(), _D(DEFAULT_DATABASE_URL), "SQLite or PostgreSQL SQLAlchemy URL"),
    Key("japanpost", "base_url", SiteUrl(), _D(_JP.base_url), "the tracking site (or `notifier simulator`)"),
    Key(
        "japanpost", "request_interval", _SECONDS, _D(_JP.request_interval), "least gap between two requests"
    ),
    Key(
        "japanpost",
        "budget",
        Choice(("shared", "per_instance"), 'must be "shared" or "per_instance"'),
        _D(_JP.budget),
        "one request budget for all instances, or one each",
    ),
    Key(
        "japanpost",
        "circuit_failures",
        Whole(1, 1000),
        _D(_JP.circuit_failures),
        "failed requests in a row that pause polling",
    ),
    Key("japanpost", "circuit_pause", _POSITIVE, _D(_JP.circuit_pause), "first pause after those failures"),
    Key(
        "japanpost", "circuit_pause_max", _POSITIVE, _D(_JP.circuit_pause_max), "longest pause (each doubles)"
    ),
    Key(
        "japanpost",
        "down_alert_after",
        Duration(),
        _D(_JP.down_alert_after),
        "every request failing this long raises site_down",
    ),
    Key(
        "polling",
        "tick",
        Duration(seconds=True, least_seconds=0.1),
        _D(dt.timedelta(seconds=Settings().poll_tick)),
        "how often the daemon looks for due shipments (at least 0.1 s)",
    ),
    Key("polling", "intervals", StageDurations(), "per stage", "poll interval for each stage"),
    Key(
        "polling",
        "fixed_interval",
        Duration(),
        _D(_POLL.fixed_interval),
        "one interval for everything (tests, demos)",
    ),
    Key("polling", "jitter", Fraction(), _D(_POLL.jitter), "spread of poll times"),
    Key(
        "polling",
        "adaptive",
        Flag(),
        _D(_POLL.adaptive.enabled),
        "poll when the lane's history says a scan is likely (no history: `intervals`)",
    ),
    Key(
        "polling",
        "adaptive_rule",
        Choice(tuple(str(rule) for rule in Rule), f"must be {' or '.join(str(rule) for rule in Rule)}"),
        _D(str(_POLL.adaptive.rule)),
        "balanced: short delays, tail too; frugal: fewest requests, longer tail",
    ),
    Key(
        "polling",
        "adaptive_target",
        Checked(_open_fraction, "fraction above 0 to below 1"),
        " / ".join(f"{v:g} ({r})" for r, v in DEFAULT_TARGETS.items()),
        "score of the chance of news a poll waits for (lower: sooner, more requests)",
    ),
    Key(
        "polling",
        "adaptive_min",
        StageDurations(positive=True),
        "per stage: interval / 4, at least 15m",
        "shortest interval adaptive polling may choose per stage",
    ),
    Key(
        "polling",
        "adaptive_max",
        StageDurations(positive=True),
        "per stage: interval × 4, at most 1d",
        "longest interval adaptive polling may choose per stage",
    ),
    Key(
        "polling",
        "pending_give_up",
        Duration(),
        _D(_POLL.pending_give_up),
        'stop polling a number "not found" this long',
    ),
    Key(
        "polling",
        "terminal_grace",
        Duration(),
        _D(_POLL.terminal_grace),
        "keep polling slowly after delivered/returned",
    ),
    Key(
        "polling", "stale_give_up", Duration(), _D(_POLL.stale_give_up), "stop when nothing changed this long"
    ),
    Key("polling", "watch_files", Patterns(), "[]", "more files of [[watch]] tables"),
    Key("polling", "lease", Duration(), "fits the request pace", "how long a claim on due shipments lasts"),
    Key(
        "smtp",
        "host",
        Text(),
        "(required)",
        "the relay; without [smtp] mail goes to .eml files",
        type="host name",
        required="is required in [smtp]",
    ),
    Key(
        "smtp",
        "port",
        Whole(1, 65535, "must be a port number 1-65535"),
        "587 / 465 / 25",
        "by security: starttls / tls / none",
        type="1-65535",
    ),
    Key(
        "smtp",
        "security",
        Choice(("starttls", "tls", "none"), "must be starttls, tls or none"),
        '"starttls"',
        "none only to a relay on this machine",
    ),
    Key(
        "smtp",
        "from",
        Sender(),
        "(required)",
        "who messages come from",
        required='is required in [smtp] (e.g. "Shop <shop@example.com>")',
    ),
    Key(
        "smtp",
        "username",
        Text(),
        "(none)",
        "the login; its password comes from password_file, the environment or systemd",
    ),
    Key(
        "smtp",
        "password_file",
        _SECRET_PATH,
        "(none)",
        "file holding the password (else $NOTIFIER_SMTP_PASSWORD, credential smtp-password)",
    ),
    Key(
        "smtp",
        "password",
        Refused("passwords do not go in the config file; use password_file or $NOTIFIER_SMTP_PASSWORD"),
        "-",
        "refused: passwords do not go in the config file",
    ),
    Key("smtp", "timeout", Duration(positive=True, seconds=True), '"60s"', "total deadline per message"),
    Key("smtp", "validate_certs", Flag(), "true", "verify the relay's certificate"),
    Key("smtp", "ca_file", FilePath(exists="smtp.cert_bundle"), "(none)", "a private CA for the relay"),
    Key("smtp", "local_hostname", Text(), "(none)", "the name sent in EHLO", type="host name"),
    Key(
        "smtp",
        "allow_example_identity",
        Flag(),
        "false",
        "a trial on a loopback relay may send as the example shop",
    ),
    Key(
        "notifications",
        "operator",
        Address(fits=(OutboxMessage.recipient,)),
        _D(_NOTE.operator),
        "where alerts and the daily digest go",
    ),
    Key("notifications", "shop_name", Text(), _D(_NOTE.shop_name), "the shop in every message"),
    Key("notifications", "shop_phone", Phone(), "(none)", "the footer's tap-to-call link"),
    Key(
        "notifications",
        "reply_to",
        Address(display=True),
        _D(_NOTE.reply_to),
        'the footer\'s address and "Email us" button',
    ),
    Key(
        "notifications",
        "unsubscribe",
        Unsubscribe(),
        "mailto: operator",
        "List-Unsubscribe target ({email}, {number})",
    ),
    Key(
        "notifications",
        "templates",
        Folder(exists=True),
        _D(_NOTE.templates),
        "templates replacing the packaged ones",
    ),
    Key("notifications", "outbox_dir", Folder(), _D(_NOTE.outbox_dir), ".eml files when there is no [smtp]"),
    Key(
        "notifications",
        "quiet_hours",
        ClockWindow(),
        _D(_NOTE.quiet_hours),
        "messages wait until the window ends",
    ),
    Key(
        "notifications",
        "default_time_zone",
        Zone(fits=(Subscription.time_zone, OutboxMessage.time_zone)),
        _D(_NOTE.default_time_zone),
        "zone for quiet hours when none is known",
    ),
    Key(
        "notifications",
        "max_attempts",
        Whole(1, MAX_ATTEMPTS),
        _D(_NOTE.max_attempts),
        "attempts before a message fails",
    ),
    Key(
        "notifications",
        "outbox_lease",
        Duration(),
        _D(_NOTE.outbox_lease),
        "how long a sender holds a message",
    ),
    Key(
        "notifications",
        "alert_batch",
        Duration(most=dt.timedelta(days=1), most_message="at most 1d (the daily digest covers longer)"),
        _D(_NOTE.alert_batch),
        "alerts gathered into one email",
        type="duration, at most 1d",
    ),
    Key(
        "notifications",
        "operator_webhook",
        OutboundUrl(),
        _D(_NOTE.operator_webhook),
        "each new alert POSTed as JSON",
    ),
    Key(
        "notifications",
        "operator_urls",
        AppriseUrls(),
        "[]",
        "each new alert and the daily digest, short text",
    ),
    Key("notifications", "heartbeat_url", OutboundUrl(), _D(_NOTE.heartbeat_url), "pinged after poll cycles"),
    Key("notifications", "logo_url", HttpsUrl(), _D(_NOTE.logo_url), "logo at the top of messages"),
    Key("notifications", "brand_color", Color(), '"#1d4f91"', "header, buttons, links; 4.5:1 against white"),
    Key("notifications", "shop_url", HttpsUrl(), _D(_NOTE.shop_url), "link to the shop in the footer"),
    Key(
        "notifications",
        "baseline",
        Choice(tuple(b.value for b in Baseline), "must be current, none or all"),
        _D(_RULES.baseline.value),
        "what the first sight of a shipment announces",
    ),
    Key(
        "notifications",
        "multi_stage",
        Choice(tuple(m.value for m in MultiStage), "must be latest or each"),
        _D(_RULES.multi_stage.value),
        "several stages between two polls",
    ),
    Key(
        "notifications",
        "max_event_age",
        Duration(),
        _D(_RULES.max_event_age),
        "older events are history, not news",
    ),
    Key(
        "notifications",
        "settle",
        Duration(),
        _D(_RULES.settle),
        "non-urgent news waits this long for the next scan",
    ),
    Key(
        "notifications",
        "stall",
        StageDurations(off=True),
        "per stage",
        '"no new event" limits ("off" switches one off)',
    ),
    Key(
        "notifications",
        "retention",
        Durations(("hold", "remind_before")),
        f"hold (none), remind_before {_D(_RULES.retention_remind_before)}",
        "reminder before a known hold ends; hold: the shop's own period where none is known",
    ),
    Key(
        "notifications",
        "rule",
        Tables("notifications.rule", "must be an array of tables ([[notifications.rule]])"),
        "the default rules",
        "rules ([[notifications.rule]] below)",
    ),
    Key(
        "notifications.rule",
        "name",
        Checked(_rule_name, "text"),
        "(required)",
        "a default rule's name changes it; another adds one",
        required=_NO_NAME,
    ),
    Key(
        "notifications.rule",
        "stages",
        Checked(rule_stages, "list of stages"),
        "(required for a new rule)",
        "stages it announces",
    ),
    Key(
        "notifications.rule",
        "template",
        Checked(rule_template, "template name"),
        "(required for a new rule)",
        "the message it sends",
    ),
    Key("notifications.rule", "enabled", Flag(), "true", "switch a rule off or on"),
    Key(
        "notifications.rule",
        "item_types",
        Words(),
        "(any)",
        "class of goods as Japan Post prints it (e.g. EMS)",
    ),
    Key(
        "notifications.rule",
        "destinations",
        Words(upper=True),
        "(any)",
        "the watch's destination",
        type="list of country codes",
    ),
    Key("notifications.rule", "tags", Words(), "(any)", "any of the watch's tags"),
    Key(
        "estimates",
        "calibration",
        Choice(
            ("conservative", "balanced", "aggressive"), 'must be "conservative", "balanced" or "aggressive"'
        ),
        _D(_EST.calibration.value),
        "how wide delivery windows are (balanced aims at 9 in 10 inside)",
    ),
    Key(
        "estimates",
        "mail",
        Choice(("history", "always", "never"), 'must be "history", "always" or "never"'),
        _D(_EST.mail.value),
        "windows in customer mail: from the lane's own deliveries, also the prior's, or none",
    ),
    Key(
        "http",
        "listen",
        Listen(),
        "(required)",
        "where the web face listens",
        required='is required in [http] (host:port, e.g. "127.0.0.1:8080")',
    ),
    Key(
        "http",
        "public_url",
        PublicUrl(),
        "(required)",
        "how customers reach it; links in mail use it",
        required='is required in [http]: the address customers open, e.g. "https://track.example.com"',
    ),
    Key(
        "http",
        "secret_file",
        _SECRET_PATH,
        "(none)",
        "signs links (else $NOTIFIER_HTTP_SECRET, credential http-secret)",
    ),
    Key(
        "http",
        "secret",
        Refused(f"secrets do not go in the config file; use secret_file or ${HTTP_SECRET_ENV}"),
        "-",
        "refused: secrets do not go in the config file",
    ),
    Key(
        "http",
        "admin_password_file",
        _SECRET_PATH,
        "(none)",
        "the operator board's password (else $NOTIFIER_HTTP_ADMIN_PASSWORD)",
    ),
    Key(
        "http",
        "admin_password",
        Refused(
            f"passwords do not go in the config file; use admin_password_file or ${HTTP_ADMIN_PASSWORD_ENV}"
        ),
        "-",
        "refused: passwords do not go in the config file",
    ),
    Key(
        "intake",
        "api_token_file",
        _SECRET_PATH,
        "(none)",
        "the JSON API's bearer token (else $NOTIFIER_API_TOKEN, credential api-token)",
    ),
    Key(
        "intake",
        "api_token",
        Refused(f"secrets do not go in the config file; use api_token_file or ${API_TOKEN_ENV}"),
        "-",
        "refused: secrets do not go in the config file",
    ),
    Key(
        "intake",
        "shopify_secret_file",
        _SECRET_PATH,
        "(none)",
        "Shopify webhook secret (else $NOTIFIER_SHOPIFY_SECRET, credential shopify-secret)",
    ),
    Key(
        "intake",
        "woocommerce_secret_file",
        _SECRET_PATH,
        "(none)",
        "WooCommerce webhook secret (else $NOTIFIER_WOOCOMMERCE_SECRET, credential woocommerce-secret)",
    ),
    Key(
        "intake",
        "default_locale",
        Choice(("en", "ja"), 'must be "en" or "ja"'),
        '"en"',
        "messages' language when the order names none",
    ),
    Key(
        "watch",
        "number",
        TrackingNumber(),
        "(required)",
        "the number watched",
        required="is required (the tracking number, like EJ123456785JP)",
    ),
    Key(
        "watch",
        "label",
        StoredText((Shipment.label,)),
        '""',
        "shown in messages (e.g. the order)",
        type="text, at most 200",
    ),
    Key("watch", "name", StoredText((Subscription.name,)), '""', "the customer's name for the greeting"),
    Key("watch", "subscribers", Subscribers(), "[]", "who hears about it"),
    Key("watch", "locale", Choice(("en", "ja"), "must be en or ja"), '"en"', "language of the messages"),
    Key("watch", "tags", Tags(), "[]", "for rules"),
    Key("watch", "destination", Country(), "(none)", "for rules and the destination post's link"),
    Key(
        "watch",
        "time_zone",
        Zone(fits=(Subscription.time_zone, OutboxMessage.time_zone)),
        "(none)",
        "for quiet hours",
    ),
)

DECLARED = Declaration(KEYS)
