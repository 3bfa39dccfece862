"""[notifications] and its notification rules, checked into NotificationSettings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from notifier.config.keys import DECLARED, rule_template
from notifier.config.schema import Invalid, Snapshot, table_of
from notifier.config.settings import NotificationSettings
from notifier.config.toml import _Problems
from notifier.core.messages import Template
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


def _rule(
    raw: Mapping[str, Any], dotted: str, base: Rule | None, problems: _Problems, snap: Snapshot
) -> Rule | None:
    """One [[notifications.rule]] entry; every problem in it is reported, not just the first.
    A rule named like a default one changes it: its stages and template are the defaults'."""
    before = len(problems.items)
    values = DECLARED.walk(raw, "notifications.rule", problems, snap, dotted)
    stages: list[str] = values.get("stages", [])
    if "stages" not in raw:
        if base is not None:
            stages = sorted(base.stages)
        else:
            problems.add(f"{dotted}.stages", "must list at least one stage")
    template: str = values.get("template", "")
    if "template" not in raw:
        given = raw.get("stages")
        first = given[0] if isinstance(given, list) and given else None
        try:
            template = rule_template(str(base.template) if base else first)
        except Invalid as exc:
            problems.add(f"{dotted}.template", str(exc))
    if len(problems.items) > before:
        return None
    return Rule(
        name=values["name"],
        template=Template(template),
        stages=frozenset(Stage(s) for s in stages),
        enabled=values.get("enabled", True),
        item_types=values.get("item_types", frozenset()),
        destinations=values.get("destinations", frozenset()),
        tags=values.get("tags", frozenset()),
    )


def _rules(values: Mapping[str, Any], problems: _Problems, snap: Snapshot) -> RulesConfig:
    defaults = RulesConfig()
    stalls = dict(DEFAULT_STALLS)
    for stage, after in values.get("stall", {}).items():
        if after is None:  # "off"
            stalls.pop(stage, None)
        else:
            normal = DEFAULT_STALLS.get(stage, StallRule(after=after, normal=False)).normal
            stalls[stage] = StallRule(after=after, normal=normal)
    retention = values.get("retention", {})
    overrides = []
    names = {rule.name: rule for rule in DEFAULT_RULES}
    for index, raw in enumerate(values.get("rule", [])):
        dotted = f"notifications.rule[{index}]"
        if not isinstance(raw, dict):
            problems.add(dotted, "must be a table")
            continue
        name = raw.get("name")
        rule = _rule(raw, dotted, names.get(name) if isinstance(name, str) else None, problems, snap)
        if rule is not None:
            overrides.append(rule)
    return RulesConfig(
        rules=merge_rules(DEFAULT_RULES, overrides),
        baseline=Baseline(values.get("baseline", defaults.baseline.value)),
        multi_stage=MultiStage(values.get("multi_stage", defaults.multi_stage.value)),
        max_event_age=values.get("max_event_age", defaults.max_event_age),
        settle=values.get("settle", defaults.settle),
        stalls=stalls,
        retention_hold=retention.get("hold", defaults.retention_hold),
        retention_remind_before=retention.get("remind_before", defaults.retention_remind_before),
    )


# The [notifications] keys that are NotificationSettings fields of the same name, as walked.
_FIELDS = (
    frozenset(field.name for field in dataclasses.fields(NotificationSettings))
    & DECLARED.names["notifications"]
)


def _notifications(
    data: Mapping[str, Any], problems: _Problems, snap: Snapshot, sender: str | None
) -> NotificationSettings:
    table = table_of(data, "notifications", problems)
    values = DECLARED.walk(table, "notifications", problems, snap)
    if "quiet_hours" in table and "default_time_zone" not in table:
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
    operator = values.get("operator")
    unsubscribe = values.get("unsubscribe")
    if unsubscribe is None and operator:
        unsubscribe = f"mailto:{operator}?subject=unsubscribe%20{{email}}"
    simple = {name: value for name, value in values.items() if name in _FIELDS}
    simple["unsubscribe"] = unsubscribe
    return NotificationSettings(
        **simple, sender=sender or NotificationSettings().sender, rules=_rules(values, problems, snap)
    )
