"""The operator board's sessions, form tokens (CSRF), flash messages and login throttle."""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from notifier.config.password import PasswordHash

SESSION_COOKIE = "notifier_admin"
LOGIN_COOKIE = "notifier_admin_login"
FLASH_COOKIE = "notifier_admin_flash"
COOKIE_PATH = "/admin"
SESSION_LIFETIME = dt.timedelta(hours=12)
# Failed logins a client may make in a minute before it must wait.
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0
_ID_BYTES = 16
_MAC_BYTES = 16


# --- sessions, CSRF and the login throttle -------------------------------------------------


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    if not text.isascii() or len(text) > 1000:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _encode(raw) == text else None


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Keys derived from the [http] secret and the password's hash: a new secret or a new
    password ends every session and every form token made before."""

    secret: str = field(repr=False)
    password: PasswordHash = field(repr=False)

    def _key(self, purpose: str) -> bytes:
        material = f"notifier/admin/{purpose}\n".encode() + self.password.fingerprint
        return hmac.new(self.secret.encode("utf-8"), material, hashlib.sha256).digest()

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key(purpose), payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def new_session(self, now: float) -> str:
        """A session cookie's value: a random id, its expiry, and their MAC."""
        payload = os.urandom(_ID_BYTES) + int(now + SESSION_LIFETIME.total_seconds()).to_bytes(8, "big")
        return _encode(payload + self._mac("session", payload))

    def session_id(self, cookie: str | None, now: float) -> str | None:
        """The session's id if the cookie is one of ours and has not expired, else None."""
        raw = _decode(cookie) if cookie else None
        if raw is None or len(raw) != _ID_BYTES + 8 + _MAC_BYTES:
            return None
        payload, mac = raw[: _ID_BYTES + 8], raw[_ID_BYTES + 8 :]
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        if int.from_bytes(payload[_ID_BYTES:], "big") <= now:
            return None
        return _encode(payload[:_ID_BYTES])

    def form_token(self, purpose: str, bound_to: str) -> str:
        """The hidden field of a form, bound to a session (or, for the login form, its cookie)."""
        # A cookie's value may be any text a client sends; it only has to give the same bytes again.
        return _encode(self._mac(f"form/{purpose}", bound_to.encode("utf-8", "surrogateescape")))

    def form_token_ok(self, purpose: str, bound_to: str, token: str) -> bool:
        return hmac.compare_digest(
            token.encode("ascii", "replace"), self.form_token(purpose, bound_to).encode()
        )

    def flash(self, text: str) -> str:
        raw = text.encode("utf-8")[:300]
        return _encode(self._mac("flash", raw) + raw)

    def read_flash(self, cookie: str | None) -> str:
        raw = _decode(cookie) if cookie else None
        if raw is None or len(raw) <= _MAC_BYTES:
            return ""
        mac, text = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac("flash", text)):
            return ""
        return text.decode("utf-8", "replace")


class LoginThrottle:
    """At most LOGIN_FAILURES failed logins per client in LOGIN_WINDOW seconds."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.failures: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        times = self.failures.get(client, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait(self, client: str, now: float) -> float:
        """0 when `client` may try a password now, else the seconds until it may."""
        times = self._recent(client, now)
        if len(times) < self.limit:
            if not times:
                self.failures.pop(client, None)
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str, now: float) -> None:
        times = self._recent(client, now)
        times.append(now)
        self.failures[client] = times
        if len(self.failures) > 10_000:
            for other in [c for c, t in self.failures.items() if not t or t[-1] <= now - self.window]:
                del self.failures[other]

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


class _Revoked:
    """Sessions ended by logout, remembered until they would have expired anyway."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def add(self, session_id: str, now: float) -> None:
        self.until = {sid: end for sid, end in self.until.items() if end > now}
        self.until[session_id] = now + SESSION_LIFETIME.total_seconds()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self.until
