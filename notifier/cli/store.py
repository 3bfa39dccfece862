"""Commands that use the database: `poll`, `status`, `history`, `alerts`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import socket
import sys
from collections.abc import Awaitable, Callable

from notifier import hints
from notifier.cli import columns
from notifier.cli.db import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, _run, _settings, cmd_db, utcnow
from notifier.cli.windows import PRIOR_NOTE, history_json, window_cell, window_fields, windows_now
from notifier.config import CONFIG_ENV, DATABASE_URL_ENV, Settings
from notifier.core.diff import Change
from notifier.core.numbers import parse_number
from notifier.core.stages import stage_info
from notifier.core.views import ShipmentView
from notifier.core.windows import Shown
from notifier.errors import InvalidNumberError
from notifier.net.japanpost import MAX_BATCH, ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CycleStats, poll_claimed
from notifier.pipeline.poll import PollResult
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store
from notifier.store.dbenv import explained
from notifier.store.instances import coordination_state, describe, lease_time, state_json


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ") if value else "-"


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[int]]) -> int:
    with explained(settings.database.url):
        store = await Store.open(settings.database.url)
        try:
            return await action(store)
        finally:
            await store.close()


# --- poll -----------------------------------------------------------------------------


# Long enough for one detail request and its commit; a crashed `poll` elsewhere frees the
# number by then (one on this machine at once: see dead_here).
POLL_LEASE = dt.timedelta(minutes=2)


def dead_here(owner: str) -> bool:
    """Whether a lease owner ("[poll:]host:pid") is a process of this machine that no longer
    exists, so its lease can be taken over now rather than when it runs out."""
    host, _, pid = owner.removeprefix("poll:").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (perhaps as another user): not ours to take
    return False


def poll_lease(seen: int, unseen: int, interval: float) -> dt.timedelta:
    """Long enough for the whole run at the configured pace (a list request per ten numbers
    seen before, a detail request per number never seen), twice over, and at least POLL_LEASE."""
    requests = -(-seen // MAX_BATCH) + unseen
    return max(POLL_LEASE, POLL_LEASE + dt.timedelta(seconds=2 * requests * interval))


def _print_change(number: str, change: Change, queued: int) -> None:
    line = f"{number}: {len(change.new_events)} new event(s), stage {change.current_stage}"
    if queued:
        line += f", {queued} message(s) queued"
    print(line)
    for transition in change.transitions:
        print(f"  {transition.from_stage} -> {transition.to_stage}  ({transition.event.status})")
    for anomaly in change.anomalies:
        print(f"  anomaly {anomaly.kind}: {anomaly.message}")


async def _poll(args: argparse.Namespace, numbers: list[str]) -> int:
    """Poll the numbers now, as the daemon does (pipeline.cycle.poll_claimed): one list request
    per ten numbers seen before (the unchanged ones are settled by it), a detail request for the
    others and for those whose latest event moved. A list page that cannot be had or read falls
    back to a detail request per number, so each gets its own answer and failure count."""
    settings = _settings(args)
    client_settings = ClientSettings(
        base_url=settings.japanpost.base_url, request_interval=settings.japanpost.request_interval
    )
    owner = f"poll:{socket.gethostname()}:{os.getpid()}"

    async def action(store: Store) -> int:
        worst = EXIT_OK
        now = utcnow()
        parsed = [parse_number(number) for number in numbers]
        # A new watch is not due before this poll has recorded its own next poll time, so a
        # running daemon does not race to poll it too.
        views = await store.watch_many(
            parsed, now=now, label=args.label or "", first_poll_at=now + POLL_LEASE
        )
        seen = sum(1 for view in views if view.last_event_time is not None)
        lease = poll_lease(seen, len(views) - seen, settings.japanpost.request_interval)
        # The leases keep a running daemon from polling them at the same time, and tell us which
        # it is polling right now. A killed `poll` or daemon of this machine protects nothing.
        holders = await store.take_leases(
            [view.id for view in views], owner=owner, now=now, lease=lease, stale=dead_here
        )
        mine = []
        for view in views:
            holder = holders[view.id]
            if holder is None:
                mine.append(view)
                continue
            print(
                f"{view.number}: the running daemon ({holder}) is polling it right now; "
                f"see {hints.command('history ' + view.number)} in a moment"
            )
        done: set[int] = set()

        def report(view: ShipmentView, polled: PollResult) -> None:
            nonlocal worst
            done.add(view.id)
            if polled.change is None or polled.error:
                worst = EXIT_FAILURE
                failures = f" (failure {polled.failures})" if polled.failures else ""
                print(f"{view.number}: {polled.error}{failures}")
                return
            _print_change(view.number, polled.change, polled.queued)

        async with JapanPostClient(client_settings) as client:
            try:
                await poll_claimed(
                    store,
                    client,
                    notifier_for(settings),
                    mine,
                    owner=owner,
                    policy=settings.polling,
                    clock=utcnow,
                    rng=random.Random(),
                    stats=CycleStats(),
                    list_fallback=True,
                    report=report,
                )
            except BaseException:
                # Handed back unpolled, still due when they were: an interrupted run (Ctrl-C, a
                # database error) leaves nothing leased to a process that is gone.
                for view in mine:
                    if view.id not in done:
                        await store.release(view.id, owner=owner, next_poll_at=view.next_poll_at or now)
                raise
        return worst

    return await _with_store(settings, action)


async def _poll_now(args: argparse.Namespace, numbers: list[str] | None) -> int:
    """Mark numbers due: the running daemon polls them at its next tick, at its own pace."""
    settings = _settings(args)

    async def action(store: Store) -> int:
        marked = await store.mark_due(numbers, now=utcnow())
        missing = sorted(set(numbers or ()) - set(marked))
        for number in missing:
            print(
                f"notifier poll: {number} is not watched (add it with {hints.command('watch ' + number)} "
                "or to the configuration's watchlist)",
                file=sys.stderr,
            )
        print(
            f"{len(marked)} number(s) due now; the running daemon polls them at its next tick "
            f"(every {settings.poll_tick:g}s), at its usual pace"
        )
        return EXIT_FAILURE if missing else EXIT_OK

    return await _with_store(settings, action)


def cmd_poll(args: argparse.Namespace) -> int:
    if args.all and not args.now:
        print("notifier poll: --all goes with --now (poll --now --all)", file=sys.stderr)
        return EXIT_USAGE
    if args.all and args.numbers:
        print("notifier poll: give NUMBERs or --all, not both", file=sys.stderr)
        return EXIT_USAGE
    if not args.all and not args.numbers:
        print("notifier poll: give at least one NUMBER (or --now --all)", file=sys.stderr)
        return EXIT_USAGE
    numbers, problems = [], []
    for raw in args.numbers:
        try:
            numbers.append(parse_number(raw).value)
        except InvalidNumberError as exc:
            problems.append(str(exc))
    if problems:
        print("\n".join(f"notifier poll: {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    if args.now:
        return _run(_poll_now(args, None if args.all else numbers))
    return _run(_poll(args, numbers))


# --- status / history / alerts --------------------------------------------------------


def _status_row(view: ShipmentView, shown: Shown = (None, None)) -> dict[str, object]:
    return {
        "number": view.number,
        "incarnation": view.incarnation,
        "label": view.label,
        "stage": str(view.stage),
        "stage_entered_at": view.stage_entered_at.isoformat() if view.stage_entered_at else None,
        "last_event": view.last_event_time,
        "last_polled_at": view.last_polled_at.isoformat() if view.last_polled_at else None,
        # An unwatched shipment is never polled, whatever its row still holds.
        "next_poll_at": view.next_poll_at.isoformat() if view.next_poll_at and view.active else None,
        "consecutive_failures": view.consecutive_failures,
        "last_error": view.last_error,
        "open_alerts": view.open_alerts,
        "active": view.active,
        # Where the watch came from: config, cli, api, shopify, woocommerce or import (a reload
        # unwatches only the configuration's).
        "watched_by": view.watched_by,
        **window_fields(shown),
    }


async def _instances(store: Store, settings: Settings, as_json: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    state = await coordination_state(store.engine, now=now, stale_after=lease_time(settings.poll_tick))
    if as_json:
        print(json.dumps(state_json(state, now=now), ensure_ascii=False, indent=2))
    else:
        print("\n".join(describe(state, now=now)))


async def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def action(store: Store) -> int:
        if args.instances:
            await _instances(store, settings, args.json)
            return EXIT_OK
        views = await store.shipments(include_inactive=args.all)
        windows = await windows_now(store, settings, views)
        if args.json:
            rows_json = [_status_row(v, windows[v.id]) for v in views]
            print(json.dumps(rows_json, ensure_ascii=False, indent=2))
            return EXIT_OK
        if not views:
            print(f"no shipments watched yet (add one with {hints.command('poll NUMBER')})")
            return EXIT_OK
        rows = [
            [
                v.number + ("" if v.active else " (off)"),
                columns.truncate(v.label, 30),
                str(v.stage),
                v.last_event_time or "-",
                _when(v.last_polled_at) + (f" !{v.consecutive_failures}" if v.consecutive_failures else ""),
                _when(v.next_poll_at) if v.active else "never (off)",
                window_cell(windows[v.id][0]),
                str(v.open_alerts or ""),
                v.watched_by,
            ]
            for v in views
        ]
        headers = [
            "NUMBER",
            "LABEL",
            "STAGE",
            "LAST EVENT",
            "LAST POLLED",
            "NEXT POLL",
            "EXPECTED",
            "ALERTS",
            "FROM",
        ]
        print(columns.table(rows, headers))
        if any(w is not None and w.basis != "lane" for w, _ in windows.values()):
            print(PRIOR_NOTE)
        if store.dialect == "postgresql":
            print()
            await _instances(store, settings, False)
        return EXIT_OK

    return await _with_store(settings, action)


async def _history(args: argparse.Namespace) -> int:
    number = parse_number(args.number).value
    settings = _settings(args)

    async def action(store: Store) -> int:
        view = await store.get(number)
        if view is None:
            print(f"notifier history: {number} is not in the database", file=sys.stderr)
            return EXIT_FAILURE
        events = await store.history(view.id)
        shown = (await windows_now(store, settings, [view]))[view.id]
        if args.json:
            found = history_json(view, events, await store.contacts(view.id), shown)
            print(json.dumps(found, ensure_ascii=False, indent=2))
            return EXIT_OK
        info = stage_info(view.stage)
        meaning = info.meaning_ja if args.locale == "ja" else info.meaning_en
        print(f"{view.number}  {view.label}  {view.item_type or ''}".rstrip())
        print(f"stage {view.stage}: {meaning}")
        window, withheld = shown
        if window is not None:
            dates = window_cell(window, locale=args.locale).removesuffix(" *")
            print(
                f"expected: {dates} ({'this lane' if window.basis == 'lane' else 'Japan Post published times'})"
            )
        elif withheld not in ("delivered", "not_in_transit", "disabled"):
            print(f"expected: no window ({withheld})")
        if not events:
            print("no events yet")
        else:
            rows = [
                [
                    event.when.iso_local(),
                    str(event.stage),
                    event.status,
                    " / ".join(p for p in (event.office, event.region, event.postal_code) if p),
                ]
                for event in events
            ]
            table = columns.table(rows, ["WHEN", "STAGE", "STATUS", "PLACE"])
            print("\n".join(f"  {line}" for line in table.splitlines()))
        for office in await store.contacts(view.id):
            print(f"  contact: {office.role}: {office.office} {office.phone}".rstrip())
        return EXIT_OK

    return await _with_store(settings, action)


async def _alerts(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        if args.ack or args.ack_all:
            count = await store.acknowledge(None if args.ack_all else args.ack, now=utcnow())
            print(f"acknowledged {count} alert(s)")
            return EXIT_OK
        alerts = await store.alerts(include_acknowledged=args.all)
        if args.json:
            print(
                json.dumps(
                    [
                        a.as_json()
                        | {"acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None}
                        for a in alerts
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return EXIT_OK
        if not alerts:
            print("no open alerts")
            return EXIT_OK
        rows = [
            [str(a.id), a.kind, a.subject or "-", str(a.count), _when(a.last_seen_at), a.message]
            for a in alerts
        ]
        headers = ["ID", "KIND", "SUBJECT", "COUNT", "LAST SEEN", "MESSAGE"]
        # The message is what the operator acts on: wrapped to the terminal, never cut.
        print(columns.table(rows, headers, right=frozenset({0, 3}), max_width=columns.terminal_columns()))
        return EXIT_OK

    return await _with_store(_settings(args), action)


def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status(args))


def cmd_history(args: argparse.Namespace) -> int:
    from notifier.cli.history import cmd_history_file

    handled = cmd_history_file(args)
    return _run(_history(args)) if handled is None else handled


def cmd_alerts(args: argparse.Namespace) -> int:
    return _run(_alerts(args))


# --- wiring ---------------------------------------------------------------------------


def database_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _database_options(parent)
    return parent


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=f"config file (default: ${CONFIG_ENV})")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"database URL, overriding the config (default: ${DATABASE_URL_ENV}, else sqlite:///notifier.db)",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=parents)

    db = command("db", "database schema: upgrade, current, downgrade, backup, reset")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser(
        "upgrade", parents=parents, help="migrate the schema to the newest revision (or --revision)"
    )
    up.add_argument("--revision", default="head")
    _database_options(up)
    current = db_sub.add_parser(
        "current", parents=parents, help="show the schema revision; exit 3 when not at head"
    )
    _database_options(current)
    backup = db_sub.add_parser(
        "backup", parents=parents, help="copy a live SQLite database to DEST (online backup API)"
    )
    backup.add_argument("destination", metavar="DEST")
    backup.add_argument(
        "--allow-open-folder",
        action="store_true",
        help="write it even into a folder other users can list or enter (the copy itself stays private)",
    )
    _database_options(backup)
    reset = db_sub.add_parser(
        "reset",
        parents=parents,
        help="start over: drop notifier's tables and create them afresh (needs --yes; "
        "a database with data also needs --backup PATH or --discard-data)",
    )
    reset.add_argument("--yes", action="store_true", help="really delete everything notifier stored")
    reset.add_argument(
        "--backup",
        metavar="PATH",
        help="first save a copy here (SQLite: the file, with its mode; PostgreSQL: pg_dump -Fc, mode 0600)",
    )
    reset.add_argument(
        "--discard-data", action="store_true", help="reset a database that holds data without a backup"
    )
    reset.add_argument(
        "--allow-open-folder", action="store_true", help="let --backup write into a folder others can open"
    )
    _database_options(reset)
    down = db_sub.add_parser(
        "downgrade", parents=parents, help="migrate the schema down to REVISION (back up first)"
    )
    down.add_argument("revision", metavar="REVISION")
    _database_options(down)
    db.set_defaults(handler=cmd_db)

    poll = command(
        "poll",
        "watch numbers and poll them once here, recording the result; with --now, have the "
        "running daemon poll them at its next tick instead",
    )
    poll.add_argument("numbers", nargs="*", metavar="NUMBER")
    poll.add_argument("--label", help="label to store with the shipment(s)")
    poll.add_argument(
        "--now",
        action="store_true",
        help="mark the numbers due now: the running daemon polls them at its next tick (fetches nothing here)",
    )
    poll.add_argument("--all", action="store_true", help="with --now: every watched number")
    _database_options(poll)
    poll.set_defaults(handler=cmd_poll)

    status = command("status", "table of watched shipments")
    status.add_argument("--json", action="store_true")
    status.add_argument("--all", action="store_true", help="include shipments no longer watched")
    status.add_argument(
        "--instances",
        action="store_true",
        help="the instances on this database, who owns the daily work, the shared Japan Post budget",
    )
    _database_options(status)
    status.set_defaults(handler=cmd_status)

    from notifier.cli.history import cmd_backtest, since_date
    from notifier.core.eta import Calibration

    history = command(
        "history",
        "full stored history of one number; `history export [--since DATE] > FILE.jsonl` and "
        "`history import FILE.jsonl` carry past shipments between databases",
    )
    history.add_argument(
        "number", metavar="NUMBER|export|import", help="a tracking number, or export or import"
    )
    history.add_argument(
        "file", nargs="?", metavar="FILE", help="import: the history file (one shipment per line)"
    )
    history.add_argument(
        "--locale", choices=["en", "ja"], default="en", help="NUMBER: language of the meaning"
    )
    history.add_argument(
        "--since",
        type=since_date,
        metavar="DATE",
        help="export: only shipments first watched on or after DATE (YYYY-MM-DD, in Japan)",
    )
    history.add_argument("--json", action="store_true", help="NUMBER: print the history as JSON")
    _database_options(history)
    history.set_defaults(handler=cmd_history)

    backtest = command(
        "backtest", "replay the stored history and report how good the delivery windows would have been"
    )
    backtest.add_argument(
        "--since", type=since_date, metavar="DATE", help="only checkpoints on or after DATE (YYYY-MM-DD)"
    )
    backtest.add_argument(
        "--calibration",
        choices=[c.value for c in Calibration],
        default=Calibration.BALANCED.value,
        help="how wide the windows are: which percentiles of the remaining time (default: balanced)",
    )
    backtest.add_argument("--json", action="store_true", help="print the checkpoints and the summary as JSON")
    _database_options(backtest)
    backtest.set_defaults(handler=cmd_backtest)

    alerts = command("alerts", "list or acknowledge operator alerts")
    alerts.add_argument("--all", action="store_true", help="include acknowledged alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.add_argument("--ack", type=int, nargs="+", metavar="ID", help="acknowledge these alerts")
    alerts.add_argument("--ack-all", action="store_true", help="acknowledge every open alert")
    _database_options(alerts)
    alerts.set_defaults(handler=cmd_alerts)
