"""Shared fixtures: paths to the genuine captures and a running Japan Post simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests.databases import db_url, empty_db_url, postgres_template, sqlite_template
from tests.web_server import asgi_server, recorder

__all__ = ["asgi_server", "db_url", "empty_db_url", "postgres_template", "recorder", "sqlite_template"]

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
