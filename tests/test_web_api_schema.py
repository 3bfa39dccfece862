"""Schemathesis against the JSON API: requests generated from the OpenAPI document (valid and not) sent
to the real app on a real socket; no answer is a server error, and each status, type and body is documented."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.middleware import Middleware

from notifier.store import Store
from notifier.web.api import api_routes
from notifier.web.app import RateLimit, RateLimitMiddleware, build_app
from notifier.web.openapi import DOCUMENT
from notifier.web.state import DaemonView
from tests.test_web_api import TOKEN, View
from tests.test_web_api import settings as api_settings
from tests.web_server import serving

schema = schemathesis.openapi.from_dict(DOCUMENT)


class Live(threading.Thread):
    """The API over a SQLite store, served by the daemon's uvicorn in a loop of its own thread."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.base = ""
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        store = await Store.open(self.url)
        try:
            view = cast(DaemonView, View(store, api_settings()))
            app = build_app(view, extra_routes=api_routes(view))
            # Hundreds of requests from one address: the per-client limit would answer most with 429.
            app.user_middleware = [
                Middleware(RateLimitMiddleware, limit=RateLimit(per_minute=1e9, burst=10**9))
                if cast(object, m.cls) is RateLimitMiddleware
                else m
                for m in app.user_middleware
            ]
            async with serving(app) as base:
                self.base = base
                self.ready.set()
                await asyncio.to_thread(self.done.wait)
        finally:
            await store.close()
            self.ready.set()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    path = tmp_path_factory.mktemp("api") / "api.db"
    shutil.copyfile(sqlite_template, path)
    server = Live(f"sqlite:///{path}")
    server.start()
    server.ready.wait(30)
    assert server.base, "the API did not start"
    try:
        yield server.base
    finally:
        server.done.set()
        server.join(30)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_gets_a_documented_answer(case: Any, live: str) -> None:
    case.call_and_validate(
        base_url=live,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
