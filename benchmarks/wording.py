"""Requests per shipment for Japan Post's wording in the customer's language, over whole journeys.

    python benchmarks/wording.py [--shipments N]

N shipments (the three builtin journeys that get found, in turn, under their own numbers), each
watched by subscribers of one mix: English only, Japanese only, or one of each. Every journey
is revealed one scan at a time; after each step one cycle runs (real HTTP to the simulator on
loopback, a SQLite database, default rules), until every journey is fully shown. Printed per
mix: list, detail and other-language detail requests per shipment, and the other-language
requests as a share of all; for comparison, what reading both languages on every detail poll
would cost (one more request per detail request).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import random
import tempfile
from pathlib import Path

from notifier.core.compose import MailSettings
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.policy import PollingPolicy
from notifier.core.render import Renderer
from notifier.core.rules import RulesConfig
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CircuitBreaker, run_cycle
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.testing.simulator import Journey, Simulator, SimulatorServer, builtin_journeys

T0 = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
MIXES = {"en only": ("en",), "ja only": ("ja",), "en + ja": ("en", "ja")}


def journeys(count: int) -> list[Journey]:
    found = builtin_journeys()[:3]
    out = []
    for n in range(count):
        base = found[n % 3]
        if base.number.isdigit():
            body = f"{4_000_000_000 + n:011d}"
            number = body + str(int(body) % 7)
        else:
            digits = f"{50_000_000 + n:08d}"
            number = f"{base.number[:2]}{digits}{s10_check_digit(digits)}JP"
        out.append(dataclasses.replace(base, number=number, revealed=0))
    return out


async def run(mix: tuple[str, ...], count: int, directory: Path) -> dict[str, float]:
    url = f"sqlite+aiosqlite:///{directory / ('-'.join(mix) + '.db')}"
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    store = await Store.open(url)
    shipments = journeys(count)
    simulator = Simulator(shipments)
    totals = {"list": 0.0, "detail": 0.0, "wording": 0.0, "messages": 0.0}
    with SimulatorServer(simulator) as server:
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        notifier = Notifier(
            rules=RulesConfig(max_event_age=dt.timedelta(days=3650)),
            mail=MailSettings(sender="Shop <shop@example.com>", shop_name="Shop"),
            renderer=Renderer(),
        )
        for journey in shipments:
            view = await store.watch(parse_number(journey.number), now=T0)
            for index, locale in enumerate(mix):
                await store.subscribe(view.id, f"{index}.{view.id}@example.com", locale=locale, now=T0)
        now = T0
        steps = max(len(j.scans) for j in shipments)
        for _ in range(steps):
            simulator.advance()
            now += dt.timedelta(hours=2)

            def clock(now: dt.datetime = now) -> dt.datetime:
                return now

            while True:
                stats = await run_cycle(
                    store,
                    client,
                    notifier,
                    owner="bench",
                    policy=PollingPolicy(fixed_interval=dt.timedelta(hours=1), jitter=0),
                    breaker=CircuitBreaker(threshold=1_000_000),
                    clock=clock,
                    rng=random.Random(1),
                )
                totals["list"] += stats.list_requests
                totals["detail"] += stats.detail_requests
                totals["wording"] += stats.wording_requests
                totals["messages"] += stats.queued
                if not stats.claimed:
                    break
        await client.aclose()
    await store.close()
    return {key: value / count for key, value in totals.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=30)
    args = parser.parse_args()
    print(f"{args.shipments} shipments, whole journeys, per shipment:")
    print(
        f"{'subscribers':<12} {'list':>6} {'detail':>7} {'wording':>8} {'share':>6} {'both-always':>12} "
        f"{'messages':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, mix in MIXES.items():
            r = await run(mix, args.shipments, Path(tmp))
            total = r["list"] + r["detail"] + r["wording"]
            share = r["wording"] / total if total else 0.0
            print(
                f"{name:<12} {r['list']:>6.2f} {r['detail']:>7.2f} {r['wording']:>8.2f} {share:>6.1%} "
                f"{r['detail']:>12.2f} {r['messages']:>9.2f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
