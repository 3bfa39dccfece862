"""The JSON API served by a real uvicorn over a real store (SQLite and PostgreSQL): tokens, watches made,
read, listed and unwatched, errors naming the field, and every answer checked against the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import jsonschema
import pytest

from notifier.cli.store import _status_row
from notifier.config import HttpSettings, Settings, parse_settings
from notifier.config.settings import IntakeSettings, Watch
from notifier.core.diff import diff_detail
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.parser import parse_page
from notifier.core.views import PageCapture
from notifier.errors import ConfigError
from notifier.pipeline.activity import Activity
from notifier.pipeline.cycle import CircuitBreaker
from notifier.store import Store
from notifier.web.admin.board import shipment_row
from notifier.web.api import api_routes
from notifier.web.app import build_app
from notifier.web.openapi import DOCUMENT
from notifier.web.state import DaemonView
from tests.web_server import serving

PAGES = Path(__file__).parent / "data" / "pages"
CAPTURE = (PAGES / "en_ems_detail_intransit_2014.html").read_bytes()
TOKEN = "an api token of more than sixteen characters"
NUMBER = "EL015307999JP"
OTHER = f"RR12345678{s10_check_digit('12345678')}JP"
CONFIGURED = f"RR87654321{s10_check_digit('87654321')}JP"


def settings(token: str | None = TOKEN) -> Settings:
    return Settings(
        http=HttpSettings(host="127.0.0.1", port=0, public_url="http://127.0.0.1", secret="s" * 32),
        intake=IntakeSettings(api_token=token),
        watches=(Watch(number=CONFIGURED, source="config.toml:3"),),
    )


class View:
    """What the API reads of a running daemon."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.breaker = CircuitBreaker()
        self.activity = Activity()
        self.notifier = SimpleNamespace(paused=False)
        self.last_tick: dt.datetime | None = None
        self.last_good_cycle: dt.datetime | None = None


class Served:
    def __init__(self, url: str, store: Store, view: View) -> None:
        self.url = url
        self.store = store
        self.view = view

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers)


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Served]:
    store = await Store.open(db_url)
    try:
        view = View(store, settings())
        app = build_app(cast(DaemonView, view), extra_routes=api_routes(cast(DaemonView, view)))
        async with serving(app) as url:
            yield Served(url, store, view)
    finally:
        await store.close()


def check(response: httpx.Response, path: str, method: str) -> None:
    """The answer's status is documented for the route, and its JSON body matches the schema."""
    operation = DOCUMENT["paths"][path][method.lower()]
    documented = operation["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code, response.text)
    content = documented[str(response.status_code)].get("content")
    if content is None:
        assert response.content == b""
        return
    kind = response.headers["content-type"].split(";")[0]
    assert kind in content, (kind, list(content))
    if kind != "application/json":
        return
    schema = {**content["application/json"]["schema"], "components": DOCUMENT["components"]}
    jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


WATCHES = "/api/v1/watches"
ONE = "/api/v1/watches/{number}"


async def test_post_watches_a_number_with_its_subscribers(served: Served) -> None:
    body = {
        "number": "el 015 307 999 jp",
        "subscribers": ["Alice@Example.com"],
        "label": "#1001",
        "locale": "ja",
        "tags": ["ems"],
    }
    async with served.client() as client:
        response = await client.post(WATCHES, json=body)
        check(response, WATCHES, "POST")
        assert response.status_code == 201
        watch = response.json()
        assert watch["number"] == NUMBER
        assert watch["watched_by"] == "api"
        assert watch["subscribers"] == ["Alice@example.com"]
        assert watch["label"] == "#1001"
        assert watch["tags"] == ["ems"]
        assert watch["active"]
        # Posting it again updates it: 200, nothing doubled.
        again = await client.post(WATCHES, json={**body, "label": "#1001b"})
        check(again, WATCHES, "POST")
        assert again.status_code == 200
        assert again.json()["label"] == "#1001b"
        assert again.json()["subscribers"] == ["Alice@example.com"]
    stored = await served.store.get(NUMBER)
    assert stored is not None
    assert stored.watched_by == "api"
    assert stored.active
    recipients = await served.store.recipients(stored.id)
    assert [(email, locale) for _, email, locale, _ in recipients] == [("Alice@example.com", "ja")]


async def test_bad_json_is_400_and_invalid_values_are_422_naming_the_field(served: Served) -> None:
    async with served.client() as client:
        for content in (b"{not json", b"[1, 2]", b"\xff\xfe"):
            response = await client.post(WATCHES, content=content)
            check(response, WATCHES, "POST")
            assert response.status_code == 400, content
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"number": "EL015307998JP"}, "number", "check digit"),
            ({}, "number", "required"),
            ({"number": NUMBER, "subscribers": ["not an address"]}, "subscribers", "not an address"),
            ({"number": NUMBER, "label": "x" * 201}, "label", "at most 200"),
            ({"number": NUMBER, "locale": "fr"}, "locale", "en or ja"),
            ({"number": NUMBER, "tags": ["two words"]}, "tags", "one word"),
            ({"number": NUMBER, "colour": "red"}, "colour", "unknown key"),
            ({"number": NUMBER, "name": "Alex"}, "name", "unknown key"),
            ({"number": NUMBER, "destination": "USA"}, "destination", "two-letter"),
            ({"number": NUMBER, "time_zone": "Mars/Base"}, "time_zone", "IANA"),
        ]
        for body, field, reason in cases:
            response = await client.post(WATCHES, json=body)
            check(response, WATCHES, "POST")
            assert response.status_code == 422, body
            problems = response.json()["problems"]
            assert any(p["field"] == field and reason in p["reason"] for p in problems), problems
    # None of them watched anything.
    assert await served.store.shipments(include_inactive=True) == []


