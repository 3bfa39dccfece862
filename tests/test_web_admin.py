"""The operator board: its pure page builders, its sessions and throttle, and its routes served by a
real uvicorn over a real store: login, CSRF, filters, and each action taking effect in the database."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest

from notifier.config import HttpSettings, Settings, parse_settings
from notifier.config.password import PasswordHash
from notifier.core.diff import diff_detail
from notifier.core.mime import make_message_id
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.parser import parse_page
from notifier.core.rules import DEFAULT_STALLS
from notifier.core.sending import OutboxPolicy
from notifier.core.stages import Stage
from notifier.core.views import AlertView, OutboxDraft, OutboxItem, OutboxState, PageCapture, ShipmentView
from notifier.errors import ConfigError
from notifier.pipeline.activity import Activity
from notifier.pipeline.cycle import CircuitBreaker
from notifier.store import Store
from notifier.web.admin import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    SHOWN,
    BoardSnapshot,
    Filters,
    LoginThrottle,
    SessionKeys,
    admin_routes,
    build_board,
    outbox_row,
    stall_of,
)
from notifier.web.app import build_app
from notifier.web.state import DaemonView
from tests.web_server import serving

PAGES = Path(__file__).parent / "data" / "pages"
CAPTURE = (PAGES / "en_ems_detail_intransit_2014.html").read_bytes()
NUMBER_A = "EL015307999JP"
NUMBER_B = f"RR12345678{s10_check_digit('12345678')}JP"
PASSWORD = "correct horse battery staple"
SECRET = "a test secret of more than sixteen characters"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


# --- pure builders ---------------------------------------------------------------------------


def shipment(number: str, **values: object) -> ShipmentView:
    fields: dict[str, object] = {
        "id": 1,
        "number": number,
        "incarnation": 1,
        "label": "",
        "item_type": None,
        "origin": "JP",
        "destination": None,
        "tags": frozenset(),
        "stage": Stage.PENDING,
        "stage_entered_at": None,
        "last_event_time": None,
        "active": True,
        "next_poll_at": NOW,
        "last_polled_at": None,
        "last_changed_at": None,
        "consecutive_failures": 0,
        "last_error": None,
    }
    fields.update(values)
    return ShipmentView(**fields)  # type: ignore[arg-type]


def message(message_id: int, state: OutboxState, **values: object) -> OutboxItem:
    fields: dict[str, object] = {
        "id": message_id,
        "dedup_key": f"k{message_id}",
        "recipient": "alice@example.com",
        "sender": "shop@example.com",
        "locale": "en",
        "time_zone": None,
        "rule": "delivered",
        "template": "delivered",
        "stage": "delivered",
        "number": NUMBER_A,
        "subject": "Delivered",
        "message_id": f"<{message_id}@example.com>",
        "raw": b"bytes",
        "state": state,
        "attempts": 0,
        "next_attempt_at": NOW,
        "last_error": None,
        "created_at": NOW - dt.timedelta(hours=1),
        "sent_at": None,
    }
    fields.update(values)
    return OutboxItem(**fields)  # type: ignore[arg-type]


def alert(alert_id: int, subject: str, text: str) -> AlertView:
    return AlertView(
        id=alert_id,
        kind="poll_failed",
        subject=subject,
        message=text,
        first_seen_at=NOW - dt.timedelta(hours=2),
        last_seen_at=NOW - dt.timedelta(minutes=5),
        count=3,
        acknowledged_at=None,
    )


def snapshot() -> BoardSnapshot:
    a = shipment(
        NUMBER_A,
        id=1,
        label="Order 1001",
        tags=frozenset({"ems", "vip"}),
        stage=Stage.CUSTOMS_CLEARED,
        last_changed_at=NOW - dt.timedelta(days=9),
    )
    b = shipment(
        NUMBER_B,
        id=2,
        label="Order 1002",
        tags=frozenset({"small"}),
        next_poll_at=NOW + dt.timedelta(hours=2),
    )
    return BoardSnapshot(
        shipments=[a, b],
        subscribers={1: ("alice@example.com", "Bob@example.com"), 2: ("carol@example.com",)},
        suppressed=frozenset({"bob@example.com"}),
        alerts=[alert(7, NUMBER_B, "the page could not be read"), alert(8, "smtp", "login refused")],
        outbox=[
            message(3, OutboxState.PENDING, recipient="carol@example.com", number=NUMBER_B),
            message(4, OutboxState.FAILED, last_error="550 mailbox unavailable", attempts=8),
        ],
        depth={"pending": 1, "failed": 1, "sent": 40},
        suppressions=[("bob@example.com", "unsubscribed", NOW - dt.timedelta(days=1))],
    )


def board(filters: Filters = Filters()):  # noqa: B008 - frozen and empty
    return build_board(snapshot(), filters, now=NOW, policy=OutboxPolicy(), stalls=DEFAULT_STALLS)


def test_filters_come_from_the_query_and_go_back_into_it() -> None:
    filters = Filters.from_query({"stage": "delivered", "tag": " vip ", "q": "alice"})
    assert filters == Filters(stage="delivered", tag="vip", text="alice")
    assert Filters.from_query(dict(re.findall(r"(\w+)=([^&]*)", filters.query()))) == filters
    assert filters.board_url() == "/admin/?stage=delivered&tag=vip&q=alice"
    # An unknown stage is no filter (it would hide everything); no filter is the bare board.
    assert Filters.from_query({"stage": "<script>"}) == Filters()
    assert Filters().board_url() == "/admin/"


def test_the_board_lists_everything_without_filters() -> None:
    whole = board()
    assert [row.number for row in whole.shipments] == [NUMBER_A, NUMBER_B]
    assert whole.total_shipments == 2
    assert [row.number for row in whole.stalled] == [NUMBER_A]
    assert [a.id for a in whole.alerts] == [7, 8]
    # Failed messages first: they wait for the operator.
    assert [m.id for m in whole.outbox] == [4, 3]
    assert whole.stage_options == ("customs_cleared", "pending")
    assert whole.tag_options == ("ems", "small", "vip")
    cells = whole.shipments[0].subscribers
    assert [(c.email, c.suppressed) for c in cells] == [
        ("alice@example.com", False),
        ("Bob@example.com", True),
    ]
    assert dict(whole.depth)["failed"] == 1


@pytest.mark.parametrize(
    ("filters", "numbers"),
    [
        (Filters(stage="pending"), [NUMBER_B]),
        (Filters(stage="customs_cleared"), [NUMBER_A]),
        (Filters(tag="vip"), [NUMBER_A]),
        (Filters(text="CAROL"), [NUMBER_B]),
        (Filters(text="order 1001"), [NUMBER_A]),
        (Filters(stage="delivered"), []),
        (Filters(stage="pending", tag="vip"), []),
    ],
)
def test_filters_narrow_the_shipments(filters: Filters, numbers: list[str]) -> None:
    narrowed = board(filters)
    assert [row.number for row in narrowed.shipments] == numbers
    assert [row.number for row in narrowed.stalled] == [n for n in numbers if n == NUMBER_A]


def test_text_also_narrows_alerts_and_the_outbox() -> None:
    narrowed = board(Filters(text="carol"))
    assert [m.id for m in narrowed.outbox] == [3]
    assert narrowed.alerts == ()
    assert [a.id for a in board(Filters(text="refused")).alerts] == [8]


def test_long_lists_are_cut_and_say_how_many_match() -> None:
    many = [
        shipment(
            f"EJ{i:08d}{s10_check_digit(f'{i:08d}')}JP",
            id=i,
            stage=Stage.OUT_FOR_DELIVERY,
            last_changed_at=NOW - dt.timedelta(days=3 + i % 2),
        )
        for i in range(SHOWN + 50)
    ]
    cut = build_board(
        BoardSnapshot(
            shipments=many,
            subscribers={},
            suppressed=frozenset(),
            alerts=[],
            outbox=[],
            depth={},
            suppressions=[],
        ),
        Filters(),
        now=NOW,
        policy=OutboxPolicy(),
        stalls=DEFAULT_STALLS,
    )
    assert (len(cut.shipments), cut.matching, cut.total_shipments) == (SHOWN, SHOWN + 50, SHOWN + 50)
    assert (len(cut.stalled), cut.stalled_matching) == (SHOWN, SHOWN + 50)
    # All stalled alike: the longest quiet first (odd ids have been quiet a day longer).
    assert cut.shipments[0].number == many[1].number


def test_a_shipment_is_stalled_after_its_stages_stall_time_only() -> None:
    rule = DEFAULT_STALLS[Stage.CUSTOMS_CLEARED]
    quiet = shipment(NUMBER_A, stage=Stage.CUSTOMS_CLEARED, last_changed_at=NOW - rule.after)
    assert "no news for 7 days in customs_cleared" in stall_of(quiet, DEFAULT_STALLS, NOW)
    fresh = shipment(
        NUMBER_A, stage=Stage.CUSTOMS_CLEARED, last_changed_at=NOW - rule.after + dt.timedelta(hours=1)
    )
    assert stall_of(fresh, DEFAULT_STALLS, NOW) == ""
    # Silence in customs is often normal, and the board says so.
    customs = shipment(NUMBER_A, stage=Stage.CUSTOMS_PRESENTED, stage_entered_at=NOW - dt.timedelta(days=30))
    assert "often normal" in stall_of(customs, DEFAULT_STALLS, NOW)
    # Delivered has no stall rule.
    done = shipment(NUMBER_A, stage=Stage.DELIVERED, last_changed_at=NOW - dt.timedelta(days=300))
    assert stall_of(done, DEFAULT_STALLS, NOW) == ""


def test_outbox_rows_say_why_and_when_each_message_goes() -> None:
    quiet = OutboxPolicy(quiet_hours=(dt.time(11, 0), dt.time(13, 0)))
    pending = outbox_row(message(1, OutboxState.PENDING, time_zone="UTC"), quiet, NOW)
    assert pending.goes == "goes 2026-12-01 13:00Z (quiet hours)"
    retry = outbox_row(
        message(
            2,
            OutboxState.PENDING,
            attempts=2,
            last_error="451 try later",
            next_attempt_at=NOW + dt.timedelta(minutes=4),
        ),
        OutboxPolicy(),
        NOW,
    )
    assert (retry.goes, retry.reason, retry.can_retry) == (
        "goes 2026-12-01 12:04Z (retry)",
        "451 try later",
        False,
    )
    held = outbox_row(message(3, OutboxState.HELD), OutboxPolicy(), NOW)
    assert held.goes == "goes when pages to read again"
    failed = outbox_row(message(4, OutboxState.FAILED, last_error="550 no such user"), OutboxPolicy(), NOW)
    assert (failed.can_retry, failed.unbuilt, failed.reason) == (True, False, "550 no such user")
    assert failed.goes == "never, unless retried"
    unbuilt = outbox_row(
        message(5, OutboxState.FAILED, raw=b"", last_error="template error"), OutboxPolicy(), NOW
    )
    assert (unbuilt.can_retry, unbuilt.unbuilt, unbuilt.goes) == (False, True, "never: it was not built")


# --- sessions, tokens, throttle, password --------------------------------------------------


def keys(password: str = PASSWORD, secret: str = SECRET) -> SessionKeys:
    return SessionKeys(secret, PasswordHash.of(password))


def test_a_session_cookie_is_ours_until_it_expires() -> None:
    now = 1_800_000_000.0
    ours = keys()
    cookie = ours.new_session(now)
    session = ours.session_id(cookie, now)
    assert session is not None
    assert ours.session_id(cookie, now + SESSION_LIFETIME.total_seconds() - 1) == session
    assert ours.session_id(cookie, now + SESSION_LIFETIME.total_seconds()) is None
    # Another password or another secret: every earlier session ends.
    assert keys(password="another long password").session_id(cookie, now) is None
    assert keys(secret="another secret, also long enough").session_id(cookie, now) is None
    tampered = cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")
    assert ours.session_id(tampered, now) is None
    assert ours.session_id("", now) is None
    assert ours.session_id("not base64 !", now) is None
    assert ours.new_session(now) != cookie


def test_form_tokens_are_bound_to_their_session_and_purpose() -> None:
    ours = keys()
    token = ours.form_token("action", "session-1")
    assert ours.form_token_ok("action", "session-1", token)
    assert not ours.form_token_ok("action", "session-2", token)
    assert not ours.form_token_ok("login", "session-1", token)
    assert not ours.form_token_ok("action", "session-1", "")
    assert not ours.form_token_ok("action", "session-1", "ä" + token)
    # Whatever a client puts in the login form's cookie only makes a token for that value.
    assert ours.form_token_ok("login", "ä\udcff", ours.form_token("login", "ä\udcff"))


def test_a_flash_reads_back_only_when_we_wrote_it() -> None:
    ours = keys()
    assert ours.read_flash(ours.flash("alert 7 acknowledged")) == "alert 7 acknowledged"
    assert keys(secret="another secret, also long enough").read_flash(ours.flash("x")) == ""
    assert ours.read_flash("garbage") == ""


def test_the_login_throttle_counts_failures_per_client_in_a_minute() -> None:
    throttle = LoginThrottle(limit=5, window=60)
    for second in range(5):
        assert throttle.wait("10.0.0.1", 100.0 + second) == 0
        throttle.failed("10.0.0.1", 100.0 + second)
    assert throttle.wait("10.0.0.1", 110.0) == pytest.approx(50.0)
    assert throttle.wait("10.0.0.2", 110.0) == 0  # another client is not held up
    assert throttle.wait("10.0.0.1", 160.5) == 0  # the first failure has left the window
    throttle.succeeded("10.0.0.1")
    assert "10.0.0.1" not in throttle.failures


def test_the_password_is_kept_only_as_a_hash() -> None:
    kept = PasswordHash.of(PASSWORD)
    assert kept.matches(PASSWORD)
    assert not kept.matches(PASSWORD + " ")
    assert not kept.matches("")
    assert PASSWORD.encode() not in kept.digest
    assert PASSWORD not in repr(kept)
    assert PasswordHash.of(PASSWORD) == kept  # a reload of the same password changes nothing


# --- configuration -------------------------------------------------------------------------


def http_config(tmp_path: Path, extra: str = "") -> str:
    secret = tmp_path / "secret"
    secret.write_text(SECRET, encoding="utf-8")
    return (
        f'[http]\nlisten = "127.0.0.1:8080"\npublic_url = "https://track.example.com"\n'
        f'secret_file = "{secret}"\n{extra}'
    )


@pytest.fixture
def no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFIER_HTTP_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.mark.usefixtures("no_admin_env")
def test_the_admin_password_comes_from_its_file_the_environment_or_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "notifier.toml"
    none = parse_settings(http_config(tmp_path), config)
    assert none.http is not None
    assert none.http.admin_password is None

    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    from_file = parse_settings(http_config(tmp_path, f'admin_password_file = "{password_file}"\n'), config)
    assert from_file.http is not None
    assert from_file.http.admin_password is not None
    assert from_file.http.admin_password.matches(PASSWORD)
    assert PASSWORD not in repr(from_file)

    monkeypatch.setenv("NOTIFIER_HTTP_ADMIN_PASSWORD", "from the environment")
    from_env = parse_settings(http_config(tmp_path), config)
    assert from_env.http is not None
    assert from_env.http.admin_password is not None
    assert from_env.http.admin_password.matches("from the environment")
    monkeypatch.delenv("NOTIFIER_HTTP_ADMIN_PASSWORD")

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "http-admin-password").write_text("from the systemd credential", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    from_credential = parse_settings(http_config(tmp_path), config)
    assert from_credential.http is not None
    assert from_credential.http.admin_password is not None
    assert from_credential.http.admin_password.matches("from the systemd credential")


@pytest.mark.usefixtures("no_admin_env")
def test_a_bad_admin_password_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "notifier.toml"
    short = tmp_path / "short"
    short.write_text("hunter2", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"http\.admin_password_file: the operator board's password .* 7 characters"
    ):
        parse_settings(http_config(tmp_path, f'admin_password_file = "{short}"\n'), config)
    with pytest.raises(ConfigError, match=r"http\.admin_password_file: cannot read"):
        parse_settings(http_config(tmp_path, f'admin_password_file = "{tmp_path / "missing"}"\n'), config)
    with pytest.raises(
        ConfigError, match=r"http\.admin_password: passwords do not go in the config file"
    ) as caught:
        parse_settings(http_config(tmp_path, f'admin_password = "{PASSWORD}"\n'), config)
    assert PASSWORD not in str(caught.value)


# --- the store's board queries, on SQLite and PostgreSQL -----------------------------------


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


async def test_active_subscribers_and_the_suppression_list(store: Store) -> None:
    a = await store.watch(parse_number(NUMBER_A), now=NOW)
    b = await store.watch(parse_number(NUMBER_B), now=NOW)
    await store.set_subscribers(
        a.id, [("alice@example.com", "en", None), ("bob@example.com", "ja", None)], now=NOW
    )
    await store.set_subscribers(b.id, [("carol@example.com", "en", None)], now=NOW)
    await store.set_subscribers(b.id, [], now=NOW)  # carol's subscription stops
    assert await store.active_subscribers() == {a.id: ("alice@example.com", "bob@example.com")}
    assert await store.suppressions() == []
    await store.suppress("Bob@Example.com", now=NOW - dt.timedelta(days=1))
    await store.suppress("dave@example.com", now=NOW, reason="operator")
    assert await store.suppressions() == [
        ("dave@example.com", "operator", NOW),
        ("bob@example.com", "unsubscribed", NOW - dt.timedelta(days=1)),
    ]
    assert len(await store.suppressions(limit=1)) == 1


# --- the routes, over a real uvicorn and a real SQLite store -------------------------------


def board_settings(*, password: str | None = PASSWORD, public_url: str = "http://127.0.0.1") -> Settings:
    return Settings(
        http=HttpSettings(
            host="127.0.0.1",
            port=0,
            public_url=public_url,
            secret=SECRET,
            admin_password=PasswordHash.of(password) if password else None,
        )
    )


async def seed(store: Store, now: dt.datetime) -> dict[str, int]:
    """Two shipments (one polled ten days ago and stalled since), subscribers, a suppressed
    address, two open alerts and an outbox with a failed, an unbuilt and a pending message."""
    a = await store.watch(parse_number(NUMBER_A), now=now, label="Order 1001", tags=frozenset({"ems", "vip"}))
    polled = now - dt.timedelta(days=10)
    page = parse_page(CAPTURE)
    await store.record_poll(
        a.id,
        change=diff_detail(await store.history(a.id), page, NUMBER_A),
        item=page.item(NUMBER_A),
        now=polled,
        next_poll_at=now + dt.timedelta(hours=6),
        capture=PageCapture(body=CAPTURE, url="http://jp/test", layout=str(page.layout)),
    )
    b = await store.watch(
        parse_number(NUMBER_B),
        now=now,
        label="Order 1002",
        tags=frozenset({"small"}),
        first_poll_at=now + dt.timedelta(hours=2),
    )
    await store.set_subscribers(
        a.id, [("alice@example.com", "en", None), ("bob@example.com", "en", None)], now=now
    )
    await store.set_subscribers(b.id, [("carol@example.com", "ja", "Asia/Tokyo")], now=now)
    await store.suppress("bob@example.com", now=now - dt.timedelta(days=2))
    await store.raise_alert("poll_failed", "the page could not be read", now=now, subject=NUMBER_B)
    await store.raise_alert("smtp_login", "the SMTP server refused the login", now=now)

    def draft(key: str, recipient: str, number: str, error: str | None = None) -> OutboxDraft:
        return OutboxDraft(
            dedup_key=key,
            recipient=recipient,
            sender="shop@example.com",
            locale="en",
            rule="delivered",
            template="delivered",
            stage="delivered",
            number=number,
            subject=f"About {number}",
            message_id=make_message_id("example.com"),
            raw=b"" if error else b"Subject: x\r\n\r\nbody\r\n",
            error=error,
        )

    await store.enqueue([draft("failed", "alice@example.com", NUMBER_A)], now=now)
    (claimed,) = await store.claim_outbox(owner="test", now=now, limit=1, lease=dt.timedelta(minutes=5))
    await store.mark_failed(claimed.id, owner="test", error="550 mailbox unavailable", now=now)
    await store.enqueue([draft("unbuilt", "carol@example.com", NUMBER_B, error="template broke")], now=now)
    await store.enqueue([draft("pending", "carol@example.com", NUMBER_B)], now=now)
    alerts = {a.kind: a.id for a in await store.alerts()}
    outbox = {i.dedup_key: i.id for i in await store.outbox()}
    return {"shipment_a": a.id, "shipment_b": b.id, **alerts, **outbox}


class View:
    """What the board reads of a running daemon: its store and settings, its circuit breaker, the
    kill switch and a scheduler that ticks (the last tick is always now until `stopped_at`)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.breaker = CircuitBreaker()
        self.activity = Activity()
        self.notifier = SimpleNamespace(paused=False)
        self.last_good_cycle: dt.datetime | None = None
        self.stopped_at: dt.datetime | None = None

    @property
    def last_tick(self) -> dt.datetime:
        return self.stopped_at or dt.datetime.now(dt.UTC)


