"""The operator board's password, kept in memory only as a salted scrypt hash and checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

# One salt for this process: the same password read again at a reload hashes the same (the
# settings compare equal and sessions survive), and nothing derived from it outlives the process.
_PROCESS_SALT = os.urandom(16)
# scrypt at 16 MiB: a few dozen milliseconds per check, run off the event loop (admin.py).
_N, _R, _P = 2**14, 8, 1


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """What is kept of a password: its derived hash, never the text."""

    digest: bytes = field(repr=False)
    salt: bytes = field(default=_PROCESS_SALT, repr=False)

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        return cls(digest=_derive(password, _PROCESS_SALT))

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` is the password; the comparison takes the same time either way."""
        return hmac.compare_digest(_derive(candidate, self.salt), self.digest)

    @property
    def fingerprint(self) -> bytes:
        """Mixed into the session key: another password ends every session signed under the old one."""
        return hashlib.sha256(b"notifier/admin-password\n" + self.digest).digest()
