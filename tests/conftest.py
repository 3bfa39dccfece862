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

# The `slow` marker: end-to-end tests that take seconds each (a daemon or the CLI as
# subprocesses, kill -9 and restart, Chromium). The README's command leaves them out
# (addopts: -m "not live and not slow"); CI runs the whole suite with -m "not live".
# Chosen from a --durations=0 run on the 2-core CI machine (10 s or more each), and for the
# daemon files below, from their real waits of several seconds per test.
SLOW_FILES = {
    # Chromium: every message and page at several widths, in both languages.
    "test_chromium.py",
    "test_web_browser.py",
    "test_web_admin_browser.py",
    # A daemon per test, waiting out leases, outages and reloads in real seconds.
    "test_daemon_ops.py",
    "test_daemon_reload.py",
    "test_instances.py",
    # The systemd install how-to, step by step as another user.
    "test_install.py",
}
SLOW_TESTS = {
    "test_daemon.py::test_kill_9_and_restart_loses_nothing_and_repeats_nothing",
    "test_daemon.py::test_server_errors_and_rate_limits_are_backed_off",
    "test_daemon_faults.py::test_a_flapping_site_loses_no_email_and_sends_none_twice",
    "test_crash.py::test_killed_poll_loses_and_duplicates_nothing",
    "test_cycle.py::test_every_stored_transition_has_its_messages_decided_once_whatever_pages_fail",
    "test_config_robust.py::test_config_check_never_prints_a_traceback",
    "test_cli_mail.py::test_a_login_without_its_password_blocks_sending_commands_only",
}
# Daemon and CLI subprocess tests that run on both databases: the quick command keeps their
# SQLite run; their PostgreSQL run (the same steps again) is in the full one. The database
# layer itself is still tested on PostgreSQL by the quick command (test_store, test_outbox, ...).
SLOW_ON_POSTGRESQL = {
    "test_daemon.py",
    "test_daemon_faults.py",
    "test_intake_daemon.py",
    "test_cli_reset.py",
    "test_migrations.py::test_commands_refuse_with_exit_3_until_upgraded",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen_files: set[str] = set()
    seen_tests: set[str] = set()
    for item in items:
        file = item.path.name
        test = f"{file}::{item.originalname if isinstance(item, pytest.Function) else item.name}"
        seen_files.add(file)
        seen_tests.add(test)
        on_postgresql = "postgresql" in getattr(getattr(item, "callspec", None), "id", "").split("-")
        if (
            file in SLOW_FILES
            or test in SLOW_TESTS
            or (on_postgresql and (file in SLOW_ON_POSTGRESQL or test in SLOW_ON_POSTGRESQL))
        ):
            item.add_marker(pytest.mark.slow)
    # A renamed test would silently fall back into the quick run: name it instead.
    missing = [
        name
        for name in sorted(SLOW_TESTS | {n for n in SLOW_ON_POSTGRESQL if "::" in n})
        if name.split("::")[0] in seen_files and name not in seen_tests
    ]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py marks tests that are not there: {', '.join(missing)}")


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
