"""[intake] settings (the JSON API's token) and a watch sent as JSON checked by the [[watch]] rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from notifier.config.checks import _section
from notifier.config.settings import (
    API_TOKEN_CREDENTIAL_NAME,
    API_TOKEN_ENV,
    API_TOKEN_MIN,
    IntakeSettings,
    Watch,
)
from notifier.config.sources import _find_secret, environment_has
from notifier.config.toml import _Problems
from notifier.config.watches import _watch


def _intake(data: dict[str, Any], problems: _Problems, base: Path) -> IntakeSettings:
    """[intake]: the API token from api_token_file, else $NOTIFIER_API_TOKEN, else the systemd
    credential `api-token`; without one the API is off."""
    table = _section(data, "intake", problems)
    if "api_token" in table:
        problems.add(
            "intake.api_token",
            f"secrets do not go in the config file; use api_token_file or ${API_TOKEN_ENV}",
        )
    token = _find_secret(
        table,
        "api_token_file",
        "intake",
        env=API_TOKEN_ENV,
        credential=API_TOKEN_CREDENTIAL_NAME,
        credential_key="intake",
        problems=problems,
        base=base,
    )
    if token is None:
        return IntakeSettings()
    if len(token) < API_TOKEN_MIN:
        if "api_token_file" in table:
            key, source = "intake.api_token_file", f"in {table['api_token_file']}"
        elif environment_has(API_TOKEN_ENV):
            key, source = "intake", f"in ${API_TOKEN_ENV}"
        else:
            key, source = "intake", f'of the systemd credential "{API_TOKEN_CREDENTIAL_NAME}"'
        problems.add(
            key,
            f"the API token {source} is {len(token)} characters long; at least {API_TOKEN_MIN} are "
            "needed (create one with `openssl rand -base64 32`)",
        )
        return IntakeSettings()
    return IntakeSettings(api_token=token)


class _FieldProblems(_Problems):
    """Problems of one watch sent as JSON: (field, reason) pairs, no file or line."""

    def __init__(self) -> None:
        super().__init__("", "request")
        self.fields: list[tuple[str, str]] = []

    def add(self, dotted: str, message: str) -> None:
        self.fields.append((dotted.removeprefix("watch[0]."), message))

    def watch_line(self, index: int, count: int) -> int | None:
        return None


def check_watch(raw: dict[str, Any]) -> tuple[Watch | None, list[tuple[str, str]]]:
    """A watch sent as a JSON object, checked as a [[watch]] table is (numbers by our rules,
    addresses as the config reads them, lengths against the columns): the watch when there is
    no problem, else the (field, reason) of every problem."""
    problems = _FieldProblems()
    watch = _watch(raw, 0, 1, problems)
    if problems.fields or watch is None:
        return None, problems.fields
    return watch, []
