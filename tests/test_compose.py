"""Building messages to queue: one that cannot be built becomes a failed draft, never an exception."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from notifier.core.compose import MailSettings, draft_or_failure
from notifier.core.messages import Template
from notifier.core.render import Renderer
from notifier.core.views import OutboxDraft, OutboxState
from notifier.store import Store
from notifier.testing.samples import sample_context

T0 = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)
MAIL = MailSettings(sender="Sakura Stationery <shop@sakura.example>", shop_name="Sakura Stationery")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


def build(renderer: Renderer, n: int, locale: str = "ja", **changes: Any) -> OutboxDraft:
    context = dataclasses.replace(sample_context(Template.DELIVERED, locale), **changes)
    return draft_or_failure(
        context,
        renderer=renderer,
        mail=MAIL,
        recipient=f"c{n}@example.com",
        dedup_key=f"k:{n}",
        rule="delivered",
        now=T0,
    )


def test_a_template_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "delivered.txt.j2").write_text("こんにちは\n{% if %}\n", encoding="utf-8")
    renderer = Renderer(tmp_path)
    failed = build(renderer, 1)
    assert failed.error is not None
    assert failed.error.startswith(f"{tmp_path / 'ja' / 'delivered.txt.j2'}, line 2: TemplateSyntaxError")
    assert (failed.raw, failed.subject, failed.locale, failed.template) == (b"", "", "ja", "delivered")
    assert failed.message_id.endswith("@sakura.example>")
    good = build(renderer, 2, locale="en")  # the packaged English template is untouched
    assert good.error is None
    assert good.raw


def test_hostile_data_fails_only_its_own_message() -> None:
    hostile = build(Renderer(), 1, unsubscribe_url="javascript:alert(1)")
    assert hostile.error is not None
    assert "MessageBuildError" in hostile.error
    assert "URI" in hostile.error
    assert build(Renderer(), 2).error is None


async def test_failed_drafts_are_stored_failed_with_one_alert(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "delivered.subject.j2").write_text("{{ no_such_field }}\n", encoding="utf-8")
    renderer = Renderer(tmp_path)
    drafts = [build(renderer, 1), build(renderer, 2), build(renderer, 3, locale="en")]
    assert [d.error is None for d in drafts] == [False, False, True]
    assert await store.enqueue(drafts, now=T0) == 3
    assert await store.enqueue(drafts, now=T0) == 0  # a replay adds nothing, and alerts nothing
    states = {i.recipient: (i.state, i.last_error) for i in await store.outbox()}
    assert states["c3@example.com"] == (OutboxState.PENDING, None)
    for recipient in ("c1@example.com", "c2@example.com"):
        state, error = states[recipient]
        assert state is OutboxState.FAILED
        assert "delivered.subject.j2, line 1: UndefinedError: 'no_such_field' is undefined" in (error or "")
    (alert,) = await store.alerts()
    assert (alert.kind, alert.subject, alert.count) == ("message_build_failed", "ja/delivered", 2)
    assert "c2@example.com" in alert.message


@pytest.mark.parametrize(("locale", "name"), [("en", "USPS"), ("ja", "USPS（米国郵便）")])
def test_a_parcel_waiting_abroad_gets_its_destination_posts_tracking_page(locale: str, name: str) -> None:
    from notifier.core.compose import context_for
    from notifier.core.rules import Notification, Recipient
    from notifier.core.stages import Stage
    from notifier.pipeline.poll import facts
    from tests.test_web_pages import CONTACTS, history, shipment

    events = history(Stage.RETENTION)
    notification = Notification(
        dedup_key="k",
        template=Template.RETENTION,
        rule="retention",
        stage=Stage.RETENTION,
        recipient=Recipient(subscription_id=1, email="c@example.com", locale=locale),
        event=events[-1],
    )
    abroad = context_for(notification, facts(shipment(Stage.RETENTION)), events, CONTACTS, MAIL)
    assert abroad.destination_post == name
    assert abroad.destination_post_url == "https://tools.usps.com/go/TrackConfirmAction?tLabels=EJ123456785JP"
    # A domestic number is Japan Post's alone: no destination post.
    home = context_for(
        notification, facts(shipment(Stage.RETENTION, number="123456789012")), events, CONTACTS, MAIL
    )
    assert home.destination_post_url == ""
