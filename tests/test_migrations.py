"""Alembic migrations on real SQLite and PostgreSQL: round trips with data, drift, the head check."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, DateTime, bindparam, func, inspect, select, text

from notifier.core.diff import diff_detail
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.store import Store
from notifier.store.database import (
    SchemaError,
    alembic_config,
    downgrade,
    make_engine,
    require_head,
    schema_state,
    upgrade,
)
from notifier.store.orm import Base, Event, Shipment
from tests.test_store import CAPTURE, NUMBER

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def revisions_oldest_first() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            shipments = (await connection.execute(select(func.count()).select_from(Shipment))).scalar_one()
            events = (await connection.execute(select(func.count()).select_from(Event))).scalar_one()
        return int(shipments), int(events)
    finally:
        await engine.dispose()


async def seed(url: str) -> None:
    store = await Store.open(url)
    try:
        shipment = await store.watch(parse_number(NUMBER), now=T0)
        page = parse_page(CAPTURE)
        change = diff_detail((), page, NUMBER)
        await store.record_poll(shipment.id, change=change, item=page.items[0], now=T0, next_poll_at=None)
    finally:
        await store.close()


async def test_round_trip_every_revision_with_data(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        await upgrade(engine)
        await seed(empty_db_url)
        before = await counts(empty_db_url)
        assert before == (1, 5)
        revisions = revisions_oldest_first()
        # Step down and back up through every revision above the first: data must survive.
        # (On SQLite this once lost every event: batch mode's table rebuild cascaded deletes.)
        for revision in reversed(revisions[1:]):
            await downgrade(engine, "-1")
            assert (await schema_state(engine)).current != revision
            await upgrade(engine, revision)
            assert await counts(empty_db_url) == before
            await downgrade(engine, "-1")  # on down to the next revision to check
        await downgrade(engine, "base")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await upgrade(engine)
        assert (await schema_state(engine)).at_head
        assert await counts(empty_db_url) == (0, 0)
        if engine.dialect.name == "sqlite":
            # Migrations switch foreign keys off on their connection; it must come back on.
            async with engine.connect() as connection:
                assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await engine.dispose()


async def test_models_and_migrations_agree(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)

    def drift(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(drift) == []
    finally:
        await engine.dispose()


async def test_database_not_at_head_is_refused(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaError, match="no notifier schema"):
            await require_head(engine)
        await upgrade(engine)
        await require_head(engine)
        # A database written by another version of notifier (here: a revision we do not know).
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
        with pytest.raises(SchemaError, match=r"at revision f00dfeed, which notifier .* does not know"):
            await require_head(engine)
        # An older revision we know: upgrade is the way.
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        with pytest.raises(SchemaError, match="at revision 0001 but this notifier needs"):
            await require_head(engine)
    finally:
        await engine.dispose()


def notifier(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
    )


def test_commands_refuse_with_exit_3_until_upgraded(empty_db_url: str) -> None:
    status = notifier("status", "--database-url", empty_db_url)
    assert status.returncode == 3
    assert "notifier db upgrade" in status.stderr
    assert notifier("db", "current", "--database-url", empty_db_url).returncode == 3
    upgraded = notifier("db", "upgrade", "--database-url", empty_db_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "empty ->" in upgraded.stdout
    assert notifier("db", "current", "--database-url", empty_db_url).returncode == 0
    assert notifier("status", "--database-url", empty_db_url).returncode == 0
    down = notifier("db", "downgrade", "base", "--database-url", empty_db_url)
    assert down.returncode == 0, down.stderr
    assert notifier("status", "--database-url", empty_db_url).returncode == 3


def test_migration_scripts_ship_with_the_package() -> None:
    from notifier.store.database import migrations_dir

    assert (migrations_dir() / "env.py").is_file()
    assert revisions_oldest_first()


async def test_0003_keeps_every_watch_and_makes_stranded_shipments_due(empty_db_url: str) -> None:
    """Rows from before 0003 are the CLI's (no config sync unwatches them), and a shipment an
    old `notifier poll` left with no due time is due again, unless the policy gave up on it."""
    engine = make_engine(empty_db_url)
    try:
        await upgrade(engine, "0002")
        async with engine.begin() as connection:
            for number, polled in (
                ("EJ000000001JP", True),
                ("EJ000000002JP", True),
                ("EJ000000003JP", False),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO shipments (number, incarnation, label, origin, tags, stage, active, "
                        "created_at, last_polled_at, next_poll_at, consecutive_failures) VALUES "
                        "(:number, 1, '', 'JP', '', 'in_transit', :active, :t0, :polled, NULL, 0)"
                    ).bindparams(
                        # Typed, so SQLAlchemy formats the times (sqlite3's own adapter is
                        # deprecated since Python 3.12).
                        bindparam("t0", type_=DateTime()),
                        bindparam("polled", type_=DateTime()),
                    ),
                    {
                        "number": number,
                        "active": True,
                        "t0": T0.replace(tzinfo=None),
                        "polled": (T0 + dt.timedelta(hours=1)).replace(tzinfo=None) if polled else None,
                    },
                )
            await connection.execute(
                text(
                    "INSERT INTO alerts (kind, subject, message, first_seen_at, last_seen_at, count) "
                    "VALUES ('gave_up', 'EJ000000002JP', 'no change for 60 days', :t0, :t0, 1)"
                ).bindparams(bindparam("t0", type_=DateTime())),
                {"t0": T0.replace(tzinfo=None)},
            )
        await upgrade(engine)
        async with engine.connect() as connection:
            rows = {
                number: (watched_by, due)
                for number, watched_by, due in await connection.execute(
                    text("SELECT number, watched_by, next_poll_at FROM shipments ORDER BY number")
                )
            }
        assert {watched_by for watched_by, _ in rows.values()} == {"cli"}
        due = {number: value for number, (_, value) in rows.items()}
        assert due["EJ000000002JP"] is None  # given up on: stays stopped
        assert due["EJ000000001JP"] is not None
        assert due["EJ000000003JP"] is not None
        await downgrade(engine, "0002")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("shipments")]
            )
        assert "watched_by" not in columns
        assert await counts(empty_db_url) == (3, 0)
    finally:
        await engine.dispose()


async def test_0009_keeps_subscriptions_and_a_chosen_language_wins_until_downgraded(
    empty_db_url: str,
) -> None:
    """Subscriptions from before 0009 have no choice (their mail stays in `locale`); a choice
    made afterwards wins over the watchlist's locale; going down drops only the choice."""
    engine = make_engine(empty_db_url)
    try:
        await upgrade(engine, "0008")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO shipments (number, incarnation, label, origin, tags, stage, active, "
                    "created_at, consecutive_failures) VALUES "
                    "(:number, 1, '', 'JP', '', 'in_transit', :active, :t0, 0)"
                ).bindparams(bindparam("t0", type_=DateTime())),
                {"number": NUMBER, "active": True, "t0": T0.replace(tzinfo=None)},
            )
            shipment_id = (await connection.execute(text("SELECT id FROM shipments"))).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO subscribers (email, name, locale, created_at) VALUES ('a@example.com', '', 'en', :t0)"
                ).bindparams(bindparam("t0", type_=DateTime())),
                {"t0": T0.replace(tzinfo=None)},
            )
            await connection.execute(
                text(
                    "INSERT INTO subscriptions (subscriber_id, shipment_id, locale, active, created_at) "
                    "SELECT id, :sid, 'en', :active, :t0 FROM subscribers"
                ).bindparams(bindparam("t0", type_=DateTime())),
                {"sid": shipment_id, "active": True, "t0": T0.replace(tzinfo=None)},
            )
        await upgrade(engine)
        store = await Store.open(empty_db_url)
        try:
            assert await store.locale_for("a@example.com", NUMBER) == "en"
            assert [loc for _, _, loc, _ in await store.recipients(shipment_id)] == ["en"]
            assert await store.choose_locale("A@example.com", NUMBER, "ja") is True
            assert await store.choose_locale("nobody@example.com", NUMBER, "ja") is False
            # The watchlist subscribing again in English leaves the customer's choice alone.
            await store.subscribe(shipment_id, "a@example.com", locale="en", now=T0)
            assert await store.locale_for("a@example.com", NUMBER) == "ja"
            assert [loc for _, _, loc, _ in await store.recipients(shipment_id)] == ["ja"]
        finally:
            await store.close()
        await downgrade(engine, "0008")
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT locale FROM subscriptions"))).scalars().all()
            columns = await connection.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("subscriptions")}
            )
        assert rows == ["en"]
        assert "chosen_locale" not in columns
    finally:
        await engine.dispose()


