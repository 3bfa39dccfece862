"""Local Japan Post simulator: a loopback HTTP server that answers in the genuine page markup."""

from __future__ import annotations

from notifier.testing.simulator.journeys import (
    RECENT_DAYS_AGO,
    builtin_journeys,
    capture_journey,
    catalog_journeys,
    recent_journeys,
    shifted_scan,
)
from notifier.testing.simulator.model import (
    ALL_SCANS,
    DIRECT_PATH,
    MESSAGE_NOT_FOUND,
    MESSAGE_WRONG_DIGITS,
    OFFSITE_REDIRECT,
    SEARCH_PATH,
    ContactRow,
    Fault,
    Journey,
    RequestRecord,
    Scan,
    compact_number,
    display_number,
)
from notifier.testing.simulator.server import (
    SimulatorServer,
    serve,
)
from notifier.testing.simulator.world import Simulator

__all__ = [
    "ALL_SCANS",
    "DIRECT_PATH",
    "MESSAGE_NOT_FOUND",
    "MESSAGE_WRONG_DIGITS",
    "OFFSITE_REDIRECT",
    "RECENT_DAYS_AGO",
    "SEARCH_PATH",
    "ContactRow",
    "Fault",
    "Journey",
    "RequestRecord",
    "Scan",
    "Simulator",
    "SimulatorServer",
    "builtin_journeys",
    "capture_journey",
    "catalog_journeys",
    "compact_number",
    "display_number",
    "recent_journeys",
    "serve",
    "shifted_scan",
]
