"""How to reach the SMTP server: settings checked as they are made (the relay, its security, its timeouts)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import InitVar, dataclass, field
from typing import Literal

from notifier.errors import ConfigError

Security = Literal["starttls", "tls", "none"]


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine: localhost or a loopback address."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """How to reach the SMTP server.

    Attributes:
        host: server name or IP address.
        port: 587 is usual for starttls, 465 for tls.
        security: "starttls" (explicit and required: no STARTTLS offered means no send), "tls"
            (implicit TLS from the first byte) or "none" (loopback relays only).
        username: AUTH user, or None to skip AUTH.
        password: AUTH password; never shown in repr.
        timeout: total deadline in seconds for one send, connection set-up included.
        connect_timeout: deadline in seconds for TCP connect and the server greeting.
        validate_certs: verify the certificate chain and host name.
        cert_bundle: PEM file of extra CAs to trust (a private CA), on top of the system store.
        local_hostname: name for EHLO; None asks the OS for the FQDN.
        username_at: where the configuration sets the username ("FILE:LINE"), for errors only.
    """

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    connect_timeout: float = 10.0
    validate_certs: bool = True
    cert_bundle: str | None = None
    local_hostname: str | None = None
    username_at: str | None = field(default=None, compare=False)
    # The config parser has checked cert_bundle against its snapshot of the files (it does no I/O).
    bundle_checked: InitVar[bool] = False

    def __post_init__(self, bundle_checked: bool) -> None:
        problems: list[str] = []
        if not self.host or any(char.isspace() or not char.isprintable() for char in self.host):
            problems.append(f"smtp.host {self.host!r} is not a host name")
        if not 0 < self.port < 65536:
            problems.append(f"smtp.port {self.port} is out of range")
        if self.security not in ("starttls", "tls", "none"):
            problems.append(f"smtp.security must be starttls, tls or none, not {self.security!r}")
        elif self.security == "none" and not is_loopback(self.host):
            problems.append(
                f"smtp.security = none sends mail and passwords in clear text; it is only allowed for "
                f"a relay on this machine (localhost, 127.0.0.1, ::1), not {self.host!r}"
            )
        if (self.username is None) != (self.password is None):
            problems.append("smtp.username and smtp.password must be given together")
        if not self.timeout > 0:
            problems.append("smtp.timeout must be positive")
        if not self.connect_timeout > 0:
            problems.append("smtp.connect_timeout must be positive")
        if self.cert_bundle is not None and not bundle_checked and not os.path.isfile(self.cert_bundle):
            problems.append(f"smtp.cert_bundle {self.cert_bundle!r} is not a readable file")
        if self.local_hostname is not None and (
            not self.local_hostname or any(c.isspace() or not c.isprintable() for c in self.local_hostname)
        ):
            problems.append(f"smtp.local_hostname {self.local_hostname!r} is not a host name")
        if problems:
            raise ConfigError("; ".join(problems))
