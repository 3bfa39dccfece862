"""WAL file size after a burst of writes under a long reader: SQLite's defaults against our settings.

A reader that holds its snapshot (a long `status`, a backup) keeps checkpoints from resetting the
WAL, so a burst of writes grows it; SQLite then keeps the file at that size for ever unless
journal_size_limit or a TRUNCATE checkpoint cuts it back. On a small volume, that size is the
space the next burst needs.

    python -m benchmarks.wal [--megabytes 40]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sqlite3
import tempfile
from pathlib import Path

from notifier.store import Store
from notifier.store.database import upgrade

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def wal_size(database: Path) -> int:
    wal = database.with_name(database.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def burst(store: Store, database: Path, megabytes: int, *, checkpoint: bool) -> tuple[int, int, int]:
    """(WAL bytes after the burst, after the next small write, after our periodic checkpoint)."""
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM alerts").fetchone()  # holds its snapshot
    for index in range(megabytes * 10):
        await store.raise_alert("unknown_status", "x" * 100_000, now=T0, subject=f"s{index}")
    peak = wal_size(database)
    reader.execute("COMMIT")
    reader.close()
    for index in range(300):  # ordinary traffic: autocheckpoints run and reset the WAL
        await store.raise_alert("gave_up", "y", now=T0, subject=f"t{index}")
    after_traffic = wal_size(database)
    if checkpoint:
        await store.checkpoint()
    return peak, after_traffic, wal_size(database)


async def run(megabytes: int, settings: str, folder: Path) -> tuple[int, int, int]:
    database = folder / f"{settings}.db"
    store = await Store.open(f"sqlite:///{database}", check_schema=False)
    await upgrade(store.engine)
    if settings == "defaults":
        # What SQLite does without our bound: no size limit, and no checkpoint of ours.
        from sqlalchemy import event

        @event.listens_for(store.engine.sync_engine, "connect")
        def _unbounded(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_size_limit=-1")
            cursor.close()

        await store.engine.dispose()
    try:
        return await burst(store, database, megabytes, checkpoint=settings == "notifier")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=40, help="size of the burst")
    args = parser.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        print(f"burst of {args.megabytes} MB of writes while a reader holds its snapshot")
        print(f"{'settings':<22}{'WAL after burst':>18}{'after traffic':>16}{'after checkpoint':>19}")
        for settings in ("defaults", "notifier"):
            peak, traffic, final = asyncio.run(run(args.megabytes, settings, Path(tmp)))
            print(f"{settings:<22}{peak / mib:>14.1f} MiB{traffic / mib:>12.1f} MiB{final / mib:>15.1f} MiB")


if __name__ == "__main__":
    main()
