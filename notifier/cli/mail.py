"""Commands about people and mail: `watch`, `outbox`, `preview`, `test-email`, `unsubscribe`, `resubscribe`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import json
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import SQLAlchemyError

from notifier import hints
from notifier.cli.db import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, _settings, utcnow
from notifier.config import Settings, load_settings, sending_smtp
from notifier.core.compose import draft, unsubscribe_link
from notifier.core.messages import MessageContext, Template
from notifier.core.mime import AddressError, SendError, validate_address
from notifier.core.numbers import parse_number
from notifier.core.render import Renderer
from notifier.core.sending import expected_send, goes_note, recorded_pause
from notifier.core.stages import Stage
from notifier.core.views import WATCHED_BY_CONFIG, OutboxState
from notifier.errors import InvalidNumberError
from notifier.net.mailer import transport_for
from notifier.pipeline.lanes import LaneCache
from notifier.pipeline.outbox import drain
from notifier.pipeline.poll import queue_operator_digest, queue_timed
from notifier.pipeline.wiring import mail_settings, notifier_for, outbox_policy, owner_name
from notifier.store import Store
from notifier.store.database import DatabaseError, sqlite_path
from notifier.testing.samples import sample_context


async def _open(settings: Settings) -> Store:
    return await Store.open(settings.database.url)


# --- watch --------------------------------------------------------------------------------


def _usage_errors_to_exit_2(name: str, work: Coroutine[Any, Any, int]) -> int:
    """Run a command; numbers and addresses the user typed wrong are usage errors (exit 2)."""
    try:
        return asyncio.run(work)
    except (InvalidNumberError, AddressError) as exc:
        print(f"notifier {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _watch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    number = parse_number(args.number)
    subscribers = [validate_address(a) for a in args.subscriber or []]
    if args.time_zone:
        try:
            ZoneInfo(args.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise AddressError(
                f"--time-zone {args.time_zone!r} is not an IANA time zone (like Asia/Tokyo)"
            ) from None
    if args.destination and not re.fullmatch(r"[A-Za-z]{2}", args.destination):
        raise AddressError(f"--destination {args.destination!r} is not a two-letter country code (like US)")
    listed = next((w for w in settings.watches if w.number == number.value), None)
    if listed is not None:
        # The configuration decides its numbers' labels and subscribers: a change made here
        # would be undone at the daemon's next reload.
        print(
            f"notifier watch: {number.value} is in the configuration's watchlist ({listed.source}); "
            "edit that file and reload the daemon (systemctl reload notifier) instead",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = await _open(settings)
    try:
        now = utcnow()
        known = await store.get(number.value)
        if known is not None and known.active and known.watched_by == WATCHED_BY_CONFIG:
            print(
                f"notifier watch: {number.value} is watched by the daemon's configuration; "
                "edit its watchlist (the [[watch]] tables of its config and watch files) instead",
                file=sys.stderr,
            )
            return EXIT_USAGE
        view = await store.watch(
            number,
            now=now,
            label=args.label or "",
            destination=args.destination.upper() if args.destination else None,
            tags=frozenset(args.tag) if args.tag else None,
        )
        for address in subscribers:
            await store.subscribe(view.id, address, locale=args.locale, now=now, time_zone=args.time_zone)
        print(
            f"watching {view.number} ({view.label or 'no label'}); subscribers: {', '.join(subscribers) or 'none'}"
        )
        return EXIT_OK
    finally:
        await store.close()


async def _unwatch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    number = parse_number(args.number).value
    listed = next((w for w in settings.watches if w.number == number), None)
    if listed is not None:
        # The next reload would watch it again: the watchlist is where it stops.
        print(
            f"notifier unwatch: {number} is in the configuration's watchlist ({listed.source}); "
            "remove it there and reload the daemon (systemctl reload notifier)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = await _open(settings)
    try:
        if not await store.unwatch(number):
            print(f"notifier unwatch: {number} is not in the database", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{number} is no longer polled; its history is kept (notifier history {number})")
        return EXIT_OK
    finally:
        await store.close()


def cmd_unwatch(args: argparse.Namespace) -> int:
    return _usage_errors_to_exit_2("unwatch", _unwatch(args))


def cmd_watch(args: argparse.Namespace) -> int:
    return _usage_errors_to_exit_2("watch", _watch(args))


# --- import -------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from notifier.config.importer import run_import

    return run_import(Path(args.file), Path(args.output) if args.output else None, args.config, args.preset)


# --- outbox -------------------------------------------------------------------------------


async def _outbox(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = await _open(settings)
    try:
        action = args.outbox_command or "list"
        if action == "send":
            notifier = notifier_for(settings)
            notifier.lanes = LaneCache(store)
            from notifier.net.japanpost import ClientSettings, JapanPostClient

            client_settings = ClientSettings(
                base_url=settings.japanpost.base_url, request_interval=settings.japanpost.request_interval
            )
            async with JapanPostClient(client_settings) as client:
                timed = await queue_timed(store, notifier, now=utcnow(), client=client)
            if settings.notifications.operator:
                timed += await queue_operator_digest(
                    store, notifier, settings.notifications.operator, now=utcnow()
                )
            transport = transport_for(sending_smtp(settings), settings.notifications.outbox_dir)
            async with transport:
                result = await drain(
                    store, transport, owner=owner_name(), policy=outbox_policy(settings), clock=utcnow
                )
            where = "SMTP" if settings.smtp else f"files in {settings.notifications.outbox_dir}"
            print(
                f"queued {timed} timed message(s); sent {result.sent} via {where}, retrying {result.retried}, "
                f"failed {result.failed}, deferred {result.deferred} (quiet hours), suppressed {result.suppressed}"
            )
            later = await _waiting_note(store, settings)
            if later:
                print(later)
            if result.pause is not None:
                print(
                    f"sending paused, nothing more tried ({result.held} message(s) held, no attempts "
                    f"counted): {result.pause.reason}; the next `outbox send` (or the daemon, after "
                    f"{result.pause.until:%H:%M}Z) tries again",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            return EXIT_FAILURE if result.failed else EXIT_OK
        if action == "retry":
            failed = await store.outbox(states=[OutboxState.FAILED], limit=1_000_000)
            wanted = [i for i in failed if not args.ids or i.id in args.ids]
            # A message that could not be built has no bytes: queueing it again would send nothing.
            unbuilt = [i.id for i in wanted if not i.raw]
            count = await store.retry_failed([i.id for i in wanted if i.raw], now=utcnow())
            print(f"{count} failed message(s) queued again (same bytes, same Message-ID)")
            if unbuilt:
                print(
                    f"not queued: {', '.join(map(str, unbuilt))}: never built (see {hints.command('outbox show ID')}); "
                    "fix the template or data, the next change of stage builds a new message",
                    file=sys.stderr,
                )
            return EXIT_OK
        if action == "show":
            item = await store.outbox_item(args.id)
            if item is None:
                print(f"notifier outbox show: no message {args.id}", file=sys.stderr)
                return EXIT_FAILURE
            if args.raw:
                sys.stdout.buffer.write(item.raw)
                return EXIT_OK
            message = email.message_from_bytes(item.raw, policy=email.policy.default)
            print(f"id {item.id}  state {item.state}  attempts {item.attempts}  rule {item.rule}")
            print(f"to {item.recipient}  number {item.number}  created {item.created_at:%Y-%m-%d %H:%M}Z")
            if item.last_error:
                print(f"last error: {item.last_error}")
            if not item.raw:
                print(f"Message-ID: {item.message_id}\n\nnever built: there is no message to show")
                return EXIT_OK
            print(f"Message-ID: {message['Message-ID']}\nSubject: {message['Subject']}\n")
            body = message.get_body(preferencelist=("plain",))
            print(body.get_content() if body is not None else "")
            return EXIT_OK
        states = [OutboxState(s) for s in args.state] if args.state else None
        items = await store.outbox(states=states, limit=args.limit)
        now, policy = utcnow(), outbox_policy(settings)
        # The pause lives in the sending process; its alert and the last send say it here.
        pause = recorded_pause(await store.alerts(), await store.last_sent_at())
        goes = {i.id: expected_send(i, policy, now, pause) for i in items}
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": i.id,
                            "state": str(i.state),
                            "recipient": i.recipient,
                            "number": i.number,
                            "rule": i.rule,
                            "subject": i.subject,
                            "attempts": i.attempts,
                            "message_id": i.message_id,
                            "last_error": i.last_error,
                            "created_at": i.created_at.isoformat(),
                            "sent_at": i.sent_at.isoformat() if i.sent_at else None,
                            "goes_at": _iso(goes[i.id][0]),
                            "waits_for": goes[i.id][1] or None,
                        }
                        for i in items
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return EXIT_OK
        depth = await store.outbox_depth()
        print("  ".join(f"{state}: {depth.get(str(state), 0)}" for state in OutboxState))
        for i in items:
            error = f"  ({i.last_error[:60]})" if i.last_error and i.state is not OutboxState.SENT else ""
            print(
                f"{i.id:>6}  {i.state:<10} {i.attempts:>2}x  {i.recipient:<30} {i.number:<14} {i.rule}{error}"
                f"{goes_note(*goes[i.id], now, zone=policy.zone_of(i.time_zone))}"
            )
        return EXIT_OK
    finally:
        await store.close()


async def _waiting_note(store: Store, settings: Settings) -> str:
    """What `outbox send` left waiting on purpose (the settle window, quiet hours, a retry's
    back-off), so that "sent 0" after a poll does not read as "nothing to send"."""
    now = utcnow()
    policy = outbox_policy(settings)
    waiting: dict[str, list[dt.datetime]] = {}
    for item in await store.outbox(states=[OutboxState.PENDING], limit=1_000_000):
        at, waits_for = expected_send(item, policy, now)
        if at is not None and at > now:
            waiting.setdefault(waits_for or "its time", []).append(at)
    if not waiting:
        return ""
    parts = [
        f"{len(times)} for the {why} (first at {min(times):%Y-%m-%d %H:%M}Z)"
        for why, times in sorted(waiting.items())
    ]
    return f"waiting: {'; '.join(parts)}; the daemon sends them then ({hints.command('outbox')} lists them)"


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def cmd_outbox(args: argparse.Namespace) -> int:
    return asyncio.run(_outbox(args))


# --- preview and test-email ---------------------------------------------------------------


def _as_configured(context: MessageContext, settings: Settings, recipient: str) -> MessageContext:
    """The sample shipment, but from this shop: its name, reply address and unsubscribe link."""
    mail = mail_settings(settings)
    return dataclasses.replace(
        context,
        shop_name=mail.shop_name,
        shop_phone=mail.shop_phone,
        reply_to=mail.reply_to or "",
        unsubscribe_url=unsubscribe_link(mail, recipient, context.number),
    )


def _template_of(args: argparse.Namespace) -> Template:
    if args.template:
        return Template(args.template)
    if args.stage in {t.value for t in Template}:
        return Template(args.stage)
    raise SystemExit(f"notifier preview: no message for stage {args.stage!r}; use --template")


def cmd_preview(args: argparse.Namespace) -> int:
    from notifier.testing.previews import preview_context, without_signed_links

    settings = load_settings(args.config)
    renderer = Renderer(settings.notifications.templates)
    mail = mail_settings(settings)
    # The message as the daemon would make it for this shop, from the simulator's pages; the
    # links point where the configured Japan Post base URL does. With [http], the customer's
    # signed links are shown as text: the sample parcel is not in the database.
    context = without_signed_links(preview_context(_template_of(args), args.locale, mail, renderer), mail)
    rendered = renderer.render(context)
    if args.html:
        Path(args.html).write_text(rendered.html, encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    print(f"Subject: {rendered.subject}\n")
    print(rendered.text, end="")
    return EXIT_OK


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database that does not exist yet (opening it would create it)."""
    path = sqlite_path(url)
    return str(path) if path is not None and not path.exists() else None


