"""Tests for the stage vocabulary: every known Japan Post wording, directions, places, meanings."""

from __future__ import annotations

import itertools

import pytest

from notifier.core.stages import (
    ALL_STAGE_INFO,
    KNOWN_STATUSES,
    Stage,
    located_in_japan,
    map_status,
    normalise_status,
    origin_is_japan,
    stage_info,
)

# Typed out again from STATUSES.md tables A-D rather than imported, so a change to the table
# in the module has to be made here too.
EXPECTED: list[tuple[str, Stage]] = [
    # A. Acceptance and transit
    ("Posting/Collection", Stage.ACCEPTED),
    ("引受", Stage.ACCEPTED),
    ("En route", Stage.IN_TRANSIT),
    ("中継", Stage.IN_TRANSIT),
    ("通過", Stage.IN_TRANSIT),
    ("通過（車又は船輸送に変更）", Stage.IN_TRANSIT),
    ("発送", Stage.IN_TRANSIT),
    ("Arrival", Stage.AT_DELIVERY_OFFICE),
    ("到着", Stage.AT_DELIVERY_OFFICE),
    ("Processing at delivery Post Office", Stage.AT_DELIVERY_OFFICE),
    ("Arrival at delivery office", Stage.AT_DELIVERY_OFFICE),
    ("Item out of sorting centre", Stage.INLAND_TRANSIT),
    # B. International exchange and customs
    ("Arrival at outward office of exchange", Stage.OUTWARD_EXCHANGE),
    ("Dispatch from outward office of exchange", Stage.DEPARTED_ORIGIN),
    ("Departure from outward office of exchange", Stage.DEPARTED_ORIGIN),
    ("Dispatched from Exchange Office", Stage.DEPARTED_ORIGIN),
    ("Arrival at inward office of exchange", Stage.INWARD_EXCHANGE),
    ("Item held at inward Office of Exchange", Stage.INWARD_EXCHANGE),
    ("Item presented to import Customs", Stage.CUSTOMS_PRESENTED),
    ("Item presented to import customs", Stage.CUSTOMS_PRESENTED),
    ("In Customs", Stage.CUSTOMS_PRESENTED),
    ("Held by import Customs", Stage.CUSTOMS_PRESENTED),
    ("税関検査のため税関へ提示", Stage.CUSTOMS_PRESENTED),
    ("通関手続中", Stage.CUSTOMS_PRESENTED),
    ("輸入申告手続中", Stage.CUSTOMS_PRESENTED),
    ("税関保留", Stage.CUSTOMS_PRESENTED),
    ("税関から名宛人に照会中", Stage.CUSTOMS_PRESENTED),
    ("Item returned from import Customs", Stage.CUSTOMS_CLEARED),
    ("税関から受領", Stage.CUSTOMS_CLEARED),
    ("通関完了", Stage.CUSTOMS_CLEARED),
    ("Departure from inward office of exchange", Stage.INLAND_TRANSIT),
    ("Transported in bond", Stage.INLAND_TRANSIT),
    ("Arrived in bond", Stage.INLAND_TRANSIT),
    ("保税運送中", Stage.INLAND_TRANSIT),
    ("保税運送到着", Stage.INLAND_TRANSIT),
    # C. Delivery, attempts, holds
    ("Allocated to delivery staff", Stage.OUT_FOR_DELIVERY),
    ("Item out for physical delivery", Stage.OUT_FOR_DELIVERY),
    ("Out for delivery", Stage.OUT_FOR_DELIVERY),
    ("持ち出し中", Stage.OUT_FOR_DELIVERY),
    ("配達局から出発", Stage.OUT_FOR_DELIVERY),
    ("Final delivery", Stage.DELIVERED),
    ("Final delivery - Collected at counter", Stage.DELIVERED),
    ("お届け先にお届け済み", Stage.DELIVERED),
    ("お届け済み", Stage.DELIVERED),
    ("窓口でお渡し", Stage.DELIVERED),
    ("Item arrival at collection point for pick-up", Stage.READY_FOR_PICKUP),
    ("コンビニエンスストアに引渡", Stage.READY_FOR_PICKUP),
    ("コンビニエンスストア等に引渡", Stage.READY_FOR_PICKUP),
    ("最寄局・最寄店送付", Stage.READY_FOR_PICKUP),
    ("Absence. Attempted delivery.", Stage.ATTEMPTED_DELIVERY),
    ("Attempted Delivery", Stage.ATTEMPTED_DELIVERY),
    ("ご不在のため持ち戻り", Stage.ATTEMPTED_DELIVERY),
    ("A request for re-delivery was received.", Stage.REDELIVERY_REQUESTED),
    ("配達希望受付", Stage.REDELIVERY_REQUESTED),
    ("Retention", Stage.RETENTION),
    ("保管", Stage.RETENTION),
    ("保管中", Stage.RETENTION),
    ("Office closed. Retention.", Stage.RETENTION),
    ("お届け先休日等のため保管", Stage.RETENTION),
    ("お届け先 休日のため保管", Stage.RETENTION),
    ("お届け先休日のため保管", Stage.RETENTION),
    ("私書箱保管", Stage.RETENTION),
    ("保管期間延長受付", Stage.RETENTION),
    ("Investigation", Stage.INVESTIGATION),
    ("調査中", Stage.INVESTIGATION),
    ("転送", Stage.FORWARDED),
    # D. Returns
    ("Return to Sender", Stage.RETURNING),
    ("Returned to Sender", Stage.RETURNING),
    ("差出人に返送", Stage.RETURNING),
    ("あて所にたずねあたりません", Stage.RETURNING),
    ("返戻", Stage.RETURNING),
    ("差出人に返送済み", Stage.RETURNED),
    ("返送できません", Stage.RETURNED),
]

