"""The notifier commands that messages tell the user to run, written so that pasting them works."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


@dataclass(frozen=True, slots=True)
class Invocation:
    """How this process was pointed at its config and database: a hint that leaves these out
    would act on another file (`db upgrade` on ./notifier.db instead of the shop's)."""

    config: str | None = None
    database_url: str | None = None


_current = Invocation()


@contextmanager
def given(config: str | None, database_url: str | None = None) -> Iterator[None]:
    """For one command run by the CLI: `--config` (or $NOTIFIER_CONFIG) and an explicit
    `--database-url` ($NOTIFIER_DATABASE_URL is inherited by a pasted command, so it is left out).
    Restored afterwards, so a later command in the same process does not inherit them."""
    global _current
    before = _current
    _current = Invocation(config=config or None, database_url=database_url or None)
    try:
        yield
    finally:
        _current = before


def _shown_url(url: str) -> str:
    # A password typed on the command line is not repeated into logs and alerts.
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def command(words: str, invocation: Invocation | None = None) -> str:
    """`notifier WORDS --config PATH [--database-url URL]` in backquotes, runnable as printed."""
    given = invocation or _current
    parts = [f"notifier {words}"]
    if given.config:
        parts.append(f"--config {shlex.quote(given.config)}")
    if given.database_url:
        parts.append(f"--database-url {shlex.quote(_shown_url(given.database_url))}")
    return "`" + " ".join(parts) + "`"