class Board:
    """A served board over a seeded store."""

    def __init__(self, url: str, store: Store, ids: dict[str, int], view: View) -> None:
        self.url = url
        self.store = store
        self.ids = ids
        self.view = view


@pytest.fixture
async def served(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Board]:
    path = tmp_path / "board.db"
    shutil.copyfile(sqlite_template, path)
    store = await Store.open(f"sqlite:///{path}")
    try:
        ids = await seed(store, dt.datetime.now(dt.UTC))
        view = View(store, board_settings())
        app = build_app(cast(DaemonView, view), extra_routes=admin_routes(cast(DaemonView, view)))
        async with serving(app) as url:
            yield Board(url, store, ids, view)
    finally:
        await store.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def login(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/admin/login")
    assert form.status_code == 200
    return await client.post("/admin/login", data={"csrf": csrf_of(form.text), "password": password})


@pytest.fixture
async def operator(served: Board) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await login(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/"
        yield client


async def act(client: httpx.AsyncClient, path: str, back: str = "", **fields: object) -> httpx.Response:
    page = await client.get("/admin/")
    response = await client.post(path, data={"csrf": csrf_of(page.text), "back": back, **fields})
    assert response.status_code == 303, response.text
    return response


async def test_without_a_password_there_is_no_board(served: Board) -> None:
    served.view.settings = board_settings(password=None)
    async with httpx.AsyncClient(base_url=served.url) as client:
        for method, path in [
            ("GET", "/admin/"),
            ("GET", "/admin/login"),
            ("POST", "/admin/login"),
            ("POST", "/admin/ack"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 404, path
            assert "Page not found" in response.text


async def test_the_board_needs_a_login(served: Board) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.get("/admin/")
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
        # A made-up session cookie is no session.
        client.cookies.set(SESSION_COOKIE, "AAAA", path="/admin")
        assert (await client.get("/admin/")).status_code == 303


async def test_login_sets_a_strict_http_only_session_cookie(served: Board) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await login(client)
    assert response.status_code == 303
    cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie
    assert "Secure" not in cookie  # public_url is http://127.0.0.1 here
    served.view.settings = board_settings(public_url="https://track.example.com")
    async with httpx.AsyncClient(base_url=served.url) as client:
        form = await client.get("/admin/login")
        assert "Secure" in form.headers["set-cookie"]
        # The login form's cookie is Secure and so is not sent back over this plain-http test
        # connection: the form is refused, as a copied form would be.
        refused = await client.post("/admin/login", data={"csrf": csrf_of(form.text), "password": PASSWORD})
        assert refused.status_code == 403


async def test_a_wrong_password_is_refused_logged_and_throttled(
    served: Board, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="notifier.web.admin"):
        async with httpx.AsyncClient(base_url=served.url) as client:
            for _ in range(5):
                wrong = await login(client, "not the password at all")
                assert wrong.status_code == 403
                assert "Wrong password" in wrong.text
                assert f"{SESSION_COOKIE}=" not in wrong.headers.get("set-cookie", "")
            # The sixth try in the minute waits, even with the right password.
            throttled = await login(client)
            assert throttled.status_code == 429
            assert int(throttled.headers["retry-after"]) > 0
            assert (await client.get("/admin/")).status_code == 303
    failed = [r for r in caplog.records if getattr(r, "action", None) == "admin_login_failed"]
    assert len(failed) == 5
    assert failed[0].__dict__["client"] == "127.0.0.1"
    assert any(getattr(r, "action", None) == "admin_login_throttled" for r in caplog.records)
    assert all(
        "not the password" not in r.getMessage() and PASSWORD not in r.getMessage() for r in caplog.records
    )


async def test_a_login_post_without_the_forms_token_is_refused(served: Board) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.post("/admin/login", data={"password": PASSWORD})
        assert response.status_code == 403
        assert f"{SESSION_COOKIE}=" not in response.headers.get("set-cookie", "")


async def test_the_board_shows_shipments_stalls_alerts_and_the_outbox(
    served: Board, operator: httpx.AsyncClient
) -> None:
    page = await operator.get("/admin/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    # Its own forms may name their origin; nothing goes to another site.
    assert page.headers["referrer-policy"] == "same-origin"
    assert "script-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    for expected in (
        NUMBER_A,
        NUMBER_B,
        "Order 1001",
        "carol@example.com",
        "the page could not be read",
        "550 mailbox unavailable",
        "never built: template broke",
        "goes now",
    ):
        assert expected in text, expected
    stalled = text.split('id="stalled"')[1].split("</section>")[0]
    assert NUMBER_A in stalled
    assert NUMBER_B not in stalled
    assert "<script" not in text
    assert ' style="' not in text


async def test_filters_narrow_the_list(served: Board, operator: httpx.AsyncClient) -> None:
    stage = await served.store.get(NUMBER_A)
    assert stage is not None

    def listed(page: str) -> set[str]:
        shipments = page.split('id="shipments"')[1].split("</section>")[0]
        return set(re.findall(r'id="shipment-(\w+)"', shipments))

    assert listed((await operator.get("/admin/")).text) == {NUMBER_A, NUMBER_B}
    assert listed((await operator.get("/admin/", params={"stage": "pending"})).text) == {NUMBER_B}
    assert listed((await operator.get("/admin/", params={"stage": str(stage.stage)})).text) == {NUMBER_A}
    assert listed((await operator.get("/admin/", params={"tag": "vip"})).text) == {NUMBER_A}
    assert listed((await operator.get("/admin/", params={"q": "carol"})).text) == {NUMBER_B}
    assert listed((await operator.get("/admin/", params={"stage": "pending", "tag": "vip"})).text) == set()


async def test_a_post_without_the_csrf_token_or_from_elsewhere_is_403(
    served: Board, operator: httpx.AsyncClient
) -> None:
    alert_id = served.ids["poll_failed"]
    token = csrf_of((await operator.get("/admin/")).text)
    assert (await operator.post("/admin/ack", data={"alert": alert_id})).status_code == 403
    assert (
        await operator.post("/admin/ack", data={"alert": alert_id, "csrf": token[:-1] + "x"})
    ).status_code == 403
    cross = await operator.post(
        "/admin/ack", data={"alert": alert_id, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    fetched = await operator.post(
        "/admin/ack", data={"alert": alert_id, "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetched.status_code == 403
    # Without a session, a token from someone else's session is worth nothing.
    async with httpx.AsyncClient(base_url=served.url) as stranger:
        assert (await stranger.post("/admin/ack", data={"alert": alert_id, "csrf": token})).status_code == 403
    assert alert_id in {a.id for a in await served.store.alerts()}
    # Origin: null is what a page under no-referrer sends: only with a same-origin fetch.
    null = await operator.post(
        "/admin/ack",
        data={"alert": alert_id, "csrf": token},
        headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    )
    assert null.status_code == 403
    assert (
        await operator.post("/admin/ack", data={"alert": alert_id, "csrf": token}, headers={"Origin": "null"})
    ).status_code == 403
    # The board's own origin is welcome.
    same = await operator.post(
        "/admin/ack",
        data={"alert": alert_id, "csrf": token},
        headers={"Origin": served.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 303
    assert alert_id not in {a.id for a in await served.store.alerts()}


async def test_acknowledge_closes_the_alert_and_says_so(
    served: Board, operator: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    alert_id = served.ids["poll_failed"]
    with caplog.at_level(logging.INFO, logger="notifier.web.admin"):
        response = await act(operator, "/admin/ack", back="stage=pending&q=x", alert=alert_id)
    assert response.headers["location"] == "/admin/?stage=pending&q=x"
    assert alert_id not in {a.id for a in await served.store.alerts()}
    assert served.ids["smtp_login"] in {a.id for a in await served.store.alerts()}
    page = await operator.get(response.headers["location"])
    assert f"alert {alert_id} acknowledged" in page.text
    assert FLASH_COOKIE in page.headers.get("set-cookie", "")  # read once, then cleared
    assert f"alert {alert_id} acknowledged" not in (await operator.get("/admin/")).text
    done = [r for r in caplog.records if getattr(r, "action", None) == "admin_ack"]
    assert done
    assert done[0].__dict__["client"] == "127.0.0.1"
    again = await act(operator, "/admin/ack", alert=alert_id)
    assert "was not open" in (await operator.get(again.headers["location"])).text


async def test_retry_queues_a_failed_message_again_but_not_an_unbuilt_one(
    served: Board, operator: httpx.AsyncClient
) -> None:
    failed, unbuilt = served.ids["failed"], served.ids["unbuilt"]
    await act(operator, "/admin/retry", message=failed)
    item = await served.store.outbox_item(failed)
    assert item is not None
    assert (item.state, item.attempts) == (OutboxState.PENDING, 0)
    response = await act(operator, "/admin/retry", message=unbuilt)
    assert "never built" in (await operator.get(response.headers["location"])).text
    still = await served.store.outbox_item(unbuilt)
    assert still is not None
    assert still.state is OutboxState.FAILED


async def test_unsubscribe_and_resubscribe_an_address(served: Board, operator: httpx.AsyncClient) -> None:
    await act(operator, "/admin/unsubscribe", address="carol@example.com", confirm="yes")
    assert await served.store.suppressed_among(["carol@example.com"]) == {"carol@example.com"}
    assert ("carol@example.com", "operator") in {(e, r) for e, r, _ in await served.store.suppressions()}
    await act(operator, "/admin/resubscribe", address="carol@example.com")
    assert await served.store.suppressed_among(["carol@example.com"]) == set()
    await act(operator, "/admin/resubscribe", address="bob@example.com")
    assert await served.store.suppressed_among(["bob@example.com"]) == set()
    bad = await act(operator, "/admin/unsubscribe", address="not an address")
    assert "not an email address" in (await operator.get(bad.headers["location"])).text


async def test_poll_now_makes_the_shipment_due_now(served: Board, operator: httpx.AsyncClient) -> None:
    before = await served.store.get(NUMBER_B)
    assert before is not None
    assert before.next_poll_at is not None
    assert before.next_poll_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await act(operator, "/admin/poll", number=NUMBER_B)
    after = await served.store.get(NUMBER_B)
    assert after is not None
    assert after.next_poll_at is not None
    assert after.next_poll_at <= dt.datetime.now(dt.UTC)
    other = await served.store.get(NUMBER_A)
    assert other is not None
    assert other.next_poll_at is not None
    assert other.next_poll_at > dt.datetime.now(dt.UTC)
    response = await act(operator, "/admin/poll", number="XX000000000JP")
    assert "is not watched" in (await operator.get(response.headers["location"])).text


async def test_logout_ends_the_session(served: Board, operator: httpx.AsyncClient) -> None:
    cookie = operator.cookies.get(SESSION_COOKIE)
    assert cookie
    response = await act(operator, "/admin/logout")
    assert response.headers["location"] == "/admin/login"
    async with httpx.AsyncClient(base_url=served.url) as copy:
        copy.cookies.set(SESSION_COOKIE, cookie, path="/admin")
        assert (await copy.get("/admin/")).status_code == 303


@pytest.mark.usefixtures("no_admin_env")
def test_the_operator_digest_links_the_board_only_when_there_is_one(tmp_path: Path) -> None:
    from notifier.pipeline.wiring import mail_settings

    config = tmp_path / "notifier.toml"
    assert mail_settings(parse_settings(http_config(tmp_path), config)).board_url is None
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    board = parse_settings(http_config(tmp_path, f'admin_password_file = "{password_file}"\n'), config)
    assert board.http is not None
    assert mail_settings(board).board_url == f"{board.http.public_url}/admin/"
