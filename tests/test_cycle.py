"""Poll cycles against the simulator over HTTP and real databases: a pause defers customer mail and
never drops it, and one shipment's failure never blocks another's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from notifier.core import limits
from notifier.core.compose import MailSettings
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.policy import PollingPolicy
from notifier.core.render import Renderer
from notifier.core.rules import DEFAULT_RULES, Baseline, MultiStage, RulesConfig
from notifier.core.stages import Stage
from notifier.core.views import OutboxState
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CircuitBreaker, CycleStats, run_cycle
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.testing.simulator import (
    ContactRow,
    Fault,
    Journey,
    Scan,
    Simulator,
    SimulatorServer,
    builtin_journeys,
)

T0 = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)
MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")
RENDERER = Renderer()
# Every stage passed is announced, one message each, however the polls split the journey: the
# expected messages then follow from the stored history alone.
RULES = RulesConfig(baseline=Baseline.ALL, multi_stage=MultiStage.EACH, max_event_age=dt.timedelta(days=3650))
ANNOUNCED = {stage for rule in DEFAULT_RULES if rule.enabled for stage in rule.stages}
POLICY = PollingPolicy(fixed_interval=dt.timedelta(minutes=1), jitter=0)
EMS, YUPACK = builtin_journeys()[:2]


def s10(serial: int) -> str:
    digits = f"{serial:08d}"
    return f"EJ{digits}{s10_check_digit(digits)}JP"


def ems_copies(count: int) -> list[Journey]:
    return [dataclasses.replace(EMS, number=s10(31_000_000 + n), revealed=0) for n in range(count)]


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


class World:
    """A store with watched journeys, a simulator serving them, and cycles run on a fake clock."""

    def __init__(self, store: Store, simulator: Simulator, base_url: str) -> None:
        self.store = store
        self.simulator = simulator
        self.client = JapanPostClient(ClientSettings(base_url=base_url, request_interval=0, attempts=1))
        self.notifier = Notifier(rules=RULES, mail=MAIL, renderer=RENDERER)
        self.breaker = CircuitBreaker(threshold=1_000_000)
        self.clock = Clock(T0)
        self.rng = random.Random(7)

    async def watch(self, journeys: list[Journey]) -> None:
        for journey in journeys:
            view = await self.store.watch(parse_number(journey.number), now=T0)
            await self.store.subscribe(view.id, f"c{view.id}@example.com", locale="en", now=T0)

    async def cycle(self, policy: PollingPolicy = POLICY) -> CycleStats:
        self.clock.now += dt.timedelta(hours=1)
        return await run_cycle(
            self.store,
            self.client,
            self.notifier,
            owner="me",
            policy=policy,
            breaker=self.breaker,
            clock=self.clock,
            rng=self.rng,
        )

    async def expected_keys(self) -> set[str]:
        """The dedup key of every message the stored histories call for (computed from them alone)."""
        keys = set()
        for view in await self.store.shipments(include_inactive=True):
            subscription = (await self.store.recipients(view.id))[0][0]
            running = Stage.PENDING
            for event in await self.store.history(view.id):
                if event.stage is Stage.UNKNOWN or event.stage is running:
                    continue
                running = event.stage
                if running in ANNOUNCED:
                    keys.add(f"{subscription}:{view.id}:{running}:{event.key}")
        return keys

    async def outbox_keys(self) -> list[str]:
        return [item.dedup_key for item in await self.store.outbox(limit=10_000)]

    async def assert_every_transition_decided_once(self) -> None:
        keys = await self.outbox_keys()
        assert len(keys) == len(set(keys))
        assert set(keys) == await self.expected_keys()


@contextlib.asynccontextmanager
async def world(url: str, journeys: list[Journey]) -> AsyncIterator[World]:
    simulator = Simulator(journeys, seed=1)
    with SimulatorServer(simulator) as server:
        store = await Store.open(url)
        here = World(store, simulator, server.base_url)
        try:
            await here.watch(journeys)
            yield here
        finally:
            await here.client.aclose()
            await store.close()


@contextlib.contextmanager
def sqlite_copy(template: Path) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notifier.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"


# --- a pause defers mail, never drops it ----------------------------------------------------------

UNREADABLE = st.sampled_from([Fault.MAINTENANCE, Fault.CHANGED_LAYOUT])
# One step: which journeys reveal a scan, then each request of the cycle good (False) or not.
STEP = st.tuples(
    st.lists(st.booleans(), min_size=4, max_size=4), st.lists(st.booleans(), max_size=8), UNREADABLE
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=10))
def test_every_stored_transition_has_its_messages_decided_once_whatever_pages_fail(
    sqlite_template: Path, steps: list[tuple[list[bool], list[bool], Fault]]
) -> None:
    journeys = [*ems_copies(3), dataclasses.replace(YUPACK, revealed=0)]

    async def scenario(url: str) -> None:
        async with world(url, journeys) as here:
            for advancing, script, fault in steps:
                for journey, advance in zip(journeys, advancing, strict=True):
                    if advance:
                        here.simulator.advance(journey.number)
                here.simulator.clear_faults()
                for bad in script:
                    here.simulator.inject(fault if bad else None)
                await here.cycle()
                # After every cycle, paused or not: each stored transition has exactly its messages.
                await here.assert_every_transition_decided_once()
            here.simulator.clear_faults()
            for _ in range(3):
                await here.cycle()
            assert not here.notifier.paused
            await here.assert_every_transition_decided_once()
            states = {item.state for item in await here.store.outbox(limit=10_000)}
            assert OutboxState.HELD not in states  # released once pages read again
            for journey in journeys:
                view = await here.store.get(journey.number)
                assert view is not None
                shown = len(here.simulator.journey(journey.number).visible)
                assert len(await here.store.history(view.id)) == shown  # nothing left unread

    with sqlite_copy(sqlite_template) as url:
        asyncio.run(scenario(url))


async def test_a_maintenance_page_before_good_detail_pages_holds_their_mail_and_loses_none(
    db_url: str,
) -> None:
    # Six EMS over three steps, the first detail page of each step a maintenance notice: the
    # old code recorded the next pages' events with no mail (3 of 18 lost).
    journeys = [dataclasses.replace(j, revealed=2) for j in ems_copies(6)]  # accepted, outward exchange
    async with world(db_url, journeys) as here:
        await here.cycle()
        assert await here.outbox_keys() == []  # neither stage is announced
        held = released = 0
        for _ in range(3):
            here.simulator.advance()
            here.simulator.inject(None)  # the list page reads, so every shipment needs its detail
            here.simulator.inject(Fault.MAINTENANCE)  # the first detail page does not
            stats = await here.cycle()
            assert stats.detail_requests == 6
            held += stats.held
            released += stats.released
            await here.assert_every_transition_decided_once()
            stats = await here.cycle()  # the shipment whose page was unreadable
            released += stats.released
        assert held == 3  # the page after each maintenance notice was read while mail was paused
        assert released == held
        items = await here.store.outbox(limit=100)
        assert len(items) == 18
        assert {item.state for item in items} == {OutboxState.PENDING}
        assert sorted(item.stage for item in items) == sorted(
            ["departed_origin", "inward_exchange", "customs_presented"] * 6
        )
        await here.assert_every_transition_decided_once()
        alerts = [a for a in await here.store.alerts() if a.kind == "site_unrecognized"]
        assert len(alerts) == 1
        assert alerts[0].count == 3


async def test_mail_held_by_a_stopped_instance_goes_out_once_a_page_reads(db_url: str) -> None:
    from notifier.pipeline.poll import poll_detail

    journey = dataclasses.replace(ems_copies(1)[0], revealed=3)
    async with world(db_url, [journey]) as here:
        view = await here.store.get(journey.number)
        assert view is not None
        here.notifier.paused = True
        # Polled while paused, then stopped before any page lifted the pause.
        result = await poll_detail(
            here.store, here.client, view, now=T0, next_poll_at=T0, notifier=here.notifier
        )
        assert result.held
        assert [i.state for i in await here.store.outbox()] == [OutboxState.HELD]
        here.notifier.paused = False  # a new process
        here.simulator.set_fault(Fault.MAINTENANCE)
        await here.cycle()  # no page read: nothing says the site is fine
        assert [i.state for i in await here.store.outbox()] == [OutboxState.HELD]
        here.simulator.clear_faults()
        here.notifier.paused = False  # and another restart
        stats = await here.cycle()
        assert stats.released == 1
        assert [i.state for i in await here.store.outbox()] == [OutboxState.PENDING]
        await here.assert_every_transition_decided_once()


async def test_time_based_mail_waits_while_paused_and_for_shipments_that_failed(db_url: str) -> None:
    from notifier.pipeline.poll import queue_timed

    journey = dataclasses.replace(ems_copies(1)[0], revealed=3)  # departed Japan: silence is normal
    async with world(db_url, [journey]) as here:
        await here.cycle()
        later = here.clock.now + dt.timedelta(days=11)
        here.notifier.paused = True
        assert await queue_timed(here.store, here.notifier, now=later) == 0
        here.notifier.paused = False
        here.simulator.inject(Fault.MAINTENANCE)
        here.clock.now = later
        await here.cycle()  # unreadable: the shipment's silence is ours, not the parcel's
        assert here.notifier.paused
        here.notifier.paused = False
        assert await queue_timed(here.store, here.notifier, now=later) == 0
        await here.cycle()  # read again
        assert await queue_timed(here.store, here.notifier, now=later) == 1
        assert [i.rule for i in await here.store.outbox() if i.rule.startswith("stalled")] == [
            "stalled:departed_origin"
        ]


# --- one shipment's failure never blocks another's ------------------------------------------------


def hostile_journey() -> Journey:
    return Journey(
        number=s10(32_000_001),
        item_type_en="E" * 80,
        item_type_ja="E" * 80,
        international=True,
        scans=[
            Scan(
                when="2026-05-01T10:00",
                status_en="Posting/Collection",
                status_ja="引受",
                office_en="X" * 250,
                office_ja="X" * 250,
                region_en="R" * 250,
                region_ja="R" * 250,
                postal_code="1" * 30,
            ),
            Scan(when="2026-05-02T11:00", status_en="S" * 350, status_ja="S" * 350, office_en="OSAKA"),
        ],
        contacts=[
            ContactRow(
                role_en="A" * 80, role_ja="A" * 80, office_en="O" * 250, office_ja="O" * 250, phone="0" * 50
            )
        ],
    )


async def test_over_long_page_fields_are_stored_truncated_and_block_nothing(db_url: str) -> None:
    hostile, ordinary = hostile_journey(), dataclasses.replace(ems_copies(1)[0], revealed=3)
    async with world(db_url, [hostile, ordinary]) as here:
        stats = await here.cycle()
        assert (stats.claimed, stats.detail_requests, stats.errors) == (2, 2, 0)
        view = await here.store.get(hostile.number)
        assert view is not None
        assert view.consecutive_failures == 0
        assert view.item_type == "E" * (limits.ITEM_TYPE - 1) + "…"
        first, second = await here.store.history(view.id)
        assert first.office == "X" * (limits.OFFICE - 1) + "…"
        assert first.region == "R" * (limits.REGION - 1) + "…"
        assert first.postal_code == "1" * (limits.POSTAL_CODE - 1) + "…"
        assert second.status == "S" * (limits.STATUS - 1) + "…"
        assert second.stage is Stage.UNKNOWN
        (contact,) = await here.store.contacts(view.id)
        assert (len(contact.role), len(contact.office), len(contact.phone)) == (
            limits.CONTACT_ROLE,
            limits.CONTACT_OFFICE,
            limits.CONTACT_PHONE,
        )
        reason, _, body = (await here.store.snapshots(hostile.number))[0]
        assert reason == "changed"
        assert b"X" * 250 in body
        assert b"S" * 350 in body
        # The shipment claimed after it was polled in the same cycle, with its message.
        after = await here.store.get(ordinary.number)
        assert after is not None
        assert after.stage is Stage.DEPARTED_ORIGIN
        assert [i.stage for i in await here.store.outbox() if i.number == ordinary.number] == [
            "departed_origin"
        ]
        # The fitted text is the event's identity on every later poll: nothing new, nothing missing.
        await here.cycle()
        assert len(await here.store.history(view.id)) == 2
        kinds = {a.kind for a in await here.store.alerts()}
        assert kinds == {"unknown_status"}


POISON = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.office = 'POISON' "
        "BEGIN SELECT RAISE(ABORT, 'hostile value'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.office = 'POISON' THEN "
        "RAISE EXCEPTION 'hostile value'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}


async def test_a_poll_failing_for_its_own_reason_is_rolled_back_alone_backed_off_and_alerted(
    db_url: str,
) -> None:
    # A database refusing one shipment's data (a trigger standing in for any per-shipment bug).
    poisoned = dataclasses.replace(
        ems_copies(1)[0],
        number=s10(32_000_002),
        scans=[dataclasses.replace(EMS.scans[0], office_en="POISON"), *EMS.scans[1:3]],
        revealed=3,
    )
    ordinary = dataclasses.replace(ems_copies(1)[0], revealed=3)
    policy = PollingPolicy(jitter=0)
    async with world(db_url, [poisoned, ordinary]) as here:
        async with here.store.engine.begin() as connection:
            for statement in POISON[here.store.dialect]:
                await connection.execute(text(statement))
        stats = await here.cycle(policy)
        now = here.clock.now
        assert (stats.claimed, stats.detail_requests, stats.errors) == (2, 2, 1)
        view = await here.store.get(poisoned.number)
        assert view is not None
        assert await here.store.history(view.id) == ()  # rolled back whole
        assert view.consecutive_failures == 1
        assert view.last_error is not None
        assert "hostile value" in view.last_error
        assert view.next_poll_at is not None
        assert view.next_poll_at - now > policy.intervals[Stage.PENDING]  # backed off
        async with here.store.engine.connect() as connection:
            leases = await connection.execute(text("SELECT leased_by FROM shipments ORDER BY id"))
            assert [lease for (lease,) in leases] == [None, None]
        (alert,) = await here.store.alerts()
        assert (alert.kind, alert.subject, alert.count) == ("poll_error", poisoned.number, 1)
        assert "hostile value" in alert.message
        after = await here.store.get(ordinary.number)
        assert after is not None
        assert after.stage is Stage.DEPARTED_ORIGIN
        assert len(await here.store.outbox()) == 1
        # Due again after its back-off: it fails again, the one alert counts up, the rest go on.
        here.clock.now = view.next_poll_at
        stats = await here.cycle(policy)
        assert stats.errors == 1
        (alert,) = await here.store.alerts()
        assert alert.count == 2
        again = await here.store.get(poisoned.number)
        assert again is not None
        assert again.consecutive_failures == 2
        assert again.next_poll_at is not None
        assert again.next_poll_at > view.next_poll_at
