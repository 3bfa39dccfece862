"""[notifications] and its notification rules, checked into NotificationSettings."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from notifier.config.checks import (
    _STAGE_NAMES,
    _TEMPLATE_NAMES,
    _address,
    _brand_color,
    _https_url,
    _one_of,
    _outbound_url,
    _parse_clock,
    _phone,
    _section,
    _set_of,
    _stored_text,
    _string,
    _too_long,
    parse_duration,
)
from notifier.config.settings import _RULE_KEYS, MAX_ATTEMPTS, NotificationSettings
from notifier.config.sources import _file_path, is_folder
from notifier.config.toml import _Problems
from notifier.config.watches import _zone_problem
from notifier.core.messages import Template
from notifier.core.mime import header_token
from notifier.core.rules import (
    DEFAULT_RULES,
    DEFAULT_STALLS,
    Baseline,
    MultiStage,
    Rule,
    RulesConfig,
    StallRule,
    merge_rules,
)
from notifier.core.stages import Stage
from notifier.store.orm import OutboxMessage


def _understood(url: str) -> bool:
    """Whether Apprise has a plugin that accepts `url` (scheme known, fields valid). Its
    complaint may quote the URL, so Apprise's log stays out of ours (as in notifier.net.channels)."""
    import apprise  # loaded only by a configuration that lists channels

    logging.getLogger("apprise").propagate = False
    return apprise.Apprise.instantiate(url) is not None


