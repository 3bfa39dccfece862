"""Email as bytes [pure]: address and header checks, Message-IDs, and a rendered message built into exact RFC 5322 bytes."""

from __future__ import annotations

import datetime as dt
import email.errors
import email.policy
import email.utils
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from notifier.core.messages import RenderedMessage
from notifier.errors import NotifierError

__all__ = [
    "SUBJECT_MAX_CHARS",
    "TOKEN_MAX_CHARS",
    "URI_MAX_CHARS",
    "AddressError",
    "AuthenticationError",
    "LoginNotOfferedError",
    "MessageBuildError",
    "PermanentSendError",
    "SendError",
    "ServerUnreachableError",
    "TlsRequiredError",
    "TransientSendError",
    "build_message",
    "clean_subject",
    "envelope_address",
    "header_token",
    "make_message_id",
    "validate_address",
    "with_date",
]

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


def envelope_address(text: str) -> str:
    """The bare address of `text`, a display name allowed (what SMTP's MAIL FROM and RCPT TO take)."""
    return _parse_address(text, allow_display_name=True)[1]


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
