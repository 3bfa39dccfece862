"""The simulator over loopback HTTP: `SimulatorServer` and `serve`."""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from notifier.testing.simulator.model import (
    Fault,
    Journey,
    _Reply,
)
from notifier.testing.simulator.pages import _iter_filler
from notifier.testing.simulator.world import Simulator

# --------------------------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        try:
            reply = self.server.simulator._dispatch(
                split.path,
                split.query,
                host=self.headers.get("Host"),
                user_agent=self.headers.get("User-Agent", ""),
            )
        except Exception:
            # A simulator bug must still be answered, or the client under test would see a reset
            # and blame itself; the traceback goes to stderr through handle_error.
            self.close_connection = True
            self._send(_Reply(500, [("Content-Type", "text/plain; charset=UTF-8")], b"simulator error\n"))
            raise
        self._send(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: one stderr line per request would drown test and benchmark output."""

    def _send(self, reply: _Reply) -> None:
        spec = reply.spec
        stopping = self.server.stopping
        if spec is not None and spec.fault is Fault.RESET:
            # Linger 0 makes close() send RST instead of FIN: a reset, not a polite hang-up.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if spec is not None and spec.fault is Fault.SLOW and stopping.wait(spec.delay):
            self.close_connection = True
            return
        length = len(reply.body) + reply.padding
        lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if spec is not None and spec.fault is Fault.TRICKLE:
            self.wfile.write(head)
            self._trickle(reply.body, spec.delay)
        elif reply.padding:
            self.wfile.write(head + reply.body)
            for chunk in _iter_filler(reply.padding):
                if stopping.is_set():
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
        else:
            # One write: headers and body in separate segments would meet delayed ACKs on keep-alive.
            self.wfile.write(head + reply.body)

    def _trickle(self, body: bytes, delay: float) -> None:
        piece = 64
        count = max(1, math.ceil(len(body) / piece))
        pause = delay / count
        for i in range(count):
            if self.server.stopping.wait(pause):
                self.close_connection = True
                return
            self.wfile.write(body[i * piece : (i + 1) * piece])


class _HTTPServer(HTTPServer):
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: Simulator, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.simulator = simulator
        self.stopping = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True, name="simulator-conn"
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (or was reset on purpose): nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Wake every kept-alive connection's thread and wait for it to finish."""
        with self._connections_lock:
            open_now = list(self._connections.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


class SimulatorServer:
    """Serves a `Simulator` over real HTTP/1.1 (keep-alive) on loopback, from a daemon thread."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        httpd = _HTTPServer((self.host, self._port), self.simulator, family)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="simulator"
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:43211` (available once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections(timeout=5.0)
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    *,
    step_seconds: float | None,
    journeys: list[Journey],
    fault: Fault | None = None,
    retry_after: float | None = None,
) -> None:
    """Serve until KeyboardInterrupt or SIGTERM; reveal one more scan of every journey each step.

    `fault` makes every answer fail that way, to rehearse what an operator would see.
    """
    simulator = Simulator(journeys)
    if fault is not None:
        simulator.set_fault(fault, retry_after=retry_after, delay=60.0)
    stop = threading.Event()
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if in_main:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with SimulatorServer(simulator, host, port) as server:
            # The real address matters when port 0 let the system choose one.
            print(f"Japan Post simulator listening on {server.base_url}", file=sys.stderr, flush=True)
            next_step = time.monotonic() + step_seconds if step_seconds else math.inf
            try:
                while not stop.is_set():
                    # Short waits keep Ctrl-C responsive while the main thread blocks here.
                    stop.wait(min(0.5, max(0.0, next_step - time.monotonic())))
                    if time.monotonic() >= next_step and step_seconds:
                        simulator.advance()
                        next_step += step_seconds
            except KeyboardInterrupt:
                pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