async def test_a_wrong_or_missing_token_is_401_and_changes_nothing(served: Served) -> None:
    for token in (None, "a wrong token of the same sort of length!!", TOKEN[:-1]):
        async with served.client(token) as client:
            for method, path, template in (
                ("POST", WATCHES, WATCHES),
                ("GET", WATCHES, WATCHES),
                ("GET", f"{WATCHES}/{NUMBER}", ONE),
                ("DELETE", f"{WATCHES}/{NUMBER}", ONE),
            ):
                response = await client.request(method, path, json={"number": NUMBER})
                check(response, template, method)
                assert response.status_code == 401, (token, method, path)
                assert response.headers["www-authenticate"].startswith("Bearer")
    async with httpx.AsyncClient(base_url=served.url, headers={"Authorization": f"Basic {TOKEN}"}) as client:
        assert (await client.get(WATCHES)).status_code == 401
    assert await served.store.shipments(include_inactive=True) == []


async def test_without_a_token_configured_there_is_no_api(served: Served) -> None:
    served.view.settings = settings(token=None)
    async with served.client() as client:
        for method, path in (
            ("POST", WATCHES),
            ("GET", WATCHES),
            ("GET", f"{WATCHES}/{NUMBER}"),
            ("DELETE", f"{WATCHES}/{NUMBER}"),
            ("GET", "/api/v1/openapi.json"),
        ):
            response = await client.request(method, path)
            assert response.status_code == 404, path
            assert "Page not found" in response.text
    # A reload that adds the token opens it.
    served.view.settings = settings()
    async with served.client() as client:
        assert (await client.get(WATCHES)).status_code == 200


async def test_get_shows_stage_window_and_last_events(served: Served) -> None:
    now = dt.datetime.now(dt.UTC)
    view = await served.store.watch(parse_number(NUMBER), now=now, label="#1")
    page = parse_page(CAPTURE)
    await served.store.record_poll(
        view.id,
        change=diff_detail(await served.store.history(view.id), page, NUMBER),
        item=page.item(NUMBER),
        now=now,
        next_poll_at=now + dt.timedelta(hours=6),
        capture=PageCapture(body=CAPTURE, url="http://jp/test", layout=str(page.layout)),
    )
    async with served.client() as client:
        response = await client.get(f"{WATCHES}/{NUMBER.lower()}")
        check(response, ONE, "GET")
        assert response.status_code == 200
        watch = response.json()
        history = await served.store.history(view.id)
        assert watch["stage"] == (await served.store.get(NUMBER)).stage.value  # type: ignore[union-attr]
        assert watch["stage"] != "pending"
        assert len(watch["events"]) == min(10, len(history)) > 0
        assert watch["events"][0]["when"] == max(e.when.iso_local() for e in history)
        # The capture is from 2014: the time model withholds a window and says why.
        assert watch["window"] is not None or watch["window_withheld"]
        missing = await client.get(f"{WATCHES}/{OTHER}")
        check(missing, ONE, "GET")
        assert missing.status_code == 404


async def test_delete_unwatches_and_the_list_filters_by_stage(served: Served) -> None:
    async with served.client() as client:
        for number in (NUMBER, OTHER):
            assert (await client.post(WATCHES, json={"number": number})).status_code == 201
        listed = await client.get(WATCHES)
        check(listed, WATCHES, "GET")
        assert [w["number"] for w in listed.json()["watches"]] == sorted([NUMBER, OTHER])
        pending = await client.get(WATCHES, params={"stage": "pending,delivered"})
        assert len(pending.json()["watches"]) == 2
        delivered = await client.get(WATCHES, params=[("stage", "delivered"), ("stage", "returned")])
        check(delivered, WATCHES, "GET")
        assert delivered.json()["watches"] == []
        bad = await client.get(WATCHES, params={"stage": "lost"})
        check(bad, WATCHES, "GET")
        assert bad.status_code == 422
        assert bad.json()["problems"][0]["field"] == "stage"
        assert "'lost' is not a stage" in bad.json()["problems"][0]["reason"]

        gone = await client.delete(f"{WATCHES}/{OTHER}")
        check(gone, ONE, "DELETE")
        assert gone.status_code == 204
        assert [w["number"] for w in (await client.get(WATCHES)).json()["watches"]] == [NUMBER]
        after = await client.get(f"{WATCHES}/{OTHER}")
        assert after.status_code == 200
        assert after.json()["active"] is False
        never = await client.delete(f"{WATCHES}/{CONFIGURED.replace('RR', 'RA')}")
        check(never, ONE, "DELETE")
        assert never.status_code == 404
        # Watched again through the API: active again.
        assert (await client.post(WATCHES, json={"number": OTHER})).status_code == 201
    stored = await served.store.get(OTHER)
    assert stored is not None
    assert stored.active


