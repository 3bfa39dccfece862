"""The configuration's only I/O: gathering its text, secret files, environment, systemd credentials
and watch files into one Snapshot, which parse.parse turns into Settings without any I/O."""

from __future__ import annotations

import dataclasses
import functools
import glob
import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from notifier.config.checks import _database_url, sending_smtp, web_secret
from notifier.config.keys import KEYS
from notifier.config.kinds import FilePath, Folder, watch_file_patterns
from notifier.config.parse import parse
from notifier.config.schema import Snapshot, Unreadable, WatchFile
from notifier.config.settings import (
    API_TOKEN_CREDENTIAL_NAME,
    API_TOKEN_ENV,
    CONFIG_ENV,
    CREDENTIAL_NAME,
    DATABASE_URL_ENV,
    HTTP_ADMIN_CREDENTIAL_NAME,
    HTTP_ADMIN_PASSWORD_ENV,
    HTTP_CREDENTIAL_NAME,
    HTTP_SECRET_ENV,
    SHOPIFY_CREDENTIAL_NAME,
    SHOPIFY_SECRET_ENV,
    SMTP_PASSWORD_ENV,
    WOOCOMMERCE_CREDENTIAL_NAME,
    WOOCOMMERCE_SECRET_ENV,
    DatabaseSettings,
    Settings,
)
from notifier.config.toml import _decode, _parse_toml
from notifier.errors import ConfigError
from notifier.store.database import DEFAULT_DATABASE_URL

# What the configuration may read besides its files: the secrets' variables and credentials.
_ENVIRONMENT = (
    SMTP_PASSWORD_ENV,
    HTTP_SECRET_ENV,
    HTTP_ADMIN_PASSWORD_ENV,
    API_TOKEN_ENV,
    SHOPIFY_SECRET_ENV,
    WOOCOMMERCE_SECRET_ENV,
)
_CREDENTIALS = (
    CREDENTIAL_NAME,
    HTTP_CREDENTIAL_NAME,
    HTTP_ADMIN_CREDENTIAL_NAME,
    API_TOKEN_CREDENTIAL_NAME,
    SHOPIFY_CREDENTIAL_NAME,
    WOOCOMMERCE_CREDENTIAL_NAME,
)
# The declared keys that name a path, found once: what gather resolves, reads or looks at.
_PATH_KEYS = tuple(key for key in KEYS if isinstance(key.kind, FilePath | Folder))


def _file_path(base: Path, text: str) -> Path:
    # os.path.expanduser never raises; Path.expanduser does when no home directory is known.
    return base / os.path.expanduser(text)


def _read_secret(file: Path) -> str | Unreadable:
    try:
        return file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return Unreadable(f"cannot read {file}: {exc.strerror}")
    except UnicodeDecodeError:
        return Unreadable(f"{file} is not UTF-8 text")


def _anchored(base: Path, pattern: str) -> str:
    """A watch_files pattern relative to the config's folder unless absolute (like
    /etc/notifier/watch.d/*.toml)."""
    return os.path.join(glob.escape(str(base)), os.path.expanduser(pattern))


def _fixed_folder(base: Path, pattern: str) -> Path:
    """The folder a watch_files pattern reads: its path up to the first wildcard, from `base`."""
    parts = Path(os.path.expanduser(pattern)).parts[:-1]
    return Path(base, *itertools.takewhile(lambda part: not glob.has_magic(part), parts))


def matching_watch_files(patterns: Sequence[str], source: Path | None = None) -> list[Path]:
    """The files the anchored patterns match, in order; names starting with a dot (editor and
    temporary files) are skipped. A file matched by two patterns counts once, and the config
    itself (watch_files = ["*.toml"] beside it) is not a watch file."""
    read = {os.path.realpath(source)} if source is not None else set()
    files: list[Path] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(path) and os.path.realpath(path) not in read:
                read.add(os.path.realpath(path))
                files.append(Path(path))
    return files


def _watch_file(path: Path) -> WatchFile:
    try:
        text = _decode(path.read_bytes(), str(path))
        return WatchFile(path, text, _parse_toml(text, str(path)))
    except OSError as exc:
        return WatchFile(path, error=f"{path}: cannot read watch file: {exc.strerror}")
    except ConfigError as exc:
        return WatchFile(path, error=str(exc))


@functools.lru_cache(maxsize=4096)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:  # zoneinfo raises ValueError, KeyError or OSError by input
        return False
    return True


def _understood_by_apprise(urls: Any) -> frozenset[str]:
    """Of the listed operator_urls, those Apprise has a plugin to accept (scheme known, fields
    valid). Apprise loads its plugins from disk, so this is asked here, not while parsing; its
    complaints may quote a URL's token, so Apprise's log stays out of ours."""
    if not isinstance(urls, list) or not any(isinstance(url, str) for url in urls):
        return frozenset()
    import apprise  # loaded only by a configuration that lists channels

    logging.getLogger("apprise").propagate = False
    return frozenset(
        url.strip()
        for url in urls
        if isinstance(url, str) and url.strip() and apprise.Apprise.instantiate(url.strip()) is not None
    )


def _zones_named(data: Mapping[str, Any], zones: set[str]) -> None:
    """Adds the time zone names `data` mentions (default_time_zone, each watch's time_zone)."""
    notifications = data.get("notifications")
    if isinstance(notifications, dict) and isinstance(notifications.get("default_time_zone"), str):
        zones.add(notifications["default_time_zone"])
    watches = data.get("watch")
    if isinstance(watches, list):
        zones.update(
            w["time_zone"] for w in watches if isinstance(w, dict) and isinstance(w.get("time_zone"), str)
        )


