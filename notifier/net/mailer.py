"""Email out: rendered message → exact RFC 5322 bytes [pure]; bytes → SMTP server or .eml file [shell]."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.errors
import email.policy
import email.utils
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiosmtplib

from notifier.core.messages import RenderedMessage
from notifier.errors import ConfigError, NotifierError

__all__ = [
    "AddressError",
    "AuthenticationError",
    "FileTransport",
    "MessageBuildError",
    "PermanentSendError",
    "Security",
    "SendError",
    "ServerUnreachableError",
    "SmtpSettings",
    "SmtpTransport",
    "TlsRequiredError",
    "TransientSendError",
    "build_message",
    "clean_subject",
    "header_token",
    "make_message_id",
    "transport_for",
    "validate_address",
    "with_date",
]

logger = logging.getLogger(__name__)

SUBJECT_MAX_CHARS = 200
TOKEN_MAX_CHARS = 64
URI_MAX_CHARS = 900  # keeps "List-Unsubscribe: <uri>" inside one 998-octet line

# One policy for building and checking. 7bit makes the stdlib pick base64 or quoted-printable for
# non-ASCII bodies instead of raw 8bit, which a relay without 8BITMIME could mangle.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")


# ---------------------------------------------------------------------------------------------------------
# Errors


class MessageBuildError(NotifierError, ValueError):
    """A message cannot be built safely from the values given."""


class AddressError(MessageBuildError):
    """An email address is malformed or unsafe to put in a header or on an SMTP command line."""


class SendError(NotifierError):
    """Handing a message to the mail server failed.

    Attributes:
        permanent: retrying the same bytes cannot succeed.
        code: the SMTP reply code, when the server sent one.
        stage: what was under way: connect, starttls, auth, noop, mail, rcpt, data or file.
        maybe_delivered: the link failed after the message body may have reached the server (the
            RFC 1047 gap), so a retry may deliver a second copy with the same Message-ID.
    """

    permanent: bool = False

    def __init__(
        self, message: str, *, code: int | None = None, stage: str = "", maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.stage = stage
        self.maybe_delivered = maybe_delivered

    @property
    def offered(self) -> bool:
        """Whether the message itself was offered (MAIL FROM reached, or a file write begun).

        Before that, the failure says nothing about this message: only such sends count as an
        attempt against the message's retry budget.
        """
        return self.stage in ("mail", "rcpt", "data", "file")


class TransientSendError(SendError):
    """Worth retrying later: 4xx replies, disconnects, timeouts."""


class ServerUnreachableError(TransientSendError):
    """The configured server cannot be reached at all: connection refused, or its name does not resolve.

    Usually a wrong host or port; the outbox pauses and alerts at once rather than retrying each
    message, and resumes by itself once the server answers.
    """


class PermanentSendError(SendError):
    """The server refused this message for good (5xx on MAIL, RCPT or DATA)."""

    permanent = True


class AuthenticationError(SendError):
    """The server refused our credentials, or demanded some we do not have.

    Not the message's fault and not permanent: the outbox pauses and alerts instead of burning
    retries, and resumes once the operator fixes the configuration.
    """


class LoginNotOfferedError(AuthenticationError):
    """A login is configured but the server offers none (no AUTH in its EHLO reply): only taking
    the login out of the configuration helps, and the message says which keys."""


class TlsRequiredError(PermanentSendError):
    """TLS could not be established: STARTTLS not offered or refused, or the certificate failed."""


# ---------------------------------------------------------------------------------------------------------
# Pure message building

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LOCAL_RE = re.compile(_DOT_ATOM)
_DOMAIN_RE = re.compile(_DOMAIN)
_MESSAGE_ID_RE = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
_LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_URI_RE = re.compile(
    r"(?:mailto:|https://|http://(?:localhost|127\.0\.0\.1|\[::1\])[:/])[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+"
)
_TOKEN_DROP_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_DISPLAY_NAME_BAD = frozenset('<>"\\@')

# Bidi controls (Trojan Source, CVE-2021-42574) and the Unicode line/paragraph separators, which some
# mail clients render as line breaks.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_LINE_LIKE = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_SPACE_RUN_RE = re.compile(r"[^\S\u3000]+")  # keeps a deliberate ideographic space in Japanese


def clean_subject(text: str) -> str:
    """Make a Subject safe: no controls, no bidi tricks, whitespace collapsed, at most 200 characters.

    Line-like characters become spaces so words on either side do not fuse; other controls,
    bidi marks and lone surrogates are dropped.
    """
    kept: list[str] = []
    for char in text:
        if char in _LINE_LIKE:
            kept.append(" ")
        elif char in _INVISIBLE or unicodedata.category(char) in ("Cc", "Cs"):
            continue
        else:
            kept.append(char)
    # The stdlib decodes RFC 2047 encoded words found in the value it is given, and its folder can
    # then emit the decoded CR/LF (CVE-2024-6923), so a literal "=?" must never reach it.
    cleaned = _SPACE_RUN_RE.sub(" ", "".join(kept).replace("=?", "= ?")).strip()
    if len(cleaned) > SUBJECT_MAX_CHARS:
        cleaned = cleaned[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    return cleaned


# Format (bidi overrides, zero-width), line and paragraph separators, private use, unassigned.
_HIDDEN_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Co", "Cn", "Cs"})


def header_token(text: str, *, max_chars: int = TOKEN_MAX_CHARS) -> str:
    """Reduce a value to `[A-Za-z0-9_.-]`, at most `max_chars` long, for the X-Notifier-* headers."""
    return _TOKEN_DROP_RE.sub("", text)[:max_chars]


def _parse_address(text: str, *, allow_display_name: bool) -> tuple[str, str]:
    """Split and check an address; returns (display name, addr-spec) with the domain lower-cased."""
    if not isinstance(text, str):
        raise AddressError(f"an email address must be text, not {type(text).__name__}")
    # Only a display name ("さくら文具 <shop@…>") may leave ASCII; the address never does.
    address_part = text[text.index("<") :] if "<" in text else text
    if not address_part.isascii() or (not text.isascii() and not allow_display_name):
        raise AddressError(f"{text!r} is not a valid email address: only ASCII is allowed")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise AddressError(f"{text!r} is not a valid email address: it contains control characters")
    if text.count("@") != 1:
        raise AddressError(f"{text!r} is not a valid email address: it must contain exactly one @")
    stripped = text.strip()
    display = ""
    addr_spec = stripped
    if "<" in stripped or ">" in stripped:
        if stripped.count("<") != 1 or stripped.count(">") != 1 or not stripped.endswith(">"):
            raise AddressError(f"{text!r} is not a valid email address: unbalanced angle brackets")
        before, _, rest = stripped.partition("<")
        addr_spec = rest[:-1].strip()
        display = " ".join(before.split())
        if len(display) >= 2 and display.startswith('"') and display.endswith('"'):
            display = display[1:-1].strip()
        if display and not allow_display_name:
            raise AddressError(f"{text!r} is not a valid email address here: a display name is not allowed")
        if set(display) & _DISPLAY_NAME_BAD or "=?" in display:
            raise AddressError(
                f'{text!r} is not a valid email address: the display name may not contain < > " \\ @ or =?'
            )
        if len(display) > 100:
            raise AddressError(f"{text!r} is not a valid email address: the display name is too long")
        # A shop may be named in its own script (「さくら文具」: RFC 2047 encodes it), but not with
        # invisible or direction-changing characters, which disguise who a message is from.
        hidden = [c for c in before if unicodedata.category(c) in _HIDDEN_CATEGORIES]
        if hidden:
            raise AddressError(
                f"{text!r} is not a valid email address: the display name contains invisible characters "
                f"({', '.join(f'U+{ord(c):04X}' for c in hidden)})"
            )
    local, _, domain = addr_spec.partition("@")
    if not local or len(local) > 64 or not _LOCAL_RE.fullmatch(local):
        raise AddressError(f"{text!r} is not a valid email address: bad local part {local!r}")
    if len(addr_spec) > 254 or not _DOMAIN_RE.fullmatch(domain):
        raise AddressError(f"{text!r} is not a valid email address: bad domain {domain!r}")
    addr_spec = f"{local}@{domain.lower()}"
    # Cross-check with the stdlib parsers that will read the header back: they must see the same
    # single address and nothing else.
    rendered = str(Address(display_name=display, addr_spec=addr_spec))
    header = _POLICY.header_factory("To", rendered)
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if (
        header.defects
        or len(addresses) != 1
        or addresses[0].addr_spec != addr_spec
        or addresses[0].display_name != display
        or email.utils.parseaddr(rendered) != (display, addr_spec)
    ):
        raise AddressError(f"{text!r} is not a valid email address: it does not parse back unchanged")
    return display, addr_spec


def validate_address(text: str, *, allow_display_name: bool = False) -> str:
    """Check an email address and return it normalised, or raise AddressError.

    Accepts ASCII dot-atom addresses (`shop@example.com`) and, when `allow_display_name` is true,
    `Shop <shop@example.com>`. The config loader calls this so bad addresses fail at load time.

    Args:
        text: the address as written in configuration or a subscription.
        allow_display_name: accept a display name (for From and Reply-To).

    Returns:
        The address with its domain lower-cased, and the display name quoted if it needs it.
    """
    display, addr_spec = _parse_address(text, allow_display_name=allow_display_name)
    return str(Address(display_name=display, addr_spec=addr_spec)) if display else addr_spec


def make_message_id(domain: str) -> str:
    """A new random Message-ID, `<32 hex digits@domain>`; store it and resend it unchanged."""
    domain = domain.strip().lower()
    if not _DOMAIN_RE.fullmatch(domain) or len(domain) > 200:
        raise MessageBuildError(f"{domain!r} is not a valid Message-ID domain")
    return f"<{secrets.token_hex(16)}@{domain}>"


class _Verbatim:
    """A pre-checked header value that the stdlib folder must emit on one line, unchanged.

    The folder turns an unbreakable token longer than 78 characters (a one-click unsubscribe URL, a
    long Message-ID) into RFC 2047 encoded words, which breaks it. Policies store and fold objects
    with a `name` attribute as they are, so only values checked to be printable ASCII without
    CR/LF and short enough for one line ever come through here.
    """

    def __init__(self, name: str, value: str) -> None:
        if not value.isascii() or not value.isprintable() or len(name) + len(value) > 990:
            raise MessageBuildError(f"{name} value is not a short printable ASCII string: {value!r}")
        self.name = name
        self._value = value

    def fold(self, *, policy: email.policy.Policy) -> str:
        return f"{self.name}: {self._value}{policy.linesep}"

    def __str__(self) -> str:
        return self._value


def _token_header(name: str, value: str) -> _Verbatim:
    token = header_token(value)
    if not token:
        raise MessageBuildError(f"{name} has no usable characters left in {value!r}")
    return _Verbatim(name, token)


def _body_part(content: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=_POLICY)
    # A NUL cannot travel in a 7bit body and means nothing in a notification.
    part.set_content(content.replace("\x00", ""), subtype=subtype, charset="utf-8")
    # EmailMessage.set_content adds MIME-Version, which belongs on the top level only.
    del part["MIME-Version"]
    return part


_FIELD_NAME_RE = re.compile(rb"([!-9;-~]+):")
_PART_HEADERS = frozenset({"content-type", "content-transfer-encoding"})


def _header_names(raw: bytes) -> list[str]:
    """Field names of the top-level header block, read from the bytes as a receiving MTA reads them."""
    head, blank, _ = raw.partition(b"\r\n\r\n")
    if not blank:
        raise MessageBuildError("generated message has no blank line between its headers and its body")
    names: list[str] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and names:
            continue  # a folded continuation of the field above
        match = _FIELD_NAME_RE.match(line)
        if match is None:
            raise MessageBuildError(f"generated header line {line[:60]!r} is not a header field")
        names.append(match.group(1).decode("ascii"))
    return names


def _headers_and_defects(message: Message) -> tuple[dict[str, Any], list[str]]:
    """The headers of `message` (read with compat32) parsed as a modern reader parses them, by
    name, and every defect the parser noted, by class name."""
    # compat32 keeps the parse itself cheap; each header is then interpreted once.
    headers = {name: email.policy.default.header_fetch_parse(name, value) for name, value in message.items()}
    found = [f"{type(d).__name__} in {message.get_content_type()}" for d in message.defects]
    for name, value in headers.items():
        found += [f"{type(d).__name__} in {name}" for d in value.defects]
    return headers, found


def _verify_generated(raw: bytes, intended: EmailMessage) -> None:
    """Re-read what we produced: exactly the headers we set, with the values we set, CRLF only,
    no over-long lines, the two parts we attached, and nothing the parser calls a defect.

    Interpreters before 3.11.10 / 3.12.5 lack `verify_generated_headers` (gh-121650), and their
    folder can emit a decoded CR LF as a new header (CVE-2024-6923), so we check for ourselves.
    The message is parsed whole: a headers-only parse of any multipart message reports a false
    MultipartInvariantViolationDefect before 3.11.5 (gh-106186).
    """
    lines = raw.split(b"\r\n")
    if b"\x00" in raw or any(b"\r" in line or b"\n" in line for line in lines):
        raise MessageBuildError("generated message has a NUL or a bare CR/LF")
    if any(len(line) > 998 for line in lines):
        raise MessageBuildError("generated message has a line longer than 998 octets")
    expected = list(intended.keys())
    found = _header_names(raw)
    if [name.lower() for name in found] != [name.lower() for name in expected]:
        raise MessageBuildError(f"generated headers {found} differ from the intended {expected}")
    parsed = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    headers, defects = _headers_and_defects(parsed)
    parts = []
    for part in parsed.get_payload() if parsed.is_multipart() else []:
        assert isinstance(part, Message)  # a multipart payload is a list of messages
        part_headers, part_defects = _headers_and_defects(part)
        defects += part_defects
        parts.append((part.get_content_type(), {name.lower() for name in part_headers}))
    if defects:
        raise MessageBuildError(f"generated message does not parse back cleanly: {'; '.join(defects)}")
    for name in expected:
        want, got = str(intended[name]), str(headers[name])
        if any(char in _LINE_LIKE or unicodedata.category(char) == "Cc" for char in got):
            # 3.11.2 keeps a CR LF inside an encoded word rather than folding it out: no new
            # header on the wire, but a reader decodes a line break into the value.
            raise MessageBuildError(f"generated {name} header decodes to control characters: {got!r}")
        # The folder may put a space between two encoded words, which RFC 2047 readers drop.
        if want != got and not (name == "Subject" and "".join(want.split()) == "".join(got.split())):
            raise MessageBuildError(f"generated {name} header reads back as {got!r}, not {want!r}")
    types = [headers["Content-Type"].content_type, *(content_type for content_type, _ in parts)]
    if types != ["multipart/alternative", "text/plain", "text/html"]:
        raise MessageBuildError(f"generated message has parts {types[1:]} in {types[0]}, not text and HTML")
    if headers["Content-Type"].params.get("boundary") != intended.get_boundary() or any(
        not names <= _PART_HEADERS for _, names in parts
    ):
        raise MessageBuildError("generated message parts do not have the intended headers and boundary")


def build_message(
    rendered: RenderedMessage,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    date: dt.datetime,
    locale: str,
    number: str,
    stage: str,
    rule: str,
    unsubscribe: str | Sequence[str] | None,
    reply_to: str | None = None,
) -> bytes:
    """Build the exact bytes to send: multipart/alternative, text/plain then text/html, CRLF line ends.

    Pure and deterministic: the same arguments give the same bytes (the MIME boundary derives from
    the Message-ID), so a message can be rebuilt or stored once and resent unchanged.

    Args:
        rendered: subject, text and HTML from the templates (they may contain scraped text).
        sender: From; a display name is allowed ("Shop <shop@example.com>").
        recipient: To; a bare address.
        message_id: `<id@domain>`, from make_message_id, fixed when the notification is queued.
        date: the Date header; timezone-aware. The outbox replaces it with the time of the first
            send attempt (see with_date), so a message that waited does not look old.
        locale: Content-Language, such as "en" or "ja".
        number: the compact tracking number, for X-Notifier-Tracking-Number.
        stage: for X-Notifier-Stage.
        rule: the rule that produced the notification, for X-Notifier-Rule.
        unsubscribe: mailto: or https: URIs for List-Unsubscribe (one, or several in order); a
            web link also gets the one-click POST header (RFC 8058). http: only to this machine
            (localhost, 127.0.0.1, [::1]): the web face's public_url while testing.
        reply_to: Reply-To, display name allowed.

    Raises:
        AddressError: an address is invalid.
        MessageBuildError: another value cannot be made safe (naive date, bad Message-ID, locale
            or URI, a subject or token with nothing printable left).
    """
    from_display, from_addr = _parse_address(sender, allow_display_name=True)
    _, to_addr = _parse_address(recipient, allow_display_name=False)
    if not _MESSAGE_ID_RE.fullmatch(message_id) or len(message_id) > 250:
        raise MessageBuildError(f"{message_id!r} is not a valid Message-ID (expected <id@domain>)")
    if date.tzinfo is None or date.utcoffset() is None:
        raise MessageBuildError("the Date must be timezone-aware")
    if not _LOCALE_RE.fullmatch(locale):
        raise MessageBuildError(f"{locale!r} is not a valid language tag")
    subject = clean_subject(rendered.subject)
    if not subject:
        raise MessageBuildError("the subject is empty once control characters are removed")

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = Address(display_name=from_display, addr_spec=from_addr)
    msg["To"] = Address(addr_spec=to_addr)
    if reply_to is not None:
        reply_display, reply_addr = _parse_address(reply_to, allow_display_name=True)
        msg["Reply-To"] = Address(display_name=reply_display, addr_spec=reply_addr)
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = _Verbatim("Message-ID", message_id)
    msg["MIME-Version"] = "1.0"
    msg["Auto-Submitted"] = "auto-generated"
    uris = (unsubscribe,) if isinstance(unsubscribe, str) else tuple(unsubscribe or ())
    if uris:
        for uri in uris:
            if len(uri) > URI_MAX_CHARS or not _URI_RE.fullmatch(uri):
                raise MessageBuildError(f"{uri!r} is not an acceptable mailto: or https: URI")
        value = ", ".join(f"<{uri}>" for uri in uris)
        if len(value) > URI_MAX_CHARS + 2:
            raise MessageBuildError("the List-Unsubscribe URIs do not fit on one header line")
        msg["List-Unsubscribe"] = _Verbatim("List-Unsubscribe", value)
        if any(uri.startswith(("https://", "http://")) for uri in uris):
            # RFC 8058 one-click; a mailto: link cannot receive a POST.
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Messages about no shipment (the operator digest, tests) carry no number or stage header.
    if number:
        msg["X-Notifier-Tracking-Number"] = _token_header("X-Notifier-Tracking-Number", number)
    if stage:
        msg["X-Notifier-Stage"] = _token_header("X-Notifier-Stage", stage)
    msg["X-Notifier-Rule"] = _token_header("X-Notifier-Rule", rule)

    # "=_" cannot occur in base64 or quoted-printable output, and hashing the Message-ID keeps the
    # bytes reproducible.
    boundary = "=_" + hashlib.sha256(message_id.encode("ascii")).hexdigest()[:40]
    # make_alternative moves every Content-* header into a sub-part, so Content-Language comes after.
    msg.make_alternative(boundary=boundary)
    msg["Content-Language"] = _Verbatim("Content-Language", locale)
    msg.attach(_body_part(rendered.text, "plain"))
    msg.attach(_body_part(rendered.html, "html"))

    try:
        raw = msg.as_bytes()
    except email.errors.MessageError as exc:
        # 3.12.5 and later check folded headers themselves (verify_generated_headers).
        raise MessageBuildError(f"the email package refused to write the message: {exc}") from exc
    _verify_generated(raw, msg)
    return raw


# ---------------------------------------------------------------------------------------------------------
# Transports

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

    def __post_init__(self) -> None:
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
        if self.cert_bundle is not None and not os.path.isfile(self.cert_bundle):
            problems.append(f"smtp.cert_bundle {self.cert_bundle!r} is not a readable file")
        if self.local_hostname is not None and (
            not self.local_hostname or any(c.isspace() or not c.isprintable() for c in self.local_hostname)
        ):
            problems.append(f"smtp.local_hostname {self.local_hostname!r} is not a host name")
        if problems:
            raise ConfigError("; ".join(problems))


def _envelope_address(text: str) -> str:
    return _parse_address(text, allow_display_name=True)[1]


def _ssl_failure(exc: BaseException) -> BaseException | None:
    """The TLS error behind `exc`, if any: aiosmtplib wraps a failed implicit-TLS handshake."""
    seen: BaseException | None = exc
    for _ in range(10):  # chains can loop; a TLS cause is never deep
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unreachable(exc: BaseException) -> str | None:
    """Say why, if `exc` means nothing listens at the address or the host name does not resolve."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return f"the host name does not resolve ({seen.strerror or seen})"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused (nothing listens on that port)"
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(exc: Exception, stage: str, host: str) -> SendError:
    """Map an aiosmtplib or socket exception to our tree, given what was under way."""
    where = f"SMTP {host}, {stage}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        text = f"{where}: {code} {exc.message}"
        if 400 <= code < 500:
            return TransientSendError(text, code=code, stage=stage)
        if stage == "auth" or code in (530, 534, 535):
            # 530 at MAIL means the server wants AUTH we did not do: configuration, like a bad password.
            return AuthenticationError(text, code=code, stage=stage)
        if stage == "starttls":
            return TlsRequiredError(text, code=code, stage=stage)
        if stage in ("mail", "rcpt", "data"):
            return PermanentSendError(text, code=code, stage=stage)
        # 5xx at the greeting, EHLO or NOOP says nothing about this message.
        return TransientSendError(text, code=code, stage=stage)
    tls_error = _ssl_failure(exc)
    if tls_error is not None:
        return TlsRequiredError(f"{where}: TLS failed: {tls_error}", stage=stage)
    unreachable = _unreachable(exc) if stage == "connect" else None
    if unreachable is not None:
        return ServerUnreachableError(f"{where}: {unreachable}", stage=stage)
    if stage == "auth" and not isinstance(exc, ConnectionError | TimeoutError):
        # No AUTH extension or no mechanism in common: the credentials cannot be used here.
        return AuthenticationError(f"{where}: {exc}", stage=stage)
    return TransientSendError(f"{where}: {exc}", stage=stage, maybe_delivered=stage == "data")