async def test_0010_adds_the_shown_window_and_going_down_keeps_the_shipment(empty_db_url: str) -> None:
    """Shipments from before 0010 were shown no window; one recorded afterwards counts towards
    /metrics once delivered; going down drops only the window."""
    from notifier.core.eta import Lane, Window

    engine = make_engine(empty_db_url)
    try:
        await upgrade(engine, "0009")
        await upgrade(engine)
        await seed(empty_db_url)
        store = await Store.open(empty_db_url)
        try:
            view = await store.get(NUMBER)
            assert view is not None
            assert await store.window_accuracy() == []
            shown = Window(
                earliest=dt.date(2026, 1, 1), latest=dt.date(2030, 1, 1), basis="lane", lane=Lane("ems", "US")
            )
            await store.record_window(view.id, shown, now=T0)
            await store.record_window(view.id, shown, now=T0 + dt.timedelta(hours=1))  # same: no write
            async with engine.connect() as connection:
                row = (
                    await connection.execute(
                        text("SELECT window_earliest, window_latest, window_basis FROM shipments")
                    )
                ).one()
            assert [str(v) for v in row] == ["2026-01-01", "2030-01-01", "lane"]
        finally:
            await store.close()
        await downgrade(engine, "0009")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("shipments")}
            )
        assert not {c for c in columns if c.startswith("window_")}
        assert await counts(empty_db_url) == (1, 5)
    finally:
        await engine.dispose()


async def test_0011_adds_the_intake_tables_and_going_down_hands_its_watches_to_the_cli(
    empty_db_url: str,
) -> None:
    """watched_by widens for "woocommerce"; going down keeps the watch (as a CLI one, which a
    reload never unwatches either) and drops only the intake's tables."""
    engine = make_engine(empty_db_url)
    try:
        await upgrade(engine, "0010")
        await upgrade(engine)
        await seed(empty_db_url)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE shipments SET watched_by = 'woocommerce'"))
            # Typed, so SQLAlchemy writes the time itself: sqlite3's own datetime adapter is
            # deprecated since Python 3.12.
            insert_event = text(
                "INSERT INTO intake_events (platform, event_id, received_at) VALUES ('shopify', 'e1', :at)"
            ).bindparams(bindparam("at", type_=DateTime()))
            await connection.execute(insert_event, {"at": T0.replace(tzinfo=None)})
        await downgrade(engine, "0010")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            owners = (await connection.execute(text("SELECT watched_by FROM shipments"))).scalars().all()
        assert not {t for t in tables if t.startswith("intake_")}
        assert owners == ["cli"]
        assert await counts(empty_db_url) == (1, 5)
        await upgrade(engine)
        assert (await schema_state(engine)).at_head
    finally:
        await engine.dispose()
