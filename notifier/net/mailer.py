"""Email out: stored message bytes → SMTP server or .eml file (the bytes are built in notifier.core.mime)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.errors
import email.policy
import email.utils
import logging
import os
import re
import secrets
import socket
import ssl
from collections.abc import Sequence
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosmtplib

from notifier.config.smtp import SmtpSettings
from notifier.core.mime import (
    AddressError,
    AuthenticationError,
    LoginNotOfferedError,
    PermanentSendError,
    SendError,
    ServerUnreachableError,
    TlsRequiredError,
    TransientSendError,
    envelope_address,
)

__all__ = [
    "FileTransport",
    "SmtpTransport",
    "transport_for",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Transports


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
        envelope_from = envelope_address(sender)
        envelope_to = [envelope_address(recipient) for recipient in recipients]
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
        envelope_address(sender)
        if not recipients:
            raise AddressError("a message needs at least one recipient")
        for recipient in recipients:
            envelope_address(recipient)
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
