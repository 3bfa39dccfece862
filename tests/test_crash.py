"""A `notifier poll` process that dies between fetch and commit, or right after commit, loses
nothing and duplicates nothing when run again (real process, real database, real simulator)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys


def poll_process(
    config: Path, db_url: str, number: str, crashpoint: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    if crashpoint:
        env["NOTIFIER_CRASHPOINT"] = crashpoint
    return subprocess.run(
        [sys.executable, "-m", "notifier", "poll", number, "--config", str(config), "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def stored_history(db_url: str, number: str) -> list[str]:
    async def read() -> list[str]:
        store = await Store.open(db_url)
        try:
            view = await store.get(number)
            return [] if view is None else [e.status for e in await store.history(view.id)]
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.parametrize("crashpoint", ["poll:before-commit", "poll:after-commit"])
def test_killed_poll_loses_and_duplicates_nothing(db_url: str, tmp_path: Path, crashpoint: str) -> None:
    journey = builtin_journeys()[0]
    simulator = Simulator([journey])
    simulator.reveal(journey.number, 2)
    expected = [scan.status_en for scan in journey.scans]
    with SimulatorServer(simulator) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n', encoding="utf-8"
        )

        killed = poll_process(config, db_url, journey.number, crashpoint)
        assert killed.returncode == 137, killed.stderr
        committed = crashpoint == "poll:after-commit"
        assert stored_history(db_url, journey.number) == (expected[:2] if committed else [])

        rerun = poll_process(config, db_url, journey.number, None)
        assert rerun.returncode == 0, rerun.stderr
        assert stored_history(db_url, journey.number) == expected[:2]
        assert f"{0 if committed else 2} new event(s)" in rerun.stdout

        simulator.advance(journey.number, steps=3)
        again = poll_process(config, db_url, journey.number, crashpoint)
        assert again.returncode == 137
        final = poll_process(config, db_url, journey.number, None)
        assert final.returncode == 0, final.stderr
        assert stored_history(db_url, journey.number) == expected[:5]