async def _suppressed(settings: Settings, address: str) -> bool | None:
    """Whether `address` is on the suppression list; None if the database cannot be asked."""
    missing = _missing_sqlite_file(settings.database.url)
    if missing is not None:
        # With no database nothing is suppressed; opening it would leave an empty file behind.
        print(
            f"notifier test-email: no database at {missing} yet; suppression list not checked",
            file=sys.stderr,
        )
        return None
    try:
        store = await _open(settings)
    except (DatabaseError, SQLAlchemyError, OSError) as exc:
        print(f"notifier test-email: suppression list not checked: {exc}", file=sys.stderr)
        return None
    try:
        return bool(await store.suppressed_among([address]))
    finally:
        await store.close()


async def _test_email(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    recipient = validate_address(args.address)
    if await _suppressed(settings, recipient):
        print(
            f"notifier test-email: nothing sent: {recipient} is unsubscribed (on the suppression list, "
            f"so the daemon sends it nothing either); {hints.command('resubscribe ' + recipient)} lifts that",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    mail = mail_settings(settings)
    context = _as_configured(sample_context(Template.TEST, args.locale), settings, recipient)
    now = utcnow()
    message = draft(
        context,
        renderer=Renderer(settings.notifications.templates),
        mail=mail,
        recipient=recipient,
        dedup_key=f"test:{now.isoformat()}",
        rule="test",
        now=now,
    )
    transport = transport_for(sending_smtp(settings), settings.notifications.outbox_dir)
    try:
        async with transport:
            reply = await transport.send(message.raw, sender=mail.sender, recipients=[recipient])
    except SendError as exc:
        print(f"notifier test-email: not sent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    where = (
        f"{settings.smtp.host}:{settings.smtp.port}"
        if settings.smtp
        else str(settings.notifications.outbox_dir)
    )
    print(f"sent {message.message_id} to {recipient} via {where}: {reply}")
    return EXIT_OK


def cmd_test_email(args: argparse.Namespace) -> int:
    return _usage_errors_to_exit_2("test-email", _test_email(args))


# --- suppression list ---------------------------------------------------------------------


async def _suppression(args: argparse.Namespace, add: bool) -> int:
    settings = _settings(args)
    address = validate_address(args.address)
    store = await _open(settings)
    try:
        if add:
            changed = await store.suppress(address, now=utcnow())
            print(
                f"{address}: {'unsubscribed' if changed else 'was already unsubscribed'}; nothing more is sent to it"
            )
        else:
            changed = await store.unsuppress(address)
            print(f"{address}: {'resubscribed' if changed else 'was not unsubscribed'}")
        return EXIT_OK
    finally:
        await store.close()


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    return _usage_errors_to_exit_2("unsubscribe", _suppression(args, add=True))


def cmd_resubscribe(args: argparse.Namespace) -> int:
    return _usage_errors_to_exit_2("resubscribe", _suppression(args, add=False))


# --- wiring -------------------------------------------------------------------------------


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    database_options: argparse.ArgumentParser,
) -> None:
    both = [*parents, database_options]

    watch = sub.add_parser("watch", parents=both, help="watch a number and subscribe people to it")
    watch.add_argument("number", metavar="NUMBER")
    watch.add_argument("--label", help="shown in messages, e.g. the order number")
    watch.add_argument("--subscriber", action="append", metavar="EMAIL", help="repeat for several people")
    watch.add_argument("--locale", choices=["en", "ja"], default="en")
    watch.add_argument("--time-zone", metavar="ZONE", help="the subscribers' IANA zone, for quiet hours")
    watch.add_argument("--destination", metavar="CC", help="destination country code, for rules")
    watch.add_argument("--tag", action="append", metavar="TAG", help="tags for rules; repeatable")
    watch.set_defaults(handler=cmd_watch)

    importer = sub.add_parser(
        "import", parents=parents, help="turn a CSV of orders into a watch file (all rows checked first)"
    )
    importer.add_argument("file", metavar="ORDERS.csv")
    importer.add_argument(
        "--preset",
        choices=["auto", "shopify", "plain"],
        default="auto",
        help="the file's layout: shopify (Shopify's orders export, one row per line item), plain "
        "(one row per parcel, our column names); default auto: shopify when the header is that export's",
    )
    importer.add_argument(
        "--output",
        metavar="FILE",
        help="write here (e.g. watch.d/orders.toml, in [polling] watch_files); default: stdout",
    )
    importer.add_argument(
        "--config",
        metavar="PATH",
        help="check for numbers already watched in this config and its watch files (default: $NOTIFIER_CONFIG)",
    )
    importer.set_defaults(handler=cmd_import)

    unwatch = sub.add_parser("unwatch", parents=both, help="stop polling a number (its history stays)")
    unwatch.add_argument("number", metavar="NUMBER")
    unwatch.set_defaults(handler=cmd_unwatch)

    outbox = sub.add_parser("outbox", parents=both, help="list, show, retry or send queued messages")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", metavar="ACTION")
    outbox.add_argument(
        "--state", action="append", choices=[s.value for s in OutboxState], help="filter the list"
    )
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--json", action="store_true")
    outbox_sub.add_parser("list", parents=both, help="recent messages (the default)")
    show = outbox_sub.add_parser("show", parents=both, help="one message, decoded (or --raw bytes)")
    show.add_argument("id", type=int)
    show.add_argument("--raw", action="store_true")
    retry = outbox_sub.add_parser("retry", parents=both, help="queue failed messages again")
    retry.add_argument("ids", type=int, nargs="*", metavar="ID", help="default: every failed message")
    outbox_sub.add_parser("send", parents=both, help="queue timed messages, then send everything due now")
    outbox.set_defaults(handler=cmd_outbox, state=None, limit=50, json=False)

    preview = sub.add_parser(
        "preview",
        parents=parents,
        help="render a message as the daemon makes it, from the simulator's sample journeys",
    )
    which = preview.add_mutually_exclusive_group(required=True)
    which.add_argument("--stage", choices=[s.value for s in Stage], help="the stage's message")
    which.add_argument("--template", choices=[t.value for t in Template], help="any message by name")
    preview.add_argument("--locale", choices=["en", "ja"], default="en")
    preview.add_argument("--html", metavar="FILE", help="also write the HTML version to FILE")
    preview.add_argument(
        "--config",
        metavar="PATH",
        help="config file, for [notifications] templates (default: $NOTIFIER_CONFIG)",
    )
    preview.set_defaults(handler=cmd_preview)

    test = sub.add_parser(
        "test-email", parents=parents, help="send a real test message through the configured transport"
    )
    test.add_argument("address", metavar="ADDRESS")
    test.add_argument("--locale", choices=["en", "ja"], default="en")
    test.add_argument(
        "--config", metavar="PATH", help="config file: [smtp], [notifications] (default: $NOTIFIER_CONFIG)"
    )
    test.set_defaults(handler=cmd_test_email)

    for name, handler, text in (
        ("unsubscribe", cmd_unsubscribe, "stop all mail to ADDRESS (checked at send time)"),
        ("resubscribe", cmd_resubscribe, "allow mail to ADDRESS again"),
    ):
        command = sub.add_parser(name, parents=both, help=text)
        command.add_argument("address", metavar="ADDRESS")
        command.set_defaults(handler=handler)
