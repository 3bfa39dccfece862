"""One Apprise URL as an operator channel: understood or not, short text within its limit, one send."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import apprise

# Apprise logs through "apprise"; its lines may carry parts of a URL (a token in a path), so they
# stay out of the daemon's log: each send captures them and reports a redacted reason instead.
logging.getLogger("apprise").propagate = False

# Short text: a channel is a pager, not the alert list (`notifier alerts` is). Below each
# service's own limit by a margin, as its formatting adds to the text (Telegram 4096 → about 3480,
# Discord 2000 → 1700: changedetection.io truncates to 3600 and 1700 for the same reason).
SHORT_TEXT = 3500
MARGIN = 0.85
TRUNCATED = "\n… (cut; see `notifier alerts`)"


_APPRISE_LOG = logging.getLogger("apprise")


class _ThisThread(logging.Handler):
    """Apprise's warning and error lines from the calling thread only: channels send in parallel
    threads, and one channel's failure must not be read as another's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage().strip())


@contextmanager
def _captured() -> Iterator[list[str]]:
    handler = _ThisThread()
    _APPRISE_LOG.addHandler(handler)
    if _APPRISE_LOG.level == logging.NOTSET or _APPRISE_LOG.level > logging.WARNING:
        _APPRISE_LOG.setLevel(logging.WARNING)
    try:
        yield handler.lines
    finally:
        _APPRISE_LOG.removeHandler(handler)


def fit(body: str, limit: int) -> str:
    """`body` cut to `limit` characters with a marker, line by line where it can."""
    if len(body) <= limit:
        return body
    room = max(0, limit - len(TRUNCATED))
    cut = body[:room]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + TRUNCATED


def _secrets(url: str) -> list[str]:
    """The parts of `url` that may be credentials, longest first, for scrubbing them from text."""
    parts = urlsplit(url)
    pieces = [url, parts.netloc, parts.path, parts.query, parts.username or "", parts.password or ""]
    pieces += [p for p in re.split(r"[/?&=:@#]", url.split("://", 1)[-1]) if len(p) >= 4]
    pieces += [unquote(p) for p in pieces]
    return sorted({p for p in pieces if p}, key=len, reverse=True)


@dataclass(slots=True)
class Channel:
    """An operator channel. `name` ("channel 2 (tgram)") is what logs and /metrics show: the URL
    itself never appears, as most carry a token (Telegram's bot token is its host)."""

    url: str
    name: str
    limit: int
    _apprise: apprise.Apprise

    @classmethod
    def of(cls, url: str, index: int) -> Channel:
        with _captured():
            plugin = apprise.Apprise.instantiate(url)
        if plugin is None:  # config validation rejects these; a file edited under us is not trusted
            raise ValueError(f"channel {index}: Apprise does not understand the URL")
        scheme = url.split("://", 1)[0].lower()
        body_max = int(getattr(plugin, "body_maxlen", SHORT_TEXT) or SHORT_TEXT)
        instance = apprise.Apprise()
        instance.add(plugin)
        return cls(url, f"channel {index} ({scheme})", min(SHORT_TEXT, int(body_max * MARGIN)), instance)

    def scrub(self, text: str) -> str:
        for secret in _secrets(self.url):
            text = text.replace(secret, "…")
        return text

    def send(self, title: str, body: str) -> str | None:
        """Send once (blocking: run it in a thread); None when the service accepted it, else why
        not, without the URL. One target per Apprise object, so notify()'s bool is this target's
        own (with several targets it only says "not all failed"); Apprise's warning and error
        lines from this thread say why."""
        text = fit(body, max(0, self.limit - len(title) - 2))
        try:
            with _captured() as lines:
                ok = self._apprise.notify(title=title, body=text)
        except Exception as exc:  # a plugin bug is this channel's failure, never the daemon's
            return self.scrub(f"{type(exc).__name__}: {exc}")[:200]
        if ok:
            return None
        reason = (
            "; ".join(line for line in lines[-2:] if line) if any(lines) else "the service did not accept it"
        )
        return self.scrub(reason)[:200]
