"""Japan Post client against the simulator over real sockets: layouts, faults, pacing."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from notifier.core.model import Layout, Locale, Outcome
from notifier.errors import PermanentFetchError, TransientFetchError
from notifier.net.japanpost import ClientSettings, JapanPostClient, parse_retry_after
from notifier.testing.simulator import Fault, Simulator, SimulatorServer, builtin_journeys

FAST = {"request_interval": 0.0, "backoff_base": 0.05, "backoff_cap": 0.2, "deadline": 5.0}


def client_for(server: SimulatorServer, **overrides: float | int) -> JapanPostClient:
    options: dict[str, float | int] = {**FAST, **overrides}
    return JapanPostClient(ClientSettings(base_url=server.base_url, **options), rng=random.Random(7))  # type: ignore[arg-type]


def found_numbers(simulator: Simulator) -> list[str]:
    return [j.number for j in builtin_journeys() if simulator.journey(j.number).revealed > 0]


async def test_detail_page_shows_revealed_history(simulator: Simulator, sim_server: SimulatorServer) -> None:
    number = found_numbers(simulator)[0]
    simulator.advance(number, steps=2)
    revealed = simulator.journey(number).revealed
    async with client_for(sim_server) as client:
        fetched = await client.fetch_detail(number, Locale.EN)
        ja = await client.fetch_detail(number, Locale.JA)
    assert fetched.status == 200
    assert simulator.requests[-1].user_agent.startswith("notifier/")
    assert fetched.page.layout is Layout.DETAIL
    (item,) = fetched.page.items
    assert item.number == number
    assert len(item.events) == revealed
    assert [e.status for e in item.events] == [
        s.status_en for s in simulator.journey(number).scans[:revealed]
    ]
    assert ja.page.locale is Locale.JA
    assert [e.status for e in ja.page.items[0].events] == [
        s.status_ja for s in simulator.journey(number).scans[:revealed]
    ]
    assert [e.stage for e in ja.page.items[0].events] == [e.stage for e in item.events]
    assert fetched.body.startswith(b"\r\n") or fetched.body.lstrip().startswith(b"<!DOCTYPE")


async def test_batch_of_ten_is_one_request(simulator: Simulator, sim_server: SimulatorServer) -> None:
    known = found_numbers(simulator)
    numbers = [*(known * 10)[:8], "EJ123456785JP", "12345"]
    numbers = list(dict.fromkeys(numbers)) + [f"99999999{i:04d}" for i in range(10)]
    numbers = numbers[:10]
    simulator.reset_requests()
    async with client_for(sim_server) as client:
        fetched = await client.fetch_latest(numbers, Locale.EN)
    assert simulator.request_count == 1
    assert simulator.requests[0].numbers == tuple(numbers)
    assert fetched.page.layout is Layout.LIST
    assert [item.number for item in fetched.page.items] == numbers
    by_number = {item.number: item for item in fetched.page.items}
    for number in known:
        item = by_number[number]
        assert item.outcome is Outcome.FOUND
        assert len(item.events) == 1
        assert (
            item.events[0].status
            == simulator.journey(number).scans[simulator.journey(number).revealed - 1].status_en
        )
    assert by_number["12345"].outcome is Outcome.INVALID_NUMBER
    assert by_number["EJ123456785JP"].outcome is Outcome.NOT_FOUND


async def test_batch_refuses_more_than_ten(sim_server: SimulatorServer) -> None:
    async with client_for(sim_server) as client:
        with pytest.raises(ValueError, match="1 to 10"):
            await client.fetch_latest([f"1234567890{i:02d}" for i in range(11)])


async def test_server_errors_are_retried_with_backoff(
    simulator: Simulator, sim_server: SimulatorServer
) -> None:
    number = found_numbers(simulator)[0]
    simulator.inject(Fault.SERVER_ERROR, times=2)
    async with client_for(sim_server, backoff_base=0.1, backoff_cap=0.1) as client:
        fetched = await client.fetch_detail(number)
    assert fetched.attempts == 3
    log = simulator.requests
    assert [r.status for r in log] == [500, 500, 200]
    assert all(later.at >= earlier.at for earlier, later in itertools.pairwise(log))


async def test_persistent_server_error_gives_transient_error(
    simulator: Simulator, sim_server: SimulatorServer
) -> None:
    simulator.set_fault(Fault.SERVER_ERROR)
    async with client_for(sim_server, attempts=3) as client:
        with pytest.raises(TransientFetchError) as info:
            await client.fetch_detail(found_numbers(simulator)[0])
    assert info.value.status == 500
    assert info.value.transient
    assert simulator.request_count == 3


async def test_retry_after_is_honoured(simulator: Simulator, sim_server: SimulatorServer) -> None:
    simulator.inject(Fault.RATE_LIMITED, times=1, retry_after=1)
    async with client_for(sim_server) as client:
        fetched = await client.fetch_detail(found_numbers(simulator)[0])
    first, second = simulator.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95
    assert fetched.attempts == 2


async def test_long_retry_after_is_not_waited_out(simulator: Simulator, sim_server: SimulatorServer) -> None:
    simulator.inject(Fault.RATE_LIMITED, times=1, retry_after=3600)
    started = time.monotonic()
    async with client_for(sim_server, max_retry_after=60) as client:
        with pytest.raises(TransientFetchError) as info:
            await client.fetch_detail(found_numbers(simulator)[0])
    assert time.monotonic() - started < 2
    assert info.value.retry_after == 3600
    assert simulator.request_count == 1


@pytest.mark.parametrize("fault", [Fault.SLOW, Fault.TRICKLE])
async def test_total_deadline_bounds_slow_servers(
    fault: Fault, simulator: Simulator, sim_server: SimulatorServer
) -> None:
    simulator.set_fault(fault, delay=3.0)
    started = time.monotonic()
    async with client_for(sim_server, deadline=0.5, attempts=2) as client:
        with pytest.raises(TransientFetchError, match=r"within 0\.5s"):
            await client.fetch_detail(found_numbers(simulator)[0])
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("fault", [Fault.OVERSIZED, Fault.GZIP_BOMB])
async def test_body_cap_counts_decoded_bytes(
    fault: Fault, simulator: Simulator, sim_server: SimulatorServer
) -> None:
    simulator.set_fault(fault, size=8 * 2**20)
    async with client_for(sim_server, max_body_bytes=2**20) as client:
        with pytest.raises(PermanentFetchError, match="exceeds"):
            await client.fetch_detail(found_numbers(simulator)[0])
    assert simulator.request_count == 1  # permanent: not retried


@pytest.mark.parametrize("fault", [Fault.MAINTENANCE, Fault.CHANGED_LAYOUT])
async def test_unreadable_pages_come_back_unrecognized(
    fault: Fault, simulator: Simulator, sim_server: SimulatorServer
) -> None:
    simulator.set_fault(fault)
    async with client_for(sim_server) as client:
        fetched = await client.fetch_detail(found_numbers(simulator)[0])
    assert fetched.page.layout is Layout.UNRECOGNIZED
    assert fetched.page.items == ()


async def test_connection_reset_is_transient_and_retried(
    simulator: Simulator, sim_server: SimulatorServer
) -> None:
    simulator.inject(Fault.RESET, times=1)
    async with client_for(sim_server) as client:
        fetched = await client.fetch_detail(found_numbers(simulator)[0])
    assert fetched.attempts == 2
    assert fetched.page.layout is Layout.DETAIL


async def test_redirects_stay_on_japan_post_hosts(simulator: Simulator, sim_server: SimulatorServer) -> None:
    number = found_numbers(simulator)[0]
    simulator.inject(Fault.REDIRECT_ONSITE, times=1)
    async with client_for(sim_server) as client:
        fetched = await client.fetch_detail(number)
        assert fetched.page.layout is Layout.DETAIL
        simulator.inject(Fault.REDIRECT_OFFSITE, times=1)
        with pytest.raises(PermanentFetchError, match="not a Japan Post host"):
            await client.fetch_detail(number)


async def test_unknown_path_is_permanent(sim_server: SimulatorServer) -> None:
    async with client_for(sim_server) as client:
        with pytest.raises(PermanentFetchError, match="HTTP 404"):
            await client._fetch(sim_server.base_url + "/nowhere", {}, requested=())


async def test_requests_are_paced_globally(simulator: Simulator, sim_server: SimulatorServer) -> None:
    numbers = found_numbers(simulator)
    async with client_for(sim_server, request_interval=0.25) as client:
        await asyncio.gather(*(client.fetch_detail(numbers[i % len(numbers)]) for i in range(5)))
    times = [r.at for r in simulator.requests]
    assert len(times) == 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Arrival times are read at the server: the first request also opens the connection, so its
    # arrival can lag its release by tens of milliseconds on a loaded machine and shorten the
    # first gap only. The later gaps, and the span, show the pace.
    assert min(gaps[1:]) >= 0.2, gaps
    assert times[-1] - times[0] >= 4 * 0.2, gaps


def test_allowed_hosts() -> None:
    settings = ClientSettings()
    assert settings.allows_host("trackings.post.japanpost.jp")
    assert settings.allows_host("www.post.japanpost.jp")
    assert not settings.allows_host("japanpost.jp.evil.example")
    assert not settings.allows_host("example.invalid")


def test_retry_after_forms() -> None:
    now = 1_000_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Sun, 09 Sep 2001 01:46:40 GMT", now) == pytest.approx(0, abs=1)
    assert parse_retry_after("Sun, 09 Sep 2001 01:48:40 GMT", now) == pytest.approx(120, abs=1)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_retry_after_holds_every_caller_sharing_the_pacer(
    simulator: Simulator, sim_server: SimulatorServer
) -> None:
    numbers = found_numbers(simulator)
    simulator.inject(Fault.RATE_LIMITED, times=1, retry_after=1)
    async with client_for(sim_server, attempts=1) as client:
        with pytest.raises(TransientFetchError):
            await client.fetch_detail(numbers[0])
        # A different number, a different caller: it still waits out the server's Retry-After.
        await client.fetch_detail(numbers[1])
    limited, next_one = simulator.requests
    assert next_one.at - limited.at >= 0.95
