"""The operator board says what needs attention: health banners on every page, rows ordered by
need, no "Poll now" on finished parcels, a page per parcel with its events and every message about
it, and a confirmation before an address is unsubscribed from all mail."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest

from notifier.core.diff import diff_detail
from notifier.core.mime import make_message_id
from notifier.core.model import EventTime, TrackingEvent
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.core.rules import DEFAULT_STALLS
from notifier.core.sending import OutboxPolicy, SendingPause
from notifier.core.stages import Stage
from notifier.core.views import OutboxDraft, OutboxState
from notifier.store import Store
from notifier.testing.simulator import Simulator, builtin_journeys
from notifier.web.admin import (
    NEED_ACTION,
    NEED_ALERTS,
    NEED_FINISHED,
    NEED_MOVING,
    NEED_STALLED,
    SHOWN,
    BoardSnapshot,
    Filters,
    banners,
    build_board,
    build_shipment_page,
    by_need,
    event_row,
    need,
    text_part,
)
from notifier.web.ops import HealthSnapshot, health, health_snapshot
from notifier.web.state import DaemonView
from tests.test_web_admin import (
    NOW,
    NUMBER_A,
    NUMBER_B,
    Board,
    act,
    alert,
    csrf_of,
    message,
    operator,
    served,
    shipment,
)

__all__ = ["operator", "served"]  # fixtures, used by name

# The simulator's EMS journey, delivered at its last scan: the number from the report that
# broke mid-number at 1280 px.
DELIVERED = "EJ202603021JP"


# --- rows ordered by need (pure) -------------------------------------------------------------


def test_each_shipment_has_its_place_in_the_order() -> None:
    assert need(shipment(NUMBER_A, stage=Stage.DELIVERED, open_alerts=1), stalled=False) == NEED_ALERTS
    assert need(shipment(NUMBER_A, stage=Stage.IN_TRANSIT), stalled=True) == NEED_STALLED
    for stage in (
        Stage.ATTEMPTED_DELIVERY,
        Stage.RETENTION,
        Stage.READY_FOR_PICKUP,
        Stage.INVESTIGATION,
        Stage.CUSTOMS_PRESENTED,
        Stage.RETURNING,
        Stage.UNKNOWN,
    ):
        assert need(shipment(NUMBER_A, stage=stage), stalled=False) == NEED_ACTION, stage
    for stage in (Stage.IN_TRANSIT, Stage.OUT_FOR_DELIVERY, Stage.CUSTOMS_CLEARED, Stage.PENDING):
        assert need(shipment(NUMBER_A, stage=stage), stalled=False) == NEED_MOVING, stage
    for stage in (Stage.DELIVERED, Stage.RETURNED):
        assert need(shipment(NUMBER_A, stage=stage), stalled=False) == NEED_FINISHED, stage
    # No longer watched is finished too, whatever its stage; stalled or not.
    assert need(shipment(NUMBER_A, stage=Stage.IN_TRANSIT, active=False), stalled=True) == NEED_FINISHED


def test_rows_are_ordered_by_need_not_by_number() -> None:
    day = dt.timedelta(days=1)
    views = [
        shipment("A1", stage=Stage.DELIVERED, last_changed_at=NOW - 3 * day),
        shipment("A2", stage=Stage.DELIVERED, last_changed_at=NOW - day),
        shipment("B1", stage=Stage.IN_TRANSIT, last_changed_at=NOW - day),
        shipment("C1", stage=Stage.RETENTION, last_changed_at=NOW - day),
        shipment("D1", stage=Stage.RETURNED, last_changed_at=NOW - day),
        # Stalled: customs_cleared quiet for longer than its 7 days.
        shipment("E1", stage=Stage.CUSTOMS_CLEARED, last_changed_at=NOW - 9 * day),
        shipment("F1", stage=Stage.IN_TRANSIT, last_changed_at=NOW - day, open_alerts=2),
        shipment("G1", stage=Stage.ATTEMPTED_DELIVERY, last_changed_at=NOW - 2 * day),
    ]
    ordered = [view.number for view in by_need(views, DEFAULT_STALLS, NOW)]
    # Alerts, stalled, action stages (longest quiet first), moving, then finished (latest first).
    assert ordered == ["F1", "E1", "G1", "C1", "B1", "A2", "D1", "A1"]


def test_the_cut_never_hides_what_needs_attention() -> None:
    quiet = [
        shipment(f"EJ{i:09d}JP", id=i, stage=Stage.IN_TRANSIT, last_changed_at=NOW - dt.timedelta(hours=1))
        for i in range(SHOWN + 10)
    ]
    alerted = shipment("ZZ999999999JP", id=9999, stage=Stage.IN_TRANSIT, open_alerts=1)
    board = build_board(
        BoardSnapshot(
            shipments=[*quiet, alerted],
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
    assert len(board.shipments) == SHOWN
    assert board.shipments[0].number == "ZZ999999999JP"


def test_finished_rows_say_so() -> None:
    def finished(**values: object) -> bool:
        snapshot = BoardSnapshot(
            shipments=[shipment(NUMBER_A, **values)],
            subscribers={},
            suppressed=frozenset(),
            alerts=[],
            outbox=[],
            depth={},
            suppressions=[],
        )
        row = build_board(snapshot, Filters(), now=NOW, policy=OutboxPolicy(), stalls=DEFAULT_STALLS)
        return row.shipments[0].finished

    assert finished(stage=Stage.DELIVERED)
    assert finished(stage=Stage.RETURNED)
    assert finished(stage=Stage.IN_TRANSIT, active=False)
    assert not finished(stage=Stage.IN_TRANSIT)
    assert not finished(stage=Stage.RETURNING)


# --- banners (pure): one per /healthz problem, and the open circuit ---------------------------


def health_problems(**values: object) -> list[dict[str, str]]:
    fields: dict[str, object] = {
        "now": NOW,
        "poll_tick": 5.0,
        "last_tick": NOW - dt.timedelta(seconds=2),
        "last_good_cycle": NOW - dt.timedelta(seconds=2),
        "cycle_started_at": None,
        "cycle_lease": dt.timedelta(minutes=10),
        "database_error": None,
        "customer_mail_paused": False,
        "sending_pause": None,
    }
    fields.update(values)
    _, body = health(HealthSnapshot(**fields))  # type: ignore[arg-type]
    return list(body.get("problems", []))


def test_no_banner_when_all_is_well() -> None:
    assert banners(health_problems(), circuit_until=None, now=NOW) == ()
    # A circuit that has closed again is no banner either.
    assert banners(health_problems(), circuit_until=NOW - dt.timedelta(seconds=1), now=NOW) == ()


def test_a_banner_for_every_condition_healthz_reports() -> None:
    pause = SendingPause(
        kind="auth",
        reason="535 authentication failed",
        since=NOW - dt.timedelta(minutes=20),
        until=NOW + dt.timedelta(minutes=10),
        failures=3,
        destination=None,
    )
    problems = health_problems(
        last_tick=NOW - dt.timedelta(minutes=5),
        database_error="OperationalError: disk I/O error",
        customer_mail_paused=True,
        sending_pause=pause,
    )
    assert [p["check"] for p in problems] == ["scheduler", "database", "customer_mail", "smtp"]
    shown = banners(problems, circuit_until=NOW + dt.timedelta(minutes=4), now=NOW)
    by_check = {b.check: b for b in shown}
    assert list(by_check) == ["scheduler", "database", "customer_mail", "smtp", "circuit"]
    # Each in plain words: what it is, what customers get, what to do, and /healthz's reason.
    assert "kill switch" in by_check["customer_mail"].title
    assert "No customer gets any email" in by_check["customer_mail"].customers
    assert by_check["smtp"].detail == pause.summary()
    assert "535 authentication failed" in by_check["smtp"].detail
    assert "stale tick" in by_check["scheduler"].detail
    assert "disk I/O error" in by_check["database"].detail
    assert "2026-12-01 12:04Z (in 4m)" in by_check["circuit"].customers
    for banner in shown:
        assert banner.title, banner
        assert banner.customers, banner
        assert banner.todo, banner


# --- one parcel's page (pure) ----------------------------------------------------------------


def test_an_event_is_shown_as_japan_post_printed_it() -> None:
    event = TrackingEvent(
        when=EventTime(date=dt.date(2026, 3, 2), time=dt.time(14, 5), zone="Asia/Tokyo"),
        status="Posting/Collection",
        stage=Stage.ACCEPTED,
        office="SHINJUKU",
        postal_code="160-8799",
    )
    row = event_row(event)
    assert (row.when, row.status, row.office) == (
        "2026-03-02 14:05 (Asia/Tokyo)",
        "Posting/Collection",
        "SHINJUKU 160-8799",
    )
    abroad = event_row(
        TrackingEvent(
            when=EventTime(date=dt.date(2026, 3, 9)), status="Final delivery", stage=Stage.DELIVERED
        )
    )
    assert (abroad.when, abroad.office) == ("2026-03-09", "")


def test_the_text_part_of_a_message() -> None:
    raw = (
        b"Subject: Delivered\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour parcel <b>arrived</b>.\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML</p>\r\n--b--\r\n"
    )
    assert text_part(raw).strip() == "Your parcel <b>arrived</b>."
    assert text_part(b"") == ""


def test_the_parcel_page_lists_its_messages_and_only_its_alerts() -> None:
    view = shipment(NUMBER_B, stage=Stage.RETENTION, open_alerts=1)
    page = build_shipment_page(
        view,
        history=[],
        subscribers=["carol@example.com"],
        suppressed=frozenset(),
        messages=[
            message(5, OutboxState.SENT, number=NUMBER_B, sent_at=NOW - dt.timedelta(minutes=30)),
            message(6, OutboxState.FAILED, number=NUMBER_B, raw=b"", last_error="template broke"),
        ],
        alerts=[alert(7, NUMBER_B, "the page could not be read"), alert(8, "smtp", "login refused")],
        stalls=DEFAULT_STALLS,
        now=NOW,
    )
    assert [m.id for m in page.messages] == [5, 6]
    assert page.messages[0].sent == "2026-12-01 11:30Z (30m ago)"
    assert (page.messages[1].body, page.messages[1].can_retry) == ("", False)
    assert [a.id for a in page.alerts] == [7]


# --- the store's read, on SQLite and PostgreSQL ------------------------------------------------


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


def draft(key: str, number: str, recipient: str = "alice@example.com", body: str = "body") -> OutboxDraft:
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
        raw=f"Subject: About {number}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode(),
    )


async def test_every_message_about_one_number_newest_first(store: Store) -> None:
    await store.enqueue([draft("a1", NUMBER_A), draft("b1", NUMBER_B)], now=NOW)
    await store.enqueue([draft("a2", NUMBER_A, recipient="bob@example.com")], now=NOW)
    (claimed,) = await store.claim_outbox(owner="t", now=NOW, limit=1, lease=dt.timedelta(minutes=5))
    await store.mark_sent(claimed.id, owner="t", now=NOW, reply="250 ok")
    found = await store.outbox_for(NUMBER_A)
    assert [(i.dedup_key, i.state) for i in found] == [("a2", OutboxState.PENDING), ("a1", OutboxState.SENT)]
    assert [i.dedup_key for i in await store.outbox_for(NUMBER_B)] == ["b1"]
    assert await store.outbox_for("XX000000000JP") == []
    assert len(await store.outbox_for(NUMBER_A, limit=1)) == 1


# --- served: banners, order, Poll now, the parcel page, the confirmation ----------------------


async def watch_delivered(store: Store) -> int:
    """The simulator's EMS journey, polled to its delivery."""
    simulator = Simulator(builtin_journeys())
    simulator.reveal(DELIVERED, 99)
    page = parse_page(simulator.render_detail(DELIVERED, "en").encode())
    view = await store.watch(parse_number(DELIVERED), now=dt.datetime.now(dt.UTC), label="Order 1003")
    await store.record_poll(
        view.id,
        change=diff_detail((), page, DELIVERED),
        item=page.item(DELIVERED),
        now=dt.datetime.now(dt.UTC),
        next_poll_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )
    return view.id