class _Refused(Exception):
    """Some RCPT TO failed; carries the worst reply."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class SmtpTransport:
    """One SMTP connection per batch: opened on the first send, reused, closed on exit.

    Use as `async with SmtpTransport(settings) as transport: await transport.send(...)`. Sends on
    one transport are serialised. Every failure is raised as a SendError subclass.
    """

    def __init__(self, settings: SmtpSettings, *, noop_after_idle: float = 5.0) -> None:
        self._settings = settings
        self._noop_after_idle = noop_after_idle
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = asyncio.Lock()
        self._stage = ""

    @property
    def settings(self) -> SmtpSettings:
        return self._settings

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Say QUIT if the connection is healthy, then close it."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                async with asyncio.timeout(min(5.0, self._settings.timeout)):
                    await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def _discard(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> str:
        """Send `raw` as is and return the server's reply text to the end of DATA (a 250).

        Args:
            raw: the bytes from build_message.
            sender: envelope sender (MAIL FROM); a display name is ignored.
            recipients: envelope recipients (RCPT TO). If any is refused no DATA is sent, so
                nobody receives a message that will be retried.

        Raises:
            TransientSendError: retry later.
            PermanentSendError: do not retry (TlsRequiredError: also alert).
            AuthenticationError: pause sending and alert the operator.
            AddressError: an envelope address is invalid.
        """
        envelope_from = _envelope_address(sender)
        envelope_to = [_envelope_address(recipient) for recipient in recipients]
        if not envelope_to:
            raise AddressError("a message needs at least one recipient")
        deadline = self._settings.timeout
        async with self._lock:
            self._stage = "connect"
            try:
                async with asyncio.timeout(deadline):
                    return await self._send_locked(raw, envelope_from, envelope_to)
            except SendError:
                raise
            except TimeoutError as exc:
                # Only our deadline lands here; aiosmtplib's own timeouts are classified inside.
                self._discard()
                raise TransientSendError(
                    f"SMTP {self._settings.host}:{self._settings.port}: no reply within the total deadline of {deadline:g} s "
                    f"(during {self._stage})",
                    stage=self._stage,
                    maybe_delivered=self._stage == "data",
                ) from exc
            except BaseException:
                # Cancelled mid-command: the connection state is unknown, never reuse it.
                self._discard()
                raise

    async def _send_locked(self, raw: bytes, sender: str, recipients: list[str]) -> str:
        host = f"{self._settings.host}:{self._settings.port}"
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            reused = await self._ensure_connection()
            assert self._smtp is not None
            smtp = self._smtp
            try:
                reply = await self._transaction(smtp, raw, sender, recipients)
            except _Refused as refused:
                await self._reset(smtp)
                error = (PermanentSendError if refused.code >= 500 else TransientSendError)(
                    f"SMTP {host}, rcpt: recipient refused: {refused}", code=refused.code, stage="rcpt"
                )
                raise error from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                dropped = isinstance(exc, aiosmtplib.SMTPServerDisconnected) or (
                    isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421
                )
                if reused and dropped and attempt == 1 and self._stage == "mail":
                    # The server closed a kept-alive connection between messages (idle timeout,
                    # restart); nothing of this message was accepted, so one fresh connection is safe.
                    self._discard()
                    logger.info(
                        "SMTP connection dropped between messages; reconnecting",
                        extra={"action": "smtp_reconnect"},
                    )
                    continue
                if isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected:
                    await self._reset(smtp)
                else:
                    self._discard()
                raise _classify(exc, self._stage, host) from exc
            finally:
                self._last_used = loop.time()
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._discard()

    async def _ensure_connection(self) -> bool:
        """Make self._smtp a usable connection; True if it was kept from an earlier send."""
        smtp = self._smtp
        if smtp is not None and smtp.is_connected:
            idle = asyncio.get_running_loop().time() - self._last_used
            if idle < self._noop_after_idle:
                return True
            self._stage = "noop"
            try:
                await smtp.noop()
                return True
            except (aiosmtplib.SMTPException, OSError):
                logger.info(
                    "SMTP connection went stale while idle; reconnecting", extra={"action": "smtp_reconnect"}
                )
        self._discard()
        self._smtp = await self._open()
        return False

    async def _open(self) -> aiosmtplib.SMTP:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            local_hostname=s.local_hostname,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            # STARTTLS is driven below rather than by aiosmtplib so that "not offered" is told apart
            # from other failures; False here only stops aiosmtplib's opportunistic upgrade.
            start_tls=False,
            validate_certs=s.validate_certs,
            cert_bundle=s.cert_bundle,
        )
        try:
            self._stage = "connect"
            await smtp.connect(timeout=s.connect_timeout)
            if s.security == "starttls":
                self._stage = "starttls"
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise TlsRequiredError(
                        f"SMTP {s.host}:{s.port}: the server does not offer STARTTLS, which is required; "
                        "nothing was sent",
                        stage="starttls",
                    )
                await smtp.starttls()
            if s.username is not None and s.password is not None:
                self._stage = "auth"
                if smtp.is_ehlo_or_helo_needed:
                    await smtp.ehlo()
                if not smtp.supports_extension("auth"):
                    at = f" ({s.username_at})" if s.username_at else ""
                    raise LoginNotOfferedError(
                        f"SMTP {s.host}:{s.port}: the server offers no login (AUTH is not in its EHLO "
                        f"reply{'' if s.security != 'none' else ' over this plain connection'}) but "
                        f"smtp.username is set{at}: remove smtp.username and smtp.password_file from the "
                        "config (a relay that takes mail without a login needs neither) and reload",
                        stage="auth",
                    )
                await smtp.login(s.username, s.password)
        except SendError:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _classify(exc, self._stage, f"{s.host}:{s.port}") from exc
        except BaseException:
            smtp.close()
            raise
        logger.debug("SMTP connected to %s:%s", s.host, s.port, extra={"action": "smtp_connect"})
        return smtp

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, raw: bytes, sender: str, recipients: list[str]
    ) -> str:
        self._stage = "mail"
        options = [f"SIZE={len(raw)}"] if smtp.supports_extension("size") else []
        await smtp.mail(sender, options=options)
        self._stage = "rcpt"
        worst: _Refused | None = None
        for recipient in recipients:
            try:
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if worst is None or exc.code > worst.code:
                    worst = _Refused(exc.code, exc.message)
        if worst is not None:
            raise worst
        self._stage = "data"
        response = await smtp.data(raw)
        return response.message


class FileTransport:
    """Writes each message to `directory` as `{UTC timestamp}-{Message-ID}.eml`, for use without SMTP.

    Files appear whole or not at all (written to a dot-file, then renamed), with mode 0600 since
    they hold customer addresses.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> str:
        """Store `raw`; same contract as SmtpTransport.send. Returns "stored <file name>"."""
        _envelope_address(sender)
        if not recipients:
            raise AddressError("a message needs at least one recipient")
        for recipient in recipients:
            _envelope_address(recipient)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        try:
            name = await asyncio.to_thread(self._write, raw, stamp)
        except OSError as exc:
            raise TransientSendError(f"cannot write to {self.directory}: {exc}", stage="file") from exc
        return f"stored {name}"

    def _write(self, raw: bytes, stamp: str) -> str:
        headers = BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
        message_id = re.sub(r"[^A-Za-z0-9_.@-]+", "", str(headers.get("Message-ID", "")))[:120]
        name = f"{stamp}-{message_id or 'no-message-id'}.eml"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.directory / name
        temp = self.directory / f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(raw)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        # The rename is only durable once the directory entry is on disk.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name


def transport_for(settings: SmtpSettings | None, file_dir: Path) -> SmtpTransport | FileTransport:
    """SMTP when a server is configured, otherwise .eml files in `file_dir`."""
    if settings is None:
        return FileTransport(file_dir)
    return SmtpTransport(settings)


_DATE_LINE_RE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)


def with_date(raw: bytes, date: dt.datetime) -> bytes:
    """`raw` with its Date header set to `date`; nothing else changes (the body, the boundary and
    the Message-ID stay byte for byte).

    Raises:
        MessageBuildError: `date` is naive, or `raw` has no single Date header in its header block.
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise MessageBuildError("the Date must be timezone-aware")
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise MessageBuildError("the message has no header block")
    head = raw[: end + 2]
    found = _DATE_LINE_RE.findall(head)
    if len(found) != 1:
        raise MessageBuildError(f"the message has {len(found)} Date headers, not one")
    line = f"Date: {email.utils.format_datetime(date)}\r\n".encode("ascii")
    return _DATE_LINE_RE.sub(lambda _: line, head, count=1) + raw[end + 2 :]