DIRECTIONAL = ["国際交換局に到着", "国際交換支店に到着", "国際交換局から発送", "国際交換支店から発送"]


def _full_width(text: str) -> str:
    """ASCII as a Japanese IME types it: U+FF01..U+FF5E, and U+3000 for the space."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _variants(wording: str) -> list[str]:
    """The same wording as sources and pages have been seen to mangle it."""
    with_period = wording if wording.endswith(".") else wording + "."
    without_period = wording[:-1] if wording.endswith(".") else wording
    return [
        wording,
        wording.upper(),
        wording.lower(),
        f"  {wording}\t\n",
        f"\u3000{wording}\u3000",
        wording.replace(" ", "  "),
        wording.replace(" ", "\u3000"),
        wording.replace(" ", "\u00a0"),
        with_period,
        without_period,
        f"{without_period} . ",
        _full_width(wording),
    ]


VARIANT_CASES = [
    pytest.param(variant, stage, id=f"{wording}-{index}")
    for wording, stage in EXPECTED
    for index, variant in enumerate(_variants(wording))
]


@pytest.mark.parametrize(("wording", "stage"), EXPECTED)
def test_every_documented_wording_maps_to_its_stage(wording: str, stage: Stage) -> None:
    assert map_status(wording) is stage


@pytest.mark.parametrize(("wording", "stage"), VARIANT_CASES)
def test_case_width_spacing_and_final_period_do_not_matter(wording: str, stage: Stage) -> None:
    assert map_status(wording) is stage


@pytest.mark.parametrize(("wording", "stage"), EXPECTED)
def test_mapping_does_not_depend_on_place_for_direction_free_wordings(wording: str, stage: Stage) -> None:
    for in_japan in (True, False, None):
        for origin_japan in (True, False, None):
            assert map_status(wording, in_japan=in_japan, origin_japan=origin_japan) is stage


def test_known_statuses_is_exactly_the_documented_table() -> None:
    expected = {normalise_status(wording): stage for wording, stage in EXPECTED}
    assert dict(KNOWN_STATUSES) == expected


def test_known_statuses_keys_are_normalised_and_exclude_directional_wordings() -> None:
    assert all(normalise_status(key) == key for key in KNOWN_STATUSES)
    for wording in DIRECTIONAL:
        assert normalise_status(wording) not in KNOWN_STATUSES
    assert Stage.UNKNOWN not in KNOWN_STATUSES.values()
    assert Stage.PENDING not in KNOWN_STATUSES.values()


def test_known_statuses_cannot_be_modified() -> None:
    with pytest.raises(TypeError):
        KNOWN_STATUSES["配達完了"] = Stage.DELIVERED  # type: ignore[index]


def test_half_width_katakana_and_parentheses_are_folded() -> None:
    assert map_status("ｺﾝﾋﾞﾆｴﾝｽｽﾄｱに引渡") is Stage.READY_FOR_PICKUP
    assert map_status("通過(車又は船輸送に変更)") is Stage.IN_TRANSIT
    assert map_status("ＦＩＮＡＬ　ＤＥＬＩＶＥＲＹ") is Stage.DELIVERED


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Absence. Attempted delivery.", "absence. attempted delivery"),
        ("absence. attempted delivery", "absence. attempted delivery"),
        ("  Final\u00a0\u00a0delivery \u3000", "final delivery"),
        ("Ｐｏｓｔｉｎｇ／Ｃｏｌｌｅｃｔｉｏｎ", "posting/collection"),
        ("通過（車又は船輸送に変更）", "通過(車又は船輸送に変更)"),
        ("お届け先\u3000休日のため保管", "お届け先 休日のため保管"),
        ("Retention .", "retention"),
        ("", ""),
    ],
)
def test_normalise_status(raw: str, normalised: str) -> None:
    assert normalise_status(raw) == normalised


def test_normalise_status_makes_the_two_absence_spellings_equal() -> None:
    assert normalise_status("Absence. Attempted delivery.") == normalise_status("absence. attempted delivery")


@pytest.mark.parametrize(
    "text",
    [
        "配達完了",  # Yamato's wording, not Japan Post's
        "",
        "   ",
        "Delivered",
        "Final delivery attempt",  # a known status followed by more words is not that status
        "Final",
        "保管期間経過",  # contains 保管 but means the holding period ran out
        "中継中",
        "Retention (until 10/12)",
        "** Your item was not found. Confirm your item number and ask at your local office.",
        "＊＊ お問い合わせ番号が見つかりません。",
        "国際交換局",
    ],
)
def test_unknown_text_stays_unknown(text: str) -> None:
    for in_japan in (True, False, None):
        assert map_status(text, in_japan=in_japan) is Stage.UNKNOWN


ARRIVALS = ["国際交換局に到着", "国際交換支店に到着", " 国際交換局に到着\u3000"]
DEPARTURES = ["国際交換局から発送", "国際交換支店から発送", "国際交換局から発送 "]


@pytest.mark.parametrize(
    ("origin_japan", "in_japan", "arrival", "departure"),
    [
        # Export from Japan: the Japanese scans are the sending side.
        (True, True, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
        (True, False, Stage.INWARD_EXCHANGE, Stage.INLAND_TRANSIT),
        (True, None, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
        # Import into Japan: the Japanese scans are the receiving side.
        (False, True, Stage.INWARD_EXCHANGE, Stage.INLAND_TRANSIT),
        (False, False, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
        (False, None, Stage.INWARD_EXCHANGE, Stage.INLAND_TRANSIT),
        # Unknown origin counts as a Japanese export.
        (None, True, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
        (None, False, Stage.INWARD_EXCHANGE, Stage.INLAND_TRANSIT),
        (None, None, Stage.OUTWARD_EXCHANGE, Stage.DEPARTED_ORIGIN),
    ],
)
def test_exchange_office_wordings_depend_on_direction(
    origin_japan: bool | None, in_japan: bool | None, arrival: Stage, departure: Stage
) -> None:
    for wording in ARRIVALS:
        assert map_status(wording, in_japan=in_japan, origin_japan=origin_japan) is arrival
    for wording in DEPARTURES:
        assert map_status(wording, in_japan=in_japan, origin_japan=origin_japan) is departure


def test_exchange_office_defaults_are_an_export_scanned_in_japan() -> None:
    assert map_status("国際交換局に到着") is Stage.OUTWARD_EXCHANGE
    assert map_status("国際交換局から発送") is Stage.DEPARTED_ORIGIN


def test_genuine_2014_export_history_maps_in_order() -> None:
    number = "EL015307999JP"
    rows = [
        ("Posting/Collection", "TOKYO", "203-8799", Stage.ACCEPTED),
        ("Arrival at outward office of exchange", "TOKYO", "138-8799", Stage.OUTWARD_EXCHANGE),
        ("Dispatch from outward office of exchange", "TOKYO", "138-8799", Stage.DEPARTED_ORIGIN),
        ("Arrival at inward office of exchange", "GERMANY", "\u00a0", Stage.INWARD_EXCHANGE),
        ("Departure from inward office of exchange", "GERMANY", "\u00a0", Stage.INLAND_TRANSIT),
    ]
    stages = [
        map_status(
            status,
            in_japan=located_in_japan(region, postal_code),
            origin_japan=origin_is_japan(number),
        )
        for status, region, postal_code, _ in rows
    ]
    assert stages == [stage for *_, stage in rows]
    ranks = [stage_info(stage).rank for stage in stages]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_every_stage_has_info_with_both_meanings() -> None:
    assert set(ALL_STAGE_INFO) == set(Stage)
    for stage in Stage:
        info = stage_info(stage)
        assert info is ALL_STAGE_INFO[stage]
        assert info.stage is stage
        assert info.meaning_en.strip()
        assert info.meaning_ja.strip()
        assert info.meaning_en.isascii()
        assert not info.meaning_ja.isascii()


def test_meanings_are_distinct() -> None:
    infos = list(ALL_STAGE_INFO.values())
    assert len({info.meaning_en for info in infos}) == len(infos)
    assert len({info.meaning_ja for info in infos}) == len(infos)


def test_ranks_order_the_normal_journey() -> None:
    journey = [
        Stage.PENDING,
        Stage.ACCEPTED,
        Stage.IN_TRANSIT,
        Stage.OUTWARD_EXCHANGE,
        Stage.DEPARTED_ORIGIN,
        Stage.INWARD_EXCHANGE,
        Stage.CUSTOMS_PRESENTED,
        Stage.CUSTOMS_CLEARED,
        Stage.INLAND_TRANSIT,
        Stage.AT_DELIVERY_OFFICE,
        Stage.OUT_FOR_DELIVERY,
        Stage.ATTEMPTED_DELIVERY,
        Stage.DELIVERED,
    ]
    ranks = [stage_info(stage).rank for stage in journey]
    assert all(a < b for a, b in itertools.pairwise(ranks))
    assert stage_info(Stage.UNKNOWN).rank == -1
    assert all(stage_info(stage).rank >= 0 for stage in Stage if stage is not Stage.UNKNOWN)


def test_delivery_attempt_stages_share_a_band() -> None:
    band = {
        stage_info(stage).rank
        for stage in (
            Stage.ATTEMPTED_DELIVERY,
            Stage.REDELIVERY_REQUESTED,
            Stage.RETENTION,
            Stage.READY_FOR_PICKUP,
        )
    }
    assert len(band) == 1
    (rank,) = band
    assert stage_info(Stage.OUT_FOR_DELIVERY).rank < rank < stage_info(Stage.DELIVERED).rank


def test_exception_stages_rank_outside_the_journey() -> None:
    delivered = stage_info(Stage.DELIVERED).rank
    for stage in (Stage.RETURNING, Stage.RETURNED, Stage.INVESTIGATION, Stage.FORWARDED):
        assert stage_info(stage).rank > delivered
    assert stage_info(Stage.RETURNING).rank < stage_info(Stage.RETURNED).rank


def test_terminal_stages() -> None:
    assert {stage for stage in Stage if stage_info(stage).terminal} == {Stage.DELIVERED, Stage.RETURNED}


def test_customer_action_stages() -> None:
    assert {stage for stage in Stage if stage_info(stage).customer_action} == {
        Stage.CUSTOMS_PRESENTED,
        Stage.ATTEMPTED_DELIVERY,
        Stage.RETENTION,
        Stage.READY_FOR_PICKUP,
        Stage.INVESTIGATION,
    }


def test_retention_meaning_tells_the_customer_to_act() -> None:
    info = stage_info(Stage.RETENTION)
    assert "held" in info.meaning_en
    assert "returned" in info.meaning_en
    assert "保管" in info.meaning_ja


PREFECTURES_KANJI = [
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県",
    "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県",
    "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県",
    "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県",
    "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
]  # fmt: skip
PREFECTURES_ROMAJI = [
    "HOKKAIDO", "AOMORI", "IWATE", "MIYAGI", "AKITA", "YAMAGATA", "FUKUSHIMA", "IBARAKI", "TOCHIGI",
    "GUNMA", "SAITAMA", "CHIBA", "TOKYO", "KANAGAWA", "NIIGATA", "TOYAMA", "ISHIKAWA", "FUKUI",
    "YAMANASHI", "NAGANO", "GIFU", "SHIZUOKA", "AICHI", "MIE", "SHIGA", "KYOTO", "OSAKA", "HYOGO",
    "NARA", "WAKAYAMA", "TOTTORI", "SHIMANE", "OKAYAMA", "HIROSHIMA", "YAMAGUCHI", "TOKUSHIMA",
    "KAGAWA", "EHIME", "KOCHI", "FUKUOKA", "SAGA", "NAGASAKI", "KUMAMOTO", "OITA", "MIYAZAKI",
    "KAGOSHIMA", "OKINAWA",
]  # fmt: skip


def test_prefecture_lists_are_complete() -> None:
    assert len(set(PREFECTURES_KANJI)) == 47
    assert len(set(PREFECTURES_ROMAJI)) == 47


@pytest.mark.parametrize("name", PREFECTURES_KANJI)
def test_every_prefecture_in_kanji_is_japan(name: str) -> None:
    assert located_in_japan(name, "") is True
    if name != "北海道":
        assert located_in_japan(name[:-1], "") is True


@pytest.mark.parametrize("name", PREFECTURES_ROMAJI)
def test_every_prefecture_in_romaji_is_japan(name: str) -> None:
    assert located_in_japan(name, "") is True
    assert located_in_japan(name.title(), "") is True


@pytest.mark.parametrize(
    ("region", "postal_code", "expected"),
    [
        # Rows of the genuine 2014 capture.
        ("TOKYO", "203-8799", True),
        ("TOKYO", "138-8799", True),
        ("GERMANY", "", False),
        ("GERMANY", "\u00a0", False),
        ("GERMANY", "&nbsp;", False),
        ("埼玉県", "", True),
        ("", "", None),
        ("\u00a0", "&nbsp;", None),
        (" \u3000", "", None),
        # Suffixes, spelling and width.
        ("TOKYO-TO", "", True),
        ("OSAKA-FU", "", True),
        ("KANAGAWA-KEN", "", True),
        ("Kanagawa Ken", "", True),
        ("KYOTO FU", "", True),
        ("AICHI PREFECTURE", "", True),
        ("ＴＯＫＹＯ", "", True),
        ("TŌKYŌ", "", True),
        ("GUMMA", "", True),
        ("東京", "", True),
        ("大阪", "", True),
        ("北海道", "", True),
        ("JAPAN", "", True),
        ("日本", "", True),
        # The ZIP alone decides when the region is missing or spelled oddly.
        ("", "138-8799", True),
        ("", "1388799", True),
        ("", "〒138-8799", True),
        ("", "１３８－８７９９", True),
        ("TOKYO INT", "138-8799", True),
        # Abroad.
        ("ドイツ", "", False),
        ("UNITED STATES", "", False),
        ("", "10115", False),
        ("FRANKFURT A/M FLUGHAFEN", "", False),
        ("KYO", "", False),
        ("北海", "", False),
    ],
)
def test_located_in_japan(region: str, postal_code: str, expected: bool | None) -> None:
    assert located_in_japan(region, postal_code) is expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("EL015307999JP", True),
        ("el015307999jp", True),
        ("RR123456785US", False),
        ("CP123456789DE", False),
        ("123456789012", True),
        ("12345678901", True),
        ("EL015307999J", False),
        ("JP123456789US", False),
        ("", False),
    ],
)
def test_origin_is_japan(number: str, expected: bool) -> None:
    assert origin_is_japan(number) is expected


def test_only_exact_case_returned_to_sender_means_the_return_is_complete() -> None:
    """Japan Post's English notice uses "Returned to sender" for a completed return."""
    assert map_status("Returned to sender") is Stage.RETURNED
    assert map_status("  Returned  to\u3000sender. ") is Stage.RETURNED
    assert map_status("Returned to Sender") is Stage.RETURNING
    assert map_status("RETURNED TO SENDER") is Stage.RETURNING
    assert map_status("Return to Sender") is Stage.RETURNING
    assert map_status("差出人に返送済み") is Stage.RETURNED