def section(page: str, name: str) -> str:
    return page.split(f'id="{name}"')[1].split("</section>")[0]


async def test_banners_top_every_board_page_for_what_healthz_reports(
    served: Board, operator: httpx.AsyncClient
) -> None:
    for path in ("/admin/", f"/admin/shipments/{NUMBER_A}"):
        assert 'id="banners"' not in (await operator.get(path)).text, path
    served.view.notifier.paused = True
    served.view.stopped_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    for _ in range(served.view.breaker.threshold):
        served.view.breaker.failure(dt.datetime.now(dt.UTC))
    # What /healthz decides over this same daemon view.
    _, body = health(await health_snapshot(cast(DaemonView, served.view), dt.datetime.now(dt.UTC)))
    checks = [p["check"] for p in body["problems"]]
    assert checks == ["scheduler", "customer_mail"]
    for path in ("/admin/", f"/admin/shipments/{NUMBER_A}"):
        page = (await operator.get(path)).text
        top = page.split("<main")[0]
        for check in (*checks, "circuit"):
            assert f'id="banner-{check}"' in top, (path, check)
        assert "Customer mail is paused (kill switch)" in top
        assert "No customer gets any email" in top
        assert "stale tick: the last poll tick was" in top
    # The confirmation page is a board page too.
    board = await operator.get("/admin/")
    confirm = await operator.post(
        "/admin/unsubscribe", data={"csrf": csrf_of(board.text), "address": "carol@example.com"}
    )
    assert 'id="banner-customer_mail"' in confirm.text


