"""Shared fixtures: paths to the genuine captures and a running Japan Post simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.simulator import Simulator, SimulatorServer, builtin_journeys

PAGES = Path(__file__).parent / "data" / "pages"


@pytest.fixture
def pages() -> Path:
    return PAGES


@pytest.fixture
def simulator() -> Simulator:
    return Simulator(builtin_journeys())


@pytest.fixture
def sim_server(simulator: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(simulator) as server:
        yield server