async def test_the_configured_watchlist_is_not_changed_through_the_api(served: Served) -> None:
    async with served.client() as client:
        response = await client.post(WATCHES, json={"number": CONFIGURED, "label": "mine"})
        check(response, WATCHES, "POST")
        assert response.status_code == 409
        assert await served.store.get(CONFIGURED) is None


async def test_a_reload_does_not_unwatch_api_watches(served: Served) -> None:
    async with served.client() as client:
        assert (await client.post(WATCHES, json={"number": NUMBER})).status_code == 201
    # The configuration's sync (as at each reload) with a watchlist that does not list it.
    await served.store.sync_config_watches([], now=dt.datetime.now(dt.UTC))
    stored = await served.store.get(NUMBER)
    assert stored is not None
    assert stored.active
    assert stored.watched_by == "api"


async def test_the_parcel_page_and_status_json_say_the_watch_came_from_the_api(served: Served) -> None:
    async with served.client() as client:
        assert (await client.post(WATCHES, json={"number": NUMBER})).status_code == 201
    view = await served.store.get(NUMBER)
    assert view is not None
    row = shipment_row(view, (), frozenset(), {}, dt.datetime.now(dt.UTC))
    assert row.watched_by == "the JSON API"
    assert _status_row(view)["watched_by"] == "api"


async def test_the_openapi_document_is_served_and_covers_every_route(served: Served) -> None:
    jsonschema.Draft202012Validator.check_schema(DOCUMENT["components"]["schemas"]["Watch"])
    async with httpx.AsyncClient(base_url=served.url) as client:  # the document needs no token
        response = await client.get("/api/v1/openapi.json")
        check(response, "/api/v1/openapi.json", "GET")
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document == DOCUMENT
    # Every documented route and method is served (not 404/405 from the router).
    async with served.client() as client:
        for path, item in DOCUMENT["paths"].items():
            for method in set(item) - {"parameters"}:
                answer = await client.request(method.upper(), path.replace("{number}", NUMBER), json={})
                assert answer.status_code not in (405,), (method, path)
                assert str(answer.status_code) in item[method]["responses"], (
                    method,
                    path,
                    answer.status_code,
                )
    # Every schema in the document is a valid JSON Schema.
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


# --- settings ---------------------------------------------------------------------------------


def test_the_token_comes_from_a_file_and_a_short_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFIER_API_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    loaded = parse_settings('[intake]\napi_token_file = "token"\n', source=tmp_path / "config.toml")
    assert loaded.intake.api_token == TOKEN
    assert TOKEN not in repr(loaded)
    assert parse_settings("", source=tmp_path / "config.toml").intake.api_token is None
    (tmp_path / "short").write_text("too short", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"config.toml:2: intake.api_token_file: the API token in short is 9 characters long; at least 16",
    ):
        parse_settings('[intake]\napi_token_file = "short"\n', source=tmp_path / "config.toml")
    with pytest.raises(ConfigError, match=r"intake.api_token: secrets do not go in the config file"):
        parse_settings(f'[intake]\napi_token = "{TOKEN}"\n', source=tmp_path / "config.toml")
    monkeypatch.setenv("NOTIFIER_API_TOKEN", TOKEN)
    assert parse_settings("", source=tmp_path / "config.toml").intake.api_token == TOKEN
    monkeypatch.delenv("NOTIFIER_API_TOKEN")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api-token").write_text(TOKEN, encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert parse_settings("", source=tmp_path / "config.toml").intake.api_token == TOKEN


async def test_the_web_faces_limits_answer_as_documented(served: Served) -> None:
    async with served.client() as client:
        large = await client.post(WATCHES, content=b"{" + b" " * 17 * 1024 + b"}")
        assert large.status_code == 413
        check(large, WATCHES, "POST")
        # The per-client bucket (60 at once) runs out: 429 with Retry-After, as documented.
        answers = [await client.get(WATCHES) for _ in range(70)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited
    assert limited[0].headers["retry-after"]
    check(limited[0], WATCHES, "GET")
