"""The configuration's only I/O: the config and watch files, secrets from files, the environment and systemd credentials."""

from __future__ import annotations

import dataclasses
import glob
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from notifier.config.checks import _database_url, sending_smtp, web_secret
from notifier.config.settings import (
    CONFIG_ENV,
    CREDENTIAL_NAME,
    DATABASE_URL_ENV,
    SMTP_PASSWORD_ENV,
    DatabaseSettings,
    Settings,
    Watch,
)
from notifier.config.toml import _decode, _parse_toml, _Problems
from notifier.config.watches import _watches
from notifier.errors import ConfigError


def _file_path(base: Path, text: str) -> Path:
    # os.path.expanduser never raises; Path.expanduser does when no home directory is known.
    return base / os.path.expanduser(text)


def read_password(smtp: dict[str, Any], problems: _Problems, base: Path, *, login: bool) -> str | None:
    """The SMTP password: password_file, else $NOTIFIER_SMTP_PASSWORD, else the systemd
    credential `smtp-password`. Never from the TOML itself. Without a login (`login`: a username
    is set) only a password_file the config names is read: the environment and the credential
    may be there for other reasons (the unit's empty fallback for a relay without AUTH)."""
    if "password" in smtp:
        problems.add(
            "smtp.password",
            "passwords do not go in the config file; use password_file or $NOTIFIER_SMTP_PASSWORD",
        )
    if not login and "password_file" not in smtp:
        return None
    return _find_secret(
        smtp,
        "password_file",
        "smtp",
        env=SMTP_PASSWORD_ENV,
        credential=CREDENTIAL_NAME,
        credential_key="smtp.username",
        problems=problems,
        base=base,
    )


def _find_secret(
    table: dict[str, Any],
    file_key: str,
    section: str,
    *,
    env: str,
    credential: str,
    credential_key: str,
    problems: _Problems,
    base: Path,
) -> str | None:
    """A secret from the file `table[file_key]` names, else $`env`, else the systemd credential
    `credential` (in $CREDENTIALS_DIRECTORY); None when none of them is there."""
    path = table.get(file_key)
    if path is not None:
        if not isinstance(path, str) or not path or "\x00" in path:
            problems.add(f"{section}.{file_key}", "must be a path")
            return None
        return _read_secret(_file_path(base, path), f"{section}.{file_key}", problems)
    if os.environ.get(env):
        return os.environ[env]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / credential).is_file():
        return _read_secret(
            Path(credentials) / credential,
            credential_key,
            problems,
            f' (the systemd credential "{credential}", from LoadCredential={credential}:/etc/notifier/{credential})',
        )
    return None


def _read_secret(file: Path, dotted: str, problems: _Problems, origin: str = "") -> str | None:
    try:
        secret = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.add(dotted, f"cannot read {file}: {exc.strerror}")
        return None
    except UnicodeDecodeError:
        problems.add(dotted, f"{file} is not UTF-8 text")
        return None
    if not secret:
        # A password prompt run without a terminal writes an empty file and exits 0.
        problems.add(
            dotted, f"{file}{origin} is empty: write the secret into it again (see docs/how-to/systemd.md)"
        )
        return None
    return secret


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


def _watch_file(path: Path, problems: _Problems) -> list[Watch]:
    """The [[watch]] tables of one watch file; its problems join the main file's."""
    try:
        extra_text = _decode(path.read_bytes(), str(path))
        extra = _parse_toml(extra_text, str(path))
    except OSError as exc:
        problems.items.append(f"{path}: cannot read watch file: {exc.strerror}")
        return []
    except ConfigError as exc:
        problems.items.append(str(exc))
        return []
    extra_problems = _Problems(extra_text, str(path))
    for key in sorted(set(extra) - {"watch"}):
        extra_problems.add(key, "watch files hold only [[watch]] tables")
    watches = _watches(extra, extra_problems)
    problems.items += extra_problems.items
    return watches


def load_settings(path: str | None, *, database_url: str | None = None) -> Settings:
    """`--config PATH`, else $NOTIFIER_CONFIG, else defaults; `--database-url` or
    $NOTIFIER_DATABASE_URL override the file's database URL.

    Every failure is a ConfigError whose lines each name the file, and the line and key where
    they can be known."""
    # parse imports this module for the secrets and watch files it reads.
    from notifier.config.parse import parse_settings

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


def is_folder(path: Path) -> bool:
    return path.is_dir()


def environment_has(name: str) -> bool:
    """Whether $name is set and not empty."""
    return bool(os.environ.get(name))


def working_folder() -> Path:
    """What relative paths in a config text without a file are relative to."""
    return Path.cwd()


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
