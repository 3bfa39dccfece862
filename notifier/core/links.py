"""Signed links for customers: who (recipient), what for (purpose) and about what (scope), checkable
without the database and impossible to forge or enumerate without the secret."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass, field

ALL = "all"
_VERSION = b"\x01"
_MAC_BYTES = 16  # 128 bits: far beyond guessing, and the links stay short
_SEPARATOR = "\n"  # neither an address nor a tracking number can contain it


class Purpose(enum.StrEnum):
    """What a token opens; each has its own key, so one kind never opens the other's page."""

    UNSUBSCRIBE = "unsubscribe"
    TRACK = "track"


@dataclass(frozen=True, slots=True)
class Claim:
    """What a valid token says: `recipient` may act on `scope` (a tracking number, or ALL)."""

    recipient: str
    scope: str


@dataclass(frozen=True, slots=True)
class Signer:
    """Makes and checks tokens with keys derived from the [http] secret: the same secret gives
    the same tokens after a restart; another secret makes every earlier token invalid."""

    secret: str = field(repr=False)

    def _key(self, purpose: Purpose) -> bytes:
        return hmac.new(self.secret.encode("utf-8"), f"notifier/{purpose}".encode(), hashlib.sha256).digest()

    def _mac(self, purpose: Purpose, payload: bytes) -> bytes:
        return hmac.new(self._key(purpose), _VERSION + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def make(self, purpose: Purpose, recipient: str, scope: str) -> str:
        if _SEPARATOR in recipient or _SEPARATOR in scope or not recipient or not scope:
            raise ValueError("a token's recipient and scope are non-empty and one line each")
        payload = f"{recipient}{_SEPARATOR}{scope}".encode()
        return _encode(_VERSION + self._mac(purpose, payload) + payload)

    def check(self, purpose: Purpose, token: str) -> Claim | None:
        """The token's claim if this secret signed it for `purpose`, else None (never an error)."""
        raw = _decode(token)
        if raw is None or len(raw) <= 1 + _MAC_BYTES or raw[:1] != _VERSION:
            return None
        mac, payload = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        try:
            recipient, scope = payload.decode("utf-8").split(_SEPARATOR)
        except (UnicodeDecodeError, ValueError):
            return None
        return Claim(recipient=recipient, scope=scope)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes | None:
    """The bytes of a base64url token, or None unless `token` is exactly their encoding: base64
    ignores the spare bits of its last character, which would let one token have several spellings."""
    if not token.isascii() or len(token) > 2000:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _encode(raw) == token else None


@dataclass(frozen=True, slots=True)
class Links:
    """The web face's links for one shop: `public_url` + "/u/TOKEN" (unsubscribe) and "/t/TOKEN"
    (tracking page)."""

    public_url: str
    signer: Signer

    def unsubscribe(self, recipient: str, number: str) -> str:
        token = self.signer.make(Purpose.UNSUBSCRIBE, recipient, number or ALL)
        return f"{self.public_url}/u/{token}"

    def tracking(self, recipient: str, number: str) -> str:
        return f"{self.public_url}/t/{self.signer.make(Purpose.TRACK, recipient, number)}"
