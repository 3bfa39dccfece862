"""Japanese register: the reviewer's list of every sentence a customer can read, and the forbidden forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.core.render import templates_root
from notifier.core.stages import ALL_STAGE_INFO
from notifier.testing.wording_review import FORBIDDEN, REVIEW_FILE, collect, review_document, violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_sentence_list_is_current() -> None:
    committed = (ROOT / REVIEW_FILE).read_text(encoding="utf-8")
    assert committed == review_document(), (
        f"{REVIEW_FILE} is out of date; regenerate it as its first lines say"
    )


def test_no_sentence_a_customer_can_read_takes_a_forbidden_form() -> None:
    bad = [f"{heading}: {s} -> {v}" for heading, found in collect() for s in found if (v := violations(s))]
    assert bad == []


def test_stage_meanings_keep_the_register() -> None:
    bad = {info.stage.value: violations(info.meaning_ja) for info in ALL_STAGE_INFO.values()}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize("path", sorted((templates_root() / "ja").glob("*.j2")), ids=lambda p: p.name)
def test_japanese_template_sources_keep_the_register(path: Path) -> None:
    # Every branch, rendered in the samples or not. Comments are for translators and tags are
    # code; the pages shared by both languages are checked as rendered, above.
    source = re.sub(r"(?s)\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", "", path.read_text(encoding="utf-8"))
    assert violations(source) == []


@pytest.mark.parametrize(
    "bad",
    [
        "差出人への返送が終わったため、荷物はお届けされません。",
        "関税の支払いや書類の提出をお願いされることがあります。",
        "ご不在のため荷物は持ち帰られました。",
        "お荷物はいったん郵便局に持ち戻られました。",
        "荷物は郵便局で保管されています。",
        "これは当店の荷物だ。",
        "配達を担当する郵便局：BROOKLYN NY, +1 718-555-0143",
        "引受：渋谷郵便局, 03-0000-0150",
    ],
)
def test_the_known_bad_forms_are_caught(bad: str) -> None:
    assert violations(bad)


@pytest.mark.parametrize(
    "good",
    [
        "当店への返送が完了したため、お荷物はお届けできません。",
        "関税のお支払いや書類のご提出をお願いする場合がございます。",
        "ご不在のため、お荷物は郵便局への持ち戻りとなりました。",
        "宛先の確認であることが多くあります。",
        "お手荷物",
        "配達を担当する郵便局：BROOKLYN NY、+1 718-555-0143",
    ],
)
def test_good_forms_pass(good: str) -> None:
    assert violations(good) == []


def test_every_forbidden_form_gives_its_reason() -> None:
    assert all(f.reason for f in FORBIDDEN)
    document = review_document()
    assert all(f.reason in document for f in FORBIDDEN)
