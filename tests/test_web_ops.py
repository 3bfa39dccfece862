"""/healthz and /metrics: a real Daemon object (configured, started up, polling the simulator) served
by uvicorn on loopback, over real SQLite files and PostgreSQL, with real faults."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.types import ASGIApp

from notifier.config import load_settings
from notifier.core.sending import SendingPause
from notifier.daemon.service import Daemon
from notifier.pipeline.cycle import CircuitBreaker, CycleStats
from notifier.store import Store
from notifier.store.orm import OutboxMessage, Shipment
from notifier.testing.simulator import Fault, Simulator, SimulatorServer
from notifier.web.ops import (
    OVERDUE_AFTER,
    HealthSnapshot,
    health,
    ops_routes,
    stale_after,
)
from tests.databases import fresh_postgres
from tests.test_daemon import config_text
from tests.web_server import TcpProxy, closed_port, wait_until

Serve = Callable[[ASGIApp], contextlib.AbstractAsyncContextManager[str]]
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def snapshot(**changes: object) -> HealthSnapshot:
    values: dict[str, object] = {
        "now": NOW,
        "poll_tick": 5.0,
        "last_tick": NOW - dt.timedelta(seconds=3),
        "last_good_cycle": NOW - dt.timedelta(seconds=3),
        "cycle_started_at": None,
        "cycle_lease": dt.timedelta(minutes=10),
        "database_error": None,
        "customer_mail_paused": False,
        "sending_pause": None,
    }
    values.update(changes)
    return HealthSnapshot(**values)  # type: ignore[arg-type]


# --- the decision, pure ------------------------------------------------------------------------


def test_healthy_is_200_with_the_times() -> None:
    status, body = health(snapshot())
    assert status == 200
    assert body["status"] == "ok"
    assert body["last_tick"] == "2026-12-01T11:59:57Z"
    assert "reasons" not in body


def test_the_tick_goes_stale_after_five_ticks_and_no_less_than_thirty_seconds() -> None:
    assert stale_after(5.0) == dt.timedelta(seconds=30)
    assert stale_after(0.3) == dt.timedelta(seconds=30)
    assert stale_after(60.0) == dt.timedelta(minutes=5)
    assert health(snapshot(last_tick=NOW - dt.timedelta(seconds=30)))[0] == 200
    status, body = health(snapshot(last_tick=NOW - dt.timedelta(seconds=31)))
    assert status == 503
    assert body["problems"][0]["check"] == "scheduler"
    assert "31 s ago" in body["reasons"][0]


def test_a_long_cycle_within_its_lease_is_no_stale_tick_but_one_past_it_is() -> None:
    old = NOW - dt.timedelta(minutes=8)
    assert health(snapshot(last_tick=old, cycle_started_at=old))[0] == 200
    status, _ = health(snapshot(last_tick=old, cycle_started_at=old, cycle_lease=dt.timedelta(minutes=5)))
    assert status == 503


def test_every_reason_at_once_is_listed() -> None:
    pause = SendingPause(
        kind="unreachable",
        reason="connection refused",
        since=NOW - dt.timedelta(minutes=3),
        until=NOW + dt.timedelta(minutes=1),
        failures=3,
        destination=None,
    )
    status, body = health(
        snapshot(
            last_tick=None,
            database_error="OSError: connection refused",
            customer_mail_paused=True,
            sending_pause=pause,
        )
    )
    assert status == 503
    assert body["status"] == "unhealthy"
    assert [p["check"] for p in body["problems"]] == ["scheduler", "database", "customer_mail", "smtp"]
    assert "connection refused" in body["reasons"][1]
    assert "mail sending paused (unreachable" in body["reasons"][3]


# --- a real daemon, served -----------------------------------------------------------------------


def write_config(tmp_path: Path, database_url: str, jp: str, smtp_port: int, extra: str = "") -> Path:
    config = tmp_path / "notifier.toml"
    config.write_text(
        config_text(database_url, jp, smtp_port, extra=extra, japanpost='circuit_pause = "1s"'),
        encoding="utf-8",
    )
    return config


@contextlib.asynccontextmanager
async def started_daemon(config: Path) -> AsyncIterator[Daemon]:
    """A real Daemon, configured and started up as `run` does, without its scheduler: tests
    run its jobs themselves."""
    daemon = Daemon(str(config))
    daemon.settings = load_settings(str(config))
    daemon.store = await Store.open(daemon.settings.database.url)
    try:
        assert await daemon._start_up()
        yield daemon
    finally:
        await daemon.client.aclose()
        await daemon.store.close()


def parse(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def by_label(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[str, float]:
    return {labels[0][1]: value for (n, labels), value in samples.items() if n == name and labels}


async def test_metrics_report_what_the_store_holds(
    db_url: str, tmp_path: Path, sim_server: SimulatorServer, simulator: Simulator, asgi_server: Serve
) -> None:
    simulator.advance(steps=3)
    config = write_config(tmp_path, db_url, sim_server.base_url, closed_port())
    async with started_daemon(config) as daemon:
        await daemon._poll()
        simulator.advance(steps=2)
        for _ in range(3):
            await daemon._poll()
        await daemon._send()  # SMTP refuses: the messages stay queued, the pause begins
        engine = daemon.store.engine
        now = utcnow()
        async with engine.begin() as connection:
            ids = list((await connection.execute(select(Shipment.id).order_by(Shipment.id))).scalars())
            # Known due times: one overdue, one due, the rest in the future.
            await connection.execute(update(Shipment).values(next_poll_at=now + dt.timedelta(hours=1)))
            for shipment_id, due in zip(
                ids,
                [now - OVERDUE_AFTER - dt.timedelta(minutes=5), now - dt.timedelta(minutes=1)],
                strict=False,
            ):
                await connection.execute(
                    update(Shipment).where(Shipment.id == shipment_id).values(next_poll_at=due)
                )
            by_stage = select(Shipment.stage, func.count()).where(Shipment.active.is_(True))
            stages = dict(list(await connection.execute(by_stage.group_by(Shipment.stage))))
            by_state = select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            states = dict(list(await connection.execute(by_state)))
            oldest = (
                await connection.execute(
                    select(func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.state.in_(["pending", "held", "sending"])
                    )
                )
            ).scalar_one()
        assert states.get("pending", 0) > 0, states  # there is something to measure
        async with asgi_server(Starlette(routes=ops_routes(daemon))) as base, httpx.AsyncClient() as client:
            response = await client.get(f"{base}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse(response.text)
        shipments = by_label(samples, "notifier_shipments")
        assert {stage: int(count) for stage, count in shipments.items() if count} == stages
        assert set(shipments) >= {"unknown", "delivered", "in_transit"}  # zeros are reported too
        outbox = by_label(samples, "notifier_outbox_messages")
        assert {state: int(count) for state, count in outbox.items() if count} == states
        assert samples[("notifier_shipments_due", ())] == 2
        assert samples[("notifier_shipments_overdue", ())] == 1
        age = (now - oldest).total_seconds()
        assert abs(samples[("notifier_outbox_oldest_waiting_age_seconds", ())] - age) < 30
        # What the daemon did, against what the simulator saw and the cycles' own counts.
        requests = by_label(samples, "notifier_japanpost_requests_total")
        assert sum(requests.values()) == len(simulator.requests)
        assert by_label(samples, "notifier_poll_cycles_total") == {"good": 4, "failing": 0, "error": 0}
        polls = by_label(samples, "notifier_polls_total")
        assert polls["changed"] >= 3
        assert polls["failed"] == polls["unrecognized"] == 0
        assert samples[("notifier_pages_unrecognized_total", ())] == 0
        assert samples[("notifier_smtp_sending_paused", ())] == 1
        assert samples[("notifier_japanpost_circuit_open", ())] == 0
        assert samples[("notifier_database_up", ())] == 1
        assert daemon.last_good_cycle is not None
        assert (
            samples[("notifier_last_good_cycle_timestamp_seconds", ())] == daemon.last_good_cycle.timestamp()
        )
        assert by_label(samples, "notifier_emails_total")["sent"] == 0


async def test_an_open_circuit_and_an_unrecognised_page_show_in_the_metrics(
    tmp_path: Path,
    sqlite_template: Path,
    sim_server: SimulatorServer,
    simulator: Simulator,
    asgi_server: Serve,
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    config = write_config(tmp_path, f"sqlite:///{path}", sim_server.base_url, closed_port())
    async with started_daemon(config) as daemon:
        simulator.set_fault(Fault.CHANGED_LAYOUT)
        await daemon._poll()
        simulator.set_fault(Fault.SERVER_ERROR)
        daemon.breaker.threshold = 1
        await daemon.store.mark_due(None, now=utcnow())
        await daemon._poll()
        async with asgi_server(Starlette(routes=ops_routes(daemon))) as base, httpx.AsyncClient() as client:
            samples = parse((await client.get(f"{base}/metrics")).text)
            health_body = (await client.get(f"{base}/healthz")).json()
    assert samples[("notifier_pages_unrecognized_total", ())] == 4
    assert samples[("notifier_customer_mail_paused", ())] == 1
    assert samples[("notifier_japanpost_circuit_open", ())] == 1
    assert by_label(samples, "notifier_poll_cycles_total") == {"good": 0, "failing": 2, "error": 0}
    assert samples[("notifier_alerts_open", ())] >= 1
    assert [p["check"] for p in health_body["problems"]] == ["customer_mail"]


async def test_healthz_follows_a_stale_tick_over_sqlite(
    tmp_path: Path, sqlite_template: Path, sim_server: SimulatorServer, asgi_server: Serve
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    config = write_config(tmp_path, f"sqlite:///{path}", sim_server.base_url, closed_port())
    async with (
        started_daemon(config) as daemon,
        asgi_server(Starlette(routes=ops_routes(daemon))) as base,
        httpx.AsyncClient() as client,
    ):
        starting = await client.get(f"{base}/healthz")
        assert starting.status_code == 503  # no tick yet
        assert "no poll tick yet" in starting.json()["reasons"][0]
        await daemon._poll()
        ok = await client.get(f"{base}/healthz")
        assert ok.status_code == 200, ok.json()
        daemon.last_tick = utcnow() - dt.timedelta(minutes=5)
        stale = await client.get(f"{base}/healthz")
        assert stale.status_code == 503
        assert [p["check"] for p in stale.json()["problems"]] == ["scheduler"]
        await daemon._poll()
        assert (await client.get(f"{base}/healthz")).status_code == 200


@pytest.fixture
def postgres_database(postgres_template: str) -> Iterator[str]:
    yield from fresh_postgres(postgres_template)


@pytest.mark.postgres
async def test_healthz_turns_503_when_postgresql_stops_answering_and_200_when_it_is_back(
    tmp_path: Path, postgres_database: str, sim_server: SimulatorServer, asgi_server: Serve
) -> None:
    target = make_url(postgres_database)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    through = target.set(port=proxy.port).render_as_string(hide_password=False)
    config = write_config(tmp_path, through, sim_server.base_url, closed_port())
    try:
        async with (
            started_daemon(config) as daemon,
            asgi_server(Starlette(routes=ops_routes(daemon))) as base,
            httpx.AsyncClient() as client,
        ):
            await daemon._poll()
            assert (await client.get(f"{base}/healthz")).status_code == 200
            await proxy.cut()
            daemon.last_tick = utcnow() - dt.timedelta(minutes=5)  # nothing polls while it is down
            response = await client.get(f"{base}/healthz")
            assert response.status_code == 503
            assert [p["check"] for p in response.json()["problems"]] == ["scheduler", "database"]
            metrics = parse((await client.get(f"{base}/metrics")).text)
            assert metrics[("notifier_database_up", ())] == 0
            assert ("notifier_shipments_due", ()) not in metrics
            await proxy.restore()
            # The pool's dead connections are found out and replaced: allow a few tries.
            await wait_until(lambda: _database_answers(client, base), 20, "the database check to pass again")
            await daemon._poll()
            healthy = await client.get(f"{base}/healthz")
            assert healthy.status_code == 200, healthy.json()
            assert healthy.json()["status"] == "ok"
    finally:
        await proxy.close()


async def _database_answers(client: httpx.AsyncClient, base: str) -> bool:
    body = (await client.get(f"{base}/healthz")).json()
    return all(p["check"] != "database" for p in body.get("problems", []))


def test_failing_cycles_are_those_of_an_open_circuit_an_unreadable_page_or_an_error() -> None:
    from notifier.pipeline.activity import cycle_failing

    closed = CircuitBreaker()
    assert not cycle_failing(CycleStats(claimed=3, failed=1), closed)
    assert cycle_failing(None, closed)
    assert cycle_failing(CycleStats(unrecognized=1), closed)
    assert cycle_failing(CycleStats(errors=1), closed)
    opened = CircuitBreaker(open_until=NOW)
    assert cycle_failing(CycleStats(), opened)