def _apprise_urls(value: object, dotted: str, problems: _Problems) -> tuple[str, ...]:
    """Apprise URLs, each one Apprise understands; an error names the entry, never its text
    (most carry a token)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(dotted, 'must be a list of Apprise URLs, like ["ntfys://ntfy.sh/your-topic"]')
        return ()
    urls = tuple(v.strip() for v in value)
    for index, url in enumerate(urls, 1):
        if not _understood(url):
            scheme = url.split("://", 1)[0][:20] if "://" in url else "no scheme"
            problems.add(
                dotted,
                f"entry {index} ({scheme}) is not a URL Apprise understands (unknown service, or a "
                "field it refuses); see https://github.com/caronc/apprise/wiki",
            )
    if len(set(urls)) != len(urls):
        problems.add(dotted, "lists the same URL twice (each would get every alert twice)")
    return urls


def _rule(raw: dict[str, Any], dotted: str, base: Rule | None, problems: _Problems) -> Rule | None:
    """One [[notifications.rule]] entry; every problem in it is reported, not just the first."""
    before = len(problems.items)
    for key in sorted(set(raw) - _RULE_KEYS):
        problems.add(f"{dotted}.{key}", "unknown key")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(f"{dotted}.name", "every rule needs a name (a default rule's name overrides it)")
    elif not header_token(name):
        problems.add(
            f"{dotted}.name", "must contain ASCII letters or digits (it names the rule in each message)"
        )
    elif (reason := _stored_text(name, OutboxMessage.rule)) is not None:
        problems.add(f"{dotted}.name", reason)
    stages_raw = raw.get("stages", sorted(base.stages) if base else None)
    if not isinstance(stages_raw, list) or not stages_raw:
        problems.add(f"{dotted}.stages", "must list at least one stage")
        stages_raw = []
    bad = [s for s in stages_raw if not _one_of(s, _STAGE_NAMES)]
    if bad:
        problems.add(f"{dotted}.stages", f"not stage names: {', '.join(map(str, bad))}")
    default_template = str(base.template) if base else (stages_raw[0] if stages_raw else None)
    template_name = raw.get("template", default_template)
    if not _one_of(template_name, _TEMPLATE_NAMES):
        problems.add(f"{dotted}.template", f"no such message {template_name!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(f"{dotted}.enabled", "must be true or false")
    item_types = _set_of(raw.get("item_types"), f"{dotted}.item_types", problems)
    destinations = _set_of(raw.get("destinations"), f"{dotted}.destinations", problems, upper=True)
    tags = _set_of(raw.get("tags"), f"{dotted}.tags", problems)
    if len(problems.items) > before:
        return None
    return Rule(
        name=str(name),
        template=Template(str(template_name)),
        stages=frozenset(Stage(s) for s in stages_raw),
        enabled=enabled,
        item_types=item_types,
        destinations=destinations,
        tags=tags,
    )


def _rules(notifications: dict[str, Any], problems: _Problems) -> RulesConfig:
    defaults = RulesConfig()
    baseline = notifications.get("baseline", str(defaults.baseline))
    if not _one_of(baseline, {b.value for b in Baseline}):
        problems.add("notifications.baseline", "must be current, none or all")
        baseline = str(defaults.baseline)
    multi = notifications.get("multi_stage", str(defaults.multi_stage))
    if not _one_of(multi, {m.value for m in MultiStage}):
        problems.add("notifications.multi_stage", "must be latest or each")
        multi = str(defaults.multi_stage)
    max_age = defaults.max_event_age
    if "max_event_age" in notifications:
        try:
            max_age = parse_duration(notifications["max_event_age"])
        except ValueError as exc:
            problems.add("notifications.max_event_age", str(exc))
    settle = defaults.settle
    if "settle" in notifications:
        try:
            settle = parse_duration(notifications["settle"])
        except ValueError as exc:
            problems.add("notifications.settle", str(exc))
    stalls = dict(DEFAULT_STALLS)
    stall_table = notifications.get("stall", {})
    if not isinstance(stall_table, dict):
        problems.add("notifications.stall", "must be a table of stage = duration")
        stall_table = {}
    for stage_name, value in stall_table.items():
        dotted = f"notifications.stall.{stage_name}"
        if stage_name not in _STAGE_NAMES:
            problems.add(dotted, "not a stage name")
            continue
        stage = Stage(stage_name)
        if value is False or value == "off":
            stalls.pop(stage, None)
            continue
        try:
            after = parse_duration(value)
        except ValueError as exc:
            problems.add(dotted, str(exc))
            continue
        stalls[stage] = StallRule(
            after=after, normal=DEFAULT_STALLS.get(stage, StallRule(after=after, normal=False)).normal
        )
    # `hold` has no default: the holding period comes from Japan Post's rule at home and the
    # sourced country table abroad (notifier.core.retention); set, it is the shop's own figure
    # for the countries the table lacks, and only times the reminder (no message states it).
    hold: dt.timedelta | None = defaults.retention_hold
    remind_before = defaults.retention_remind_before
    retention = notifications.get("retention", {})
    if not isinstance(retention, dict):
        problems.add("notifications.retention", "must be a table")
        retention = {}
    for key in sorted(set(retention) - {"hold", "remind_before"}):
        problems.add(f"notifications.retention.{key}", "unknown key")
    if "hold" in retention:
        try:
            hold = parse_duration(retention["hold"])
        except ValueError as exc:
            problems.add("notifications.retention.hold", str(exc))
    if "remind_before" in retention:
        try:
            remind_before = parse_duration(retention["remind_before"])
        except ValueError as exc:
            problems.add("notifications.retention.remind_before", str(exc))
    overrides = []
    rule_list = notifications.get("rule", [])
    if not isinstance(rule_list, list):
        problems.add("notifications.rule", "must be an array of tables ([[notifications.rule]])")
        rule_list = []
    names = {rule.name: rule for rule in DEFAULT_RULES}
    for index, raw in enumerate(rule_list):
        dotted = f"notifications.rule[{index}]"
        if not isinstance(raw, dict):
            problems.add(dotted, "must be a table")
            continue
        name = raw.get("name")
        rule = _rule(raw, dotted, names.get(name) if isinstance(name, str) else None, problems)
        if rule is not None:
            overrides.append(rule)
    return RulesConfig(
        rules=merge_rules(DEFAULT_RULES, overrides),
        baseline=Baseline(baseline),
        multi_stage=MultiStage(multi),
        max_event_age=max_age,
        settle=settle,
        stalls=stalls,
        retention_hold=hold,
        retention_remind_before=remind_before,
    )


def _notifications(
    data: dict[str, Any], problems: _Problems, base: Path, sender: str | None
) -> NotificationSettings:
    table = _section(data, "notifications", problems)
    defaults = NotificationSettings()
    quiet = None
    if "quiet_hours" in table:
        value = table["quiet_hours"]
        try:
            if not isinstance(value, str) or "-" not in value:
                raise ValueError(f'{value!r} is not a window like "21:00-08:00"')
            start, end = (part for part in value.split("-", 1))
            quiet = (_parse_clock(start), _parse_clock(end))
        except ValueError as exc:
            problems.add("notifications.quiet_hours", str(exc))
    default_zone = _string(table, "default_time_zone", "notifications.default_time_zone", problems)
    if default_zone is not None and (reason := _zone_problem(default_zone)) is not None:
        problems.add("notifications.default_time_zone", reason)
        default_zone = None
    elif default_zone is None and "quiet_hours" in table and "default_time_zone" not in table:
        # Without it, quiet hours of subscribers with no zone would be kept in UTC: 21:00-08:00
        # UTC is 06:00-17:00 in Japan, the middle of the day.
        line = problems.line_of("notifications.quiet_hours")
        problems.items.append(
            f"{problems.where}:{line}: notifications.default_time_zone: required when quiet_hours is set "
            '(the shop\'s IANA time zone, like default_time_zone = "Asia/Tokyo"): quiet hours follow '
            "each subscriber's time_zone, else their destination country's, else this"
            if line
            else problems.located(
                "notifications.default_time_zone",
                'required when quiet_hours is set (like default_time_zone = "Asia/Tokyo")',
            )
        )
    attempts = table.get("max_attempts", defaults.max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.add("notifications.max_attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS}")
        attempts = defaults.max_attempts
    lease = defaults.outbox_lease
    if "outbox_lease" in table:
        try:
            lease = parse_duration(table["outbox_lease"])
        except ValueError as exc:
            problems.add("notifications.outbox_lease", str(exc))
    alert_batch = defaults.alert_batch
    if "alert_batch" in table:
        try:
            alert_batch = parse_duration(table["alert_batch"])
        except ValueError as exc:
            problems.add("notifications.alert_batch", str(exc))
        else:
            if alert_batch > dt.timedelta(days=1):
                problems.add("notifications.alert_batch", "at most 1d (the daily digest covers longer)")
                alert_batch = defaults.alert_batch
    templates = _string(table, "templates", "notifications.templates", problems)
    template_dir = _file_path(base, templates) if templates else None
    if template_dir is not None and not is_folder(template_dir):
        problems.add("notifications.templates", f"{template_dir} is not a directory")
    outbox_dir = _string(table, "outbox_dir", "notifications.outbox_dir", problems)
    unsubscribe = _string(table, "unsubscribe", "notifications.unsubscribe", problems)
    if unsubscribe and not unsubscribe.startswith(("mailto:", "https:")):
        problems.add("notifications.unsubscribe", "must be a mailto: or https: URI")
    elif unsubscribe and not (unsubscribe.isascii() and unsubscribe.isprintable() and " " not in unsubscribe):
        problems.add(
            "notifications.unsubscribe", "must be printable ASCII without spaces (percent-encode the rest)"
        )
    operator = _address(table, "operator", "notifications.operator", problems, display=False)
    if operator is not None and (reason := _too_long(operator, OutboxMessage.recipient)) is not None:
        problems.add("notifications.operator", reason)
    if unsubscribe is None and operator:
        unsubscribe = f"mailto:{operator}?subject=unsubscribe%20{{email}}"
    return NotificationSettings(
        sender=sender or defaults.sender,
        shop_name=_string(table, "shop_name", "notifications.shop_name", problems) or defaults.shop_name,
        shop_phone=_phone(table, problems),
        operator=operator,
        reply_to=_address(table, "reply_to", "notifications.reply_to", problems, display=True),
        unsubscribe=unsubscribe,
        templates=template_dir,
        outbox_dir=_file_path(base, outbox_dir) if outbox_dir else defaults.outbox_dir,
        quiet_hours=quiet,
        default_time_zone=default_zone,
        max_attempts=attempts,
        outbox_lease=lease,
        alert_batch=alert_batch,
        operator_webhook=_outbound_url(table, "operator_webhook", "notifications.operator_webhook", problems),
        operator_urls=_apprise_urls(table.get("operator_urls"), "notifications.operator_urls", problems),
        heartbeat_url=_outbound_url(table, "heartbeat_url", "notifications.heartbeat_url", problems),
        logo_url=_https_url(table, "logo_url", "notifications.logo_url", problems),
        brand_color=_brand_color(table, problems),
        shop_url=_https_url(table, "shop_url", "notifications.shop_url", problems),
        rules=_rules(table, problems),
    )