async def test_the_board_lists_by_need_and_offers_no_poll_on_finished_parcels(
    served: Board, operator: httpx.AsyncClient
) -> None:
    await watch_delivered(served.store)
    shipments = section((await operator.get("/admin/")).text, "shipments")
    order = re.findall(r'id="shipment-(\w+)"', shipments)
    # A is stalled, B has an open alert, the delivered one goes last.
    assert order == [NUMBER_B, NUMBER_A, DELIVERED]
    rows = dict(zip(order, shipments.split('id="shipment-')[1:], strict=True))
    assert 'action="/admin/poll"' in rows[NUMBER_A]
    assert 'action="/admin/poll"' in rows[NUMBER_B]
    assert 'action="/admin/poll"' not in rows[DELIVERED]
    # Every row links its parcel's page.
    for number in order:
        assert f'href="/admin/shipments/{number}"' in rows[number]


async def test_a_page_per_parcel(served: Board, operator: httpx.AsyncClient) -> None:
    await served.store.enqueue(
        [draft("script", NUMBER_B, recipient="carol@example.com", body="Hello <script>x()</script> & bye")],
        now=dt.datetime.now(dt.UTC),
    )
    page = await operator.get(f"/admin/shipments/{NUMBER_B}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert "<script>x()" not in text
    assert "Hello &lt;script&gt;x()&lt;/script&gt; &amp; bye" in text
    assert '<span class="stage" id="stage">pending</span>' in text
    assert "carol@example.com" in section(text, "subscribers")
    messages = section(text, "messages")
    # Every message about it, whatever its state: the pending one, the unbuilt failed one.
    ids = {item.dedup_key: item.id for item in await served.store.outbox()}
    for key in ("script", "pending", "unbuilt"):
        assert f'id="message-{ids[key]}"' in messages, key
    assert f'id="message-{served.ids["failed"]}"' not in messages  # that one is about A
    assert "never built: nothing to show" in messages
    assert "template broke" in messages
    assert f'id="alert-{served.ids["poll_failed"]}"' in section(text, "alerts")
    assert f'id="alert-{served.ids["smtp_login"]}"' not in text
    # The delivery window has its place: a pending parcel has none, and the page says why.
    window = re.search(r'<dd id="window"[^>]*>([^<]*)</dd>', text)
    assert window
    assert window.group(1).startswith(("withheld: ", "none: "))
    assert not re.search(r"\d", window.group(1))

    events = section((await operator.get(f"/admin/shipments/{NUMBER_A}")).text, "events")
    history = await served.store.history(served.ids["shipment_a"])
    assert history
    for event in history:
        assert event.status in events
        assert event.when.iso_local().replace("T", " ") in events
    assert "next-poll" in (await operator.get(f"/admin/shipments/{NUMBER_A}")).text

    # A delivered parcel's page has no Poll now; nor has one no longer watched.
    await watch_delivered(served.store)
    assert 'action="/admin/poll"' not in (await operator.get(f"/admin/shipments/{DELIVERED}")).text
    assert 'action="/admin/poll"' in (await operator.get(f"/admin/shipments/{NUMBER_B}")).text
    await served.store.unwatch(NUMBER_B)
    unwatched = (await operator.get(f"/admin/shipments/{NUMBER_B}")).text
    assert 'action="/admin/poll"' not in unwatched
    assert "not watched any more" in unwatched

    assert (await operator.get("/admin/shipments/XX000000000JP")).status_code == 404
    async with httpx.AsyncClient(base_url=served.url) as stranger:
        response = await stranger.get(f"/admin/shipments/{NUMBER_A}")
        assert (response.status_code, response.headers["location"]) == (303, "/admin/login")


async def test_an_action_on_the_parcel_page_returns_to_it(served: Board, operator: httpx.AsyncClient) -> None:
    page = await operator.get(f"/admin/shipments/{NUMBER_B}")
    response = await operator.post(
        "/admin/poll", data={"csrf": csrf_of(page.text), "page": NUMBER_B, "number": NUMBER_B}
    )
    assert (response.status_code, response.headers["location"]) == (303, f"/admin/shipments/{NUMBER_B}")
    assert f"{NUMBER_B} due now" in (await operator.get(response.headers["location"])).text
    # Only a number: anything else returns to the board.
    odd = await operator.post(
        "/admin/poll", data={"csrf": csrf_of(page.text), "page": "//evil.example", "number": NUMBER_B}
    )
    assert odd.headers["location"] == "/admin/"


async def test_unsubscribing_from_all_mail_asks_first(served: Board, operator: httpx.AsyncClient) -> None:
    board = await operator.get("/admin/")
    token = csrf_of(board.text)
    asked = await operator.post(
        "/admin/unsubscribe", data={"csrf": token, "back": "tag=vip", "address": "carol@example.com"}
    )
    assert asked.status_code == 200
    assert await served.store.suppressed_among(["carol@example.com"]) == set()
    assert "Unsubscribe carol@example.com from all mail?" in asked.text
    assert NUMBER_B in asked.text  # the parcel it follows
    assert re.search(
        r'<input type="checkbox" name="confirm" value="yes" id="confirm-all" required>', asked.text
    )
    assert 'href="/admin/?tag=vip"' in asked.text  # Cancel goes back where it came from
    # The confirmation is checked like any action: no token, no unsubscribing.
    refused = await operator.post(
        "/admin/unsubscribe", data={"address": "carol@example.com", "confirm": "yes"}
    )
    assert refused.status_code == 403
    assert await served.store.suppressed_among(["carol@example.com"]) == set()
    done = await operator.post(
        "/admin/unsubscribe",
        data={
            "csrf": csrf_of(asked.text),
            "back": "tag=vip",
            "address": "carol@example.com",
            "confirm": "yes",
        },
    )
    assert (done.status_code, done.headers["location"]) == (303, "/admin/?tag=vip")
    assert await served.store.suppressed_among(["carol@example.com"]) == {"carol@example.com"}
    # Resubscribing needs no confirmation: it undoes.
    await act(operator, "/admin/resubscribe", address="carol@example.com")
    assert await served.store.suppressed_among(["carol@example.com"]) == set()
