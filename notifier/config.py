"""Configuration files (TOML) to validated, frozen settings; every problem names its file and key."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier.client import DEFAULT_BASE_URL
from notifier.db import DEFAULT_DATABASE_URL
from notifier.errors import ConfigError

CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    url: str = DEFAULT_DATABASE_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class JapanPostSettings:
    base_url: str = DEFAULT_BASE_URL
    request_interval: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: Path | None = None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    japanpost: JapanPostSettings = field(default_factory=JapanPostSettings)


_KNOWN: dict[str, set[str]] = {
    "database": {"url"},
    "japanpost": {"base_url", "request_interval"},
}


def _table(data: dict[str, Any], name: str, where: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"{where}: [{name}] must be a table")
        return {}
    for key in sorted(set(value) - _KNOWN[name]):
        problems.append(f"{where}: unknown key {name}.{key}")
    return value


def parse_settings(text: str, source: Path | None = None) -> Settings:
    """Validate the config text. Keys other sections of the file use are left to their owners."""
    where = str(source) if source else "<config>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    problems: list[str] = []
    database = _table(data, "database", where, problems)
    japanpost = _table(data, "japanpost", where, problems)
    url = database.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str) or not url:
        problems.append(f"{where}: database.url must be a non-empty string")
    base_url = japanpost.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        problems.append(f"{where}: japanpost.base_url must be an http(s) URL")
    interval = japanpost.get("request_interval", 5.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        problems.append(f"{where}: japanpost.request_interval must be a number of seconds >= 0")
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(
        source=source,
        database=DatabaseSettings(url=str(url)),
        japanpost=JapanPostSettings(base_url=str(base_url), request_interval=float(interval)),
    )


def load_settings(path: str | None, *, database_url: str | None = None) -> Settings:
    """`--config PATH`, else $NOTIFIER_CONFIG, else defaults; `--database-url` or
    $NOTIFIER_DATABASE_URL override the file's database URL."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        source = Path(chosen)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from exc
        settings = parse_settings(text, source)
    else:
        settings = Settings()
    override = database_url or os.environ.get(DATABASE_URL_ENV)
    if override:
        settings = Settings(
            source=settings.source, database=DatabaseSettings(url=override), japanpost=settings.japanpost
        )
    return settings
