"""Real aiosmtpd servers on 127.0.0.1 for tests: record every command and message, play scripted faults."""

# To use the fixtures elsewhere, import them into the test module (see test_mailer.py), or list
# "tests.smtp_server" in pytest_plugins of the root conftest.py.

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, AnyStr, Self

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notifier.config.smtp import Security, SmtpSettings

__all__ = [
    "AUTH_PASSWORD",
    "AUTH_USER",
    "Command",
    "Faults",
    "Received",
    "RecordingHandler",
    "SmtpServer",
    "ca_bundle",
    "smtp_server",
    "smtp_server_auth",
    "smtp_server_starttls",
    "smtp_server_tls",
    "tls_ca",
    "untrusted_ca_bundle",
]

AUTH_USER = "notifier"
AUTH_PASSWORD = "correct horse"
SERVER_NAME = "smtp.test"


@dataclass
class Faults:
    """What the server does wrong; set before sending. Counters count down as faults fire."""

    #: reply "451 4.3.0" to this many DATA commands (after reading the body), then 250
    data_temp_failures: int = 0
    #: reply to the next MAIL FROM with this once, e.g. "421 4.4.2 Idle too long, closing"
    mail_reply_once: str | None = None
    #: reply to every RCPT TO with this, e.g. "550 5.1.1 No such user"
    rcpt_reply: str | None = None
    #: store the message, then drop the connection before the final reply, this many times (RFC 1047)
    disconnect_after_data: int = 0
    #: close the connection right after each 250 to DATA (a server dropping kept-alive connections)
    close_after_delivery: bool = False
    #: seconds between single bytes of the replies to MAIL, RCPT and DATA (0: reply normally)
    trickle: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    """One message the server accepted, or stored before dropping the connection."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    answered: bool


@dataclass(frozen=True, slots=True)
class Command:
    """One SMTP command as the server read it."""

    verb: str
    tls: bool
    connection: int


@dataclass
class RecordingHandler:
    """aiosmtpd handler: stores messages and commands, and plays the scripted Faults.

    Its methods run in the server thread; lists are only appended to there and read by the test.
    """

    faults: Faults = field(default_factory=Faults)
    messages: list[Received] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    connections: int = 0
    live: set[_RecordingSMTP] = field(default_factory=set)

    def verbs(self) -> list[str]:
        return [command.verb for command in self.commands]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        reply, self.faults.mail_reply_once = self.faults.mail_reply_once, None
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.faults.rcpt_reply is not None:
            return self.faults.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = _over_tls(server)
        data = envelope.original_content or b""
        if self.faults.data_temp_failures > 0:
            self.faults.data_temp_failures -= 1
            return "451 4.3.0 Try again later"
        if self.faults.disconnect_after_data > 0:
            self.faults.disconnect_after_data -= 1
            self._store(envelope, data, tls=tls, answered=False)
            assert server.transport is not None
            server.transport.close()
            # connection_lost cancels this task; the reply is never written.
            await asyncio.sleep(3600)
            return "421 4.3.0 unreachable"
        self._store(envelope, data, tls=tls, answered=True)
        if self.faults.close_after_delivery:
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_later(0.05, transport.close)
        return "250 2.0.0 Message accepted for delivery"

    def _store(self, envelope: Envelope, data: bytes, *, tls: bool, answered: bool) -> None:
        self.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                tls=tls,
                answered=answered,
            )
        )


def _over_tls(server: SMTP) -> bool:
    # session.ssl is only set by STARTTLS; the transport knows about implicit TLS too.
    return server.transport is not None and server.transport.get_extra_info("sslcontext") is not None


class _Authenticator:
    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            AUTH_USER.encode(),
            AUTH_PASSWORD.encode(),
        )
        # handled=False lets aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=ok, handled=False)


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, recording each command (and whether TLS was up) and able to trickle replies."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = handler
        self._connection_number = 0
        self._verb = ""
        self._smtp_methods = {
            verb: self._recorded(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _recorded(self, verb: str, method: Any) -> Any:
        async def run(arg: str | None) -> None:
            self._verb = verb
            tls = _over_tls(self)
            self._recorder.commands.append(Command(verb, tls, self._connection_number))
            await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again when STARTTLS completes; that is not a new connection.
        if self._original_transport is None:
            self._recorder.connections += 1
            self._connection_number = self._recorder.connections
            self._recorder.live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._recorder.live.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        delay = self._recorder.faults.trickle
        if not delay or self._verb not in ("MAIL", "RCPT", "DATA"):
            await super().push(status)
            return
        reply = status.encode("ascii") if isinstance(status, str) else status
        for index in range(len(reply) + 2):
            # Writes after the client hung up are dropped by the transport; the sleep is where
            # connection_lost cancels us.
            self._writer.write((reply + b"\r\n")[index : index + 1])
            await asyncio.sleep(delay)


class _Controller(Controller):
    """aiosmtpd Controller that binds port 0 and builds our recording server."""

    def __init__(self, handler: RecordingHandler, *, ssl_context: ssl.SSLContext | None, **smtp_kwargs: Any):
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=0,
            ssl_context=ssl_context,
            server_hostname=SERVER_NAME,
            ready_timeout=5.0,
            **smtp_kwargs,
        )
        self.recorder = handler

    def factory(self) -> _RecordingSMTP:
        return _RecordingSMTP(self.recorder, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # The stock trigger connects to self.port, which is still 0 here; read the real port first.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        with socket.create_connection((self.hostname, self.port), timeout=1.0) as sock:
            if self.ssl_context is None:
                sock.recv(1024)
                return
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(sock) as tls_sock:
                tls_sock.recv(1024)


class SmtpServer:
    """A running server: `.host`, `.port`, `.messages`, `.commands`, `.connections`, `.handler.faults`."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        auth: bool = False,
    ) -> None:
        self.handler = RecordingHandler()
        smtp_kwargs: dict[str, Any] = {"enable_SMTPUTF8": False}
        if starttls is not None:
            smtp_kwargs["tls_context"] = starttls
        if auth:
            # Loopback only; TLS-for-AUTH is what our client's security setting is for.
            smtp_kwargs.update(authenticator=_Authenticator(), auth_require_tls=False)
        self._controller = _Controller(self.handler, ssl_context=implicit_tls, **smtp_kwargs)
        self.host = "127.0.0.1"
        self.port = 0
        self.security: Security = "tls" if implicit_tls else "starttls" if starttls else "none"

    @property
    def faults(self) -> Faults:
        return self.handler.faults

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def commands(self) -> list[Command]:
        return self.handler.commands

    @property
    def connections(self) -> int:
        return self.handler.connections

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings pointing at this server, with short timeouts; override any field."""
        base = SmtpSettings(
            host=self.host,
            port=self.port,
            security=self.security,
            timeout=5.0,
            connect_timeout=2.0,
            local_hostname="client.test",
        )
        return replace(base, **overrides)

    def start(self) -> None:
        self._controller.start()
        self.port = self._controller.port
        # Forget the controller's own start-up probe.
        self.handler.connections = 0
        self.handler.commands.clear()

    def stop(self) -> None:
        loop = self._controller.loop
        if loop.is_running():
            # Close server-side connections in their own loop first, so nothing is left for the
            # garbage collector to complain about.
            future = asyncio.run_coroutine_threadsafe(self._close_live(), loop)
            future.result(timeout=5)
        self._controller.stop()

    async def _close_live(self) -> None:
        for protocol in list(self.handler.live):
            if protocol.transport is not None:
                protocol.transport.close()
        for _ in range(100):
            if not self.handler.live:
                return
            await asyncio.sleep(0.01)
        for protocol in list(self.handler.live):
            if protocol.transport is not None:
                protocol.transport.abort()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEM file of the CA that signed the test servers' certificates: pass as cert_bundle."""
    path = tmp_path_factory.mktemp("ca") / "trusted-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def untrusted_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEM file of an unrelated CA: the servers' certificates do not verify against it."""
    path = tmp_path_factory.mktemp("other-ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Plain SMTP, no STARTTLS offered: use with security="none" (or to prove STARTTLS is required)."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_server_starttls(tls_ca: trustme.CA) -> Iterator[SmtpServer]:
    """Offers STARTTLS with a certificate for 127.0.0.1 signed by `tls_ca`."""
    with SmtpServer(starttls=_server_context(tls_ca)) as server:
        yield server


@pytest.fixture
def smtp_server_tls(tls_ca: trustme.CA) -> Iterator[SmtpServer]:
    """Implicit TLS from the first byte (like port 465), certificate signed by `tls_ca`."""
    with SmtpServer(implicit_tls=_server_context(tls_ca)) as server:
        yield server


@pytest.fixture
def smtp_server_auth() -> Iterator[SmtpServer]:
    """Plain SMTP with AUTH PLAIN/LOGIN accepting only AUTH_USER / AUTH_PASSWORD."""
    with SmtpServer(auth=True) as server:
        yield server
