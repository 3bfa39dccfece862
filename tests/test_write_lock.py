"""One write path per database: on SQLite the writers of a process queue on one lock, and what only reads never waits for it."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from notifier.store import Store
from notifier.store.database import SQLITE_BUSY_TIMEOUT_MS
from notifier.store.instances import Coordination, coordination_state, lease_time


def test_a_health_ping_does_not_wait_for_a_write_in_progress(sqlite_template: Path, tmp_path: Path) -> None:
    """The health check and the systemd watchdog ping the database while the daemon may be
    writing: a ping is a read, so on SQLite it must not queue for the write lock (it did, for up
    to the busy timeout, when it began its transaction IMMEDIATE like a write)."""
    path = tmp_path / "n.db"
    path.write_bytes(sqlite_template.read_bytes())

    async def scenario() -> None:
        store = await Store.open(f"sqlite:///{path}")
        try:
            async with store.database.write() as session:
                await session.execute(text("DELETE FROM alerts WHERE 1 = 0"))  # takes the lock
                await asyncio.wait_for(store.ping(), timeout=1)
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.mark.slow  # waits out the busy timeout (5 s) on SQLite
def test_a_heartbeat_waits_behind_a_long_write_of_its_own_process_instead_of_failing(db_url: str) -> None:
    """On SQLite the heartbeat queues on the store's write lock: a write of this process that
    holds SQLite's lock longer than the busy timeout delays it, never fails it with "database is
    locked" (it did when the heartbeat had its own connection outside the lock)."""

    async def scenario() -> None:
        store = await Store.open(db_url)
        try:
            coordination = Coordination(store.database, "host-a:1", tick=0.2)
            now = dt.datetime.now(dt.UTC)
            async with store.database.write() as session:
                await session.execute(text("DELETE FROM alerts WHERE 1 = 0"))  # takes the lock
                beat = asyncio.create_task(coordination.beat(now))
                if store.dialect == "sqlite":
                    await asyncio.sleep(SQLITE_BUSY_TIMEOUT_MS / 1000 + 1)
                    assert not beat.done()
            assert await beat is True
            state = await coordination_state(store.engine, now=now, stale_after=lease_time(0.2))
            assert (state.daily_owner, [i.owner for i in state.instances]) == ("host-a:1", ["host-a:1"])
        finally:
            await store.close()

    asyncio.run(scenario())