def _sqlite_anchored(url: str, base: Path) -> str:
    """A relative SQLite path in a config file means beside that file, like every other path in it."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    relative = url[len(prefix) :]
    if not relative or relative.startswith(":memory:") or "?" in relative:
        return url
    return prefix + str((base / relative).resolve())


def gather(text: str, source: Path | None = None) -> Snapshot:
    """Everything the configuration text depends on, read now: the only I/O of parsing."""
    where = str(source) if source else "<config>"
    base = source.parent if source else Path.cwd()
    try:
        data = _parse_toml(text, where)
    except ConfigError as exc:
        return Snapshot(text=text, where=where, source=source, base=base, toml_error=str(exc))
    paths: dict[str, Path] = {}
    reads: dict[Path, str | Unreadable] = {}
    folders: set[Path] = set()
    files: set[Path] = set()
    for key in _PATH_KEYS:
        table = data.get(key.section)
        value = table.get(key.name) if isinstance(table, dict) else None
        if not isinstance(value, str) or not value or "\x00" in value:
            continue
        path = paths[value] = _file_path(base, value)
        if isinstance(key.kind, FilePath) and key.kind.message:  # a secret's file
            reads[path] = _read_secret(path)
        elif path.is_file():
            files.add(path)
        elif path.is_dir():
            folders.add(path)
    environment = {name: os.environ[name] for name in _ENVIRONMENT if os.environ.get(name)}
    credentials: dict[str, Path] = {}
    if directory := os.environ.get("CREDENTIALS_DIRECTORY"):
        for name in _CREDENTIALS:
            if (Path(directory) / name).is_file():
                credentials[name] = Path(directory) / name
                reads[credentials[name]] = _read_secret(credentials[name])
    polling = data.get("polling")
    patterns, _ = watch_file_patterns(polling.get("watch_files", []) if isinstance(polling, dict) else [])
    watch_folders = {pattern: _fixed_folder(base, pattern) for pattern in patterns}
    folders.update(folder for folder in watch_folders.values() if folder.is_dir())
    anchored = tuple(_anchored(base, pattern) for pattern in patterns)
    watch_files = tuple(_watch_file(path) for path in matching_watch_files(anchored, source))
    zones: set[str] = set()
    for document in (data, *(file.data for file in watch_files)):
        _zones_named(document, zones)
    sqlite_urls = {}
    database = data.get("database")
    for url in (DEFAULT_DATABASE_URL, database.get("url") if isinstance(database, dict) else None):
        if source is not None and isinstance(url, str) and _database_url(url) is None:
            sqlite_urls[url] = _sqlite_anchored(url, base)
    return Snapshot(
        text=text,
        where=where,
        source=source,
        base=base,
        data=data,
        environment=environment,
        paths=paths,
        reads=reads,
        folders=frozenset(folders),
        files=frozenset(files),
        credentials=credentials,
        watch_folders=watch_folders,
        watch_patterns=anchored,
        watch_files=watch_files,
        zones=frozenset(zone for zone in zones if _known_zone(zone)),
        apprise_urls=_understood_by_apprise(
            data["notifications"].get("operator_urls")
            if isinstance(data.get("notifications"), dict)
            else None
        ),
        sqlite_urls=sqlite_urls,
    )


def _checked(where: str, step: Callable[[], Settings]) -> Settings:
    try:
        return step()
    except ConfigError:
        raise
    except Exception as exc:  # a gap in the checks must still not crash `config check` or a reload
        raise ConfigError(
            f"{where}: could not be checked ({type(exc).__name__}: {exc}); please report this"
        ) from exc


def parse_settings(text: str, source: Path | None = None) -> Settings:
    """Validate a whole config file (gathering what it names, then parsing); raise one
    ConfigError listing every problem."""
    return _checked(str(source) if source else "<config>", lambda: parse(gather(text, source)))


def load_settings(path: str | None, *, database_url: str | None = None) -> Settings:
    """`--config PATH`, else $NOTIFIER_CONFIG, else defaults; `--database-url` or
    $NOTIFIER_DATABASE_URL override the file's database URL.

    Every failure is a ConfigError whose lines each name the file, and the line and key where
    they can be known."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        source = Path(chosen)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from exc
        settings = parse_settings(_decode(data, str(source)), source)
    else:
        settings = Settings()
    override = database_url or os.environ.get(DATABASE_URL_ENV)
    if override:
        if (reason := _database_url(override)) is not None:
            raise ConfigError(f"database URL from --database-url or ${DATABASE_URL_ENV}: {reason}")
        settings = dataclasses.replace(settings, database=DatabaseSettings(url=override))
    return settings


def start_refusals(settings: Settings) -> list[str]:
    """Why `notifier run` would refuse to start with `settings`, one self-contained line each in
    the words it logs (and `config check` prints): a login without its password, [http] without
    its secret, a SQLite database whose folder is missing or not writable. [] when it would start."""
    from notifier.store.dbenv import database_file_problem

    refusals = []
    for check in (sending_smtp, web_secret):
        try:
            check(settings)
        except ConfigError as exc:
            refusals.append(str(exc))
    if (problem := database_file_problem(settings.database.url)) is not None:
        refusals.append(str(problem))
    return refusals
