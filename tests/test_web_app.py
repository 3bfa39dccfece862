"""The web face's shell, served by a real uvicorn on loopback: security headers on every answer,
the body and rate limits, error pages that reveal nothing, and the daemon's signals left alone."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.web.app import CONTENT_SECURITY_POLICY, MAX_BODY, RateLimit, RateLimitMiddleware, build_app
from notifier.web.server import ListenError, WebServer, bind
from notifier.web.state import DaemonView


async def _boom(request: Request) -> Response:
    raise RuntimeError("secret detail: customer@example.com")


async def _echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


EXTRA: Sequence[BaseRoute] = (Route("/boom", _boom), Route("/echo", _echo, methods=["POST"]))


@pytest.fixture
async def served() -> AsyncIterator[str]:
    view = cast(DaemonView, SimpleNamespace())
    server = WebServer(build_app(view, extra_routes=EXTRA), bind("127.0.0.1", 0))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


def _secure(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_every_answer_carries_the_security_headers(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        for response in (
            await client.get("/static/page.css"),
            await client.get("/no/such/page"),
            await client.post("/static/page.css"),
        ):
            _secure(response)
    assert "server" not in response.headers


async def test_an_unexpected_error_is_a_generic_page_and_a_logged_traceback(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="notifier.web.app"):
        async with httpx.AsyncClient(base_url=served) as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    _secure(response)
    assert "secret detail" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert "Something went wrong" in response.text
    failed = [r for r in caplog.records if r.getMessage().startswith("web request failed: GET /boom")]
    assert failed
    assert failed[0].exc_info is not None


async def test_a_body_over_the_limit_is_refused_declared_or_streamed(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        assert (await client.post("/echo", content=b"x" * MAX_BODY)).text == str(MAX_BODY)
        too_big = await client.post("/echo", content=b"x" * (MAX_BODY + 1))
        assert too_big.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(MAX_BODY // 1024 + 2):
                yield b"y" * 1024

        streamed = await client.post("/echo", content=chunks())  # chunked: no Content-Length
        assert streamed.status_code == 413
        _secure(streamed)


async def test_a_client_over_the_rate_limit_waits_and_others_do_not() -> None:
    now = [0.0]

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    limiter = RateLimitMiddleware(ok, RateLimit(per_minute=60, burst=3), clock=lambda: now[0])
    transport = httpx.ASGITransport(app=limiter, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        codes = [(await client.get("/")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = await client.get("/")
        assert refused.headers["retry-after"] == "1"
        now[0] += 1.0  # one request a second comes back
        assert (await client.get("/")).status_code == 200
    other = httpx.ASGITransport(app=limiter, client=("198.51.100.9", 1234))
    async with httpx.AsyncClient(transport=other, base_url="http://test") as client:
        assert (await client.get("/")).status_code == 200


async def test_serving_leaves_the_daemons_signal_handlers_in_place() -> None:
    loop = asyncio.get_running_loop()
    heard: list[int] = []
    loop.add_signal_handler(signal.SIGTERM, heard.append, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        server = WebServer(build_app(cast(DaemonView, SimpleNamespace())), bind("127.0.0.1", 0))
        await server.start()
        try:
            assert {sig: signal.getsignal(sig) for sig in before} == before
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert heard == [signal.SIGTERM]  # the daemon's handler, not uvicorn's
            assert server.task is not None
            assert not server.task.done()  # still serving
        finally:
            await server.stop()
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def test_a_taken_port_is_a_listen_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=rf"http.listen: cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
