"""The stage vocabulary: Japan Post status wordings mapped to stages customers understand."""

from __future__ import annotations

import enum
import re
import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass


class Stage(enum.StrEnum):
    """Where a shipment is, in words rules and config refer to. The names are a contract."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    IN_TRANSIT = "in_transit"
    OUTWARD_EXCHANGE = "outward_exchange"
    DEPARTED_ORIGIN = "departed_origin"
    INWARD_EXCHANGE = "inward_exchange"
    CUSTOMS_PRESENTED = "customs_presented"
    CUSTOMS_CLEARED = "customs_cleared"
    INLAND_TRANSIT = "inland_transit"
    AT_DELIVERY_OFFICE = "at_delivery_office"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ATTEMPTED_DELIVERY = "attempted_delivery"
    REDELIVERY_REQUESTED = "redelivery_requested"
    RETENTION = "retention"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    INVESTIGATION = "investigation"
    FORWARDED = "forwarded"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageInfo:
    """What a stage means and what it implies."""

    stage: Stage
    rank: int
    terminal: bool
    customer_action: bool
    meaning_en: str
    meaning_ja: str


_WHITESPACE = re.compile(r"\s+")


def normalise_status(text: str) -> str:
    """Fold a status wording so that case, width, spacing and a final period do not matter."""
    # NFKC on both sides of casefold: casefolding can produce sequences NFKC would change again.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    folded = _WHITESPACE.sub(" ", folded).strip()
    if folded.endswith("."):
        folded = folded[:-1].rstrip()
    return folded


# Japan Post prints the prefecture in upper-case romaji on English pages and in kanji with
# its 都/道/府/県 suffix on Japanese pages.
_PREFECTURES: tuple[tuple[str, str], ...] = (
    ("HOKKAIDO", "北海道"),
    ("AOMORI", "青森県"),
    ("IWATE", "岩手県"),
    ("MIYAGI", "宮城県"),
    ("AKITA", "秋田県"),
    ("YAMAGATA", "山形県"),
    ("FUKUSHIMA", "福島県"),
    ("IBARAKI", "茨城県"),
    ("TOCHIGI", "栃木県"),
    ("GUNMA", "群馬県"),
    ("SAITAMA", "埼玉県"),
    ("CHIBA", "千葉県"),
    ("TOKYO", "東京都"),
    ("KANAGAWA", "神奈川県"),
    ("NIIGATA", "新潟県"),
    ("TOYAMA", "富山県"),
    ("ISHIKAWA", "石川県"),
    ("FUKUI", "福井県"),
    ("YAMANASHI", "山梨県"),
    ("NAGANO", "長野県"),
    ("GIFU", "岐阜県"),
    ("SHIZUOKA", "静岡県"),
    ("AICHI", "愛知県"),
    ("MIE", "三重県"),
    ("SHIGA", "滋賀県"),
    ("KYOTO", "京都府"),
    ("OSAKA", "大阪府"),
    ("HYOGO", "兵庫県"),
    ("NARA", "奈良県"),
    ("WAKAYAMA", "和歌山県"),
    ("TOTTORI", "鳥取県"),
    ("SHIMANE", "島根県"),
    ("OKAYAMA", "岡山県"),
    ("HIROSHIMA", "広島県"),
    ("YAMAGUCHI", "山口県"),
    ("TOKUSHIMA", "徳島県"),
    ("KAGAWA", "香川県"),
    ("EHIME", "愛媛県"),
    ("KOCHI", "高知県"),
    ("FUKUOKA", "福岡県"),
    ("SAGA", "佐賀県"),
    ("NAGASAKI", "長崎県"),
    ("KUMAMOTO", "熊本県"),
    ("OITA", "大分県"),
    ("MIYAZAKI", "宮崎県"),
    ("KAGOSHIMA", "鹿児島県"),
    ("OKINAWA", "沖縄県"),
)

# Romanisations other than the modified Hepburn Japan Post prints (old-Hepburn GUMMA, long
# vowels spelled out); no country is spelled like these, so tolerating them costs nothing.
_ROMAJI_VARIANTS = ("GUMMA", "HYOUGO", "KOUCHI", "OOITA", "OHITA", "KYOUTO", "OOSAKA", "TOUKYOU")

_PREFECTURES_ROMAJI = frozenset(
    name.casefold() for name in (*(romaji for romaji, _ in _PREFECTURES), *_ROMAJI_VARIANTS)
)
# 北海道 keeps its 道: "北海" alone is not how anyone writes it (and reads as "the North Sea").
_PREFECTURES_KANJI = frozenset(
    form for _, kanji in _PREFECTURES for form in ((kanji,) if kanji == "北海道" else (kanji, kanji[:-1]))
)
# A separator is required so that KYOTO is not read as KYO + "-TO".
_ROMAJI_SUFFIX = re.compile(r"[\s-]+(?:ken|to|fu|prefecture|pref)$")
_JAPAN_NAMES = frozenset({"japan", "nippon", "nihon", "日本", "日本国"})
_DASHES = "-‐‑‒–—―−ー"
_JAPANESE_POSTAL_CODE = re.compile(rf"〒?\s*[0-9]{{3}}[{_DASHES}]?[0-9]{{4}}")


def _clean_cell(text: str) -> str:
    # A scraper that does not decode entities hands over the overseas ZIP cell as "&nbsp;".
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text.replace("&nbsp;", " "))).strip()


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def located_in_japan(region: str, postal_code: str) -> bool | None:
    """Whether an event happened in Japan, judged from its prefecture/country and ZIP cells."""
    place = _clean_cell(region).rstrip(".").casefold()
    code = _clean_cell(postal_code)
    if not place and not code:
        return None
    # Japan Post leaves the ZIP cell empty abroad, so a Japanese-looking code outweighs a
    # region that is spelled in some way the tables below do not know.
    if code and _JAPANESE_POSTAL_CODE.fullmatch(code):
        return True
    if place in _JAPAN_NAMES or place in _PREFECTURES_KANJI:
        return True
    romaji = _ROMAJI_SUFFIX.sub("", _strip_accents(place))
    return romaji in _PREFECTURES_ROMAJI or romaji in _JAPAN_NAMES


_S10 = re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}")


def origin_is_japan(number: str) -> bool:
    """Whether an item number was issued in Japan (UPU S10 country suffix JP, or domestic digits)."""
    compact = re.sub(r"[\s-]+", "", unicodedata.normalize("NFKC", number)).upper()
    if compact.isascii() and compact.isdigit():
        return True
    return bool(_S10.fullmatch(compact)) and compact.endswith("JP")


# Every wording in STATUSES.md tables A-D except the direction-dependent 国際交換局 ones, which
# map_status resolves from where the event happened.
_WORDINGS: tuple[tuple[str, Stage], ...] = (
    # A. Acceptance and transit
    ("Posting/Collection", Stage.ACCEPTED),
    ("引受", Stage.ACCEPTED),
    ("En route", Stage.IN_TRANSIT),
    ("中継", Stage.IN_TRANSIT),
    ("通過", Stage.IN_TRANSIT),
    ("通過（車又は船輸送に変更）", Stage.IN_TRANSIT),
    ("発送", Stage.IN_TRANSIT),
    # Bare 到着 / "Arrival" is the delivering office, not a stop on the way: domestic histories
    # relay with 中継/通過 and print 到着 once, just before 持ち出し中 (STATUSES.md: "arrived at
    # the delivering office, domestically"; its English pair is "Processing at delivery Post
    # Office"). The English word is the same scan on the other locale, so both go here.
    ("Arrival", Stage.AT_DELIVERY_OFFICE),
    ("到着", Stage.AT_DELIVERY_OFFICE),
    ("Processing at delivery Post Office", Stage.AT_DELIVERY_OFFICE),
    ("Arrival at delivery office", Stage.AT_DELIVERY_OFFICE),  # the UPU text of the same event (EMG)
    # UPU EDE comes after customs (EDB/EDC) and before out-for-delivery (EDG): it is a sorting
    # scan inside the destination country, which is what INLAND_TRANSIT means.
    ("Item out of sorting centre", Stage.INLAND_TRANSIT),
    # B. International exchange and customs
    ("Arrival at outward office of exchange", Stage.OUTWARD_EXCHANGE),
    ("Dispatch from outward office of exchange", Stage.DEPARTED_ORIGIN),
    ("Departure from outward office of exchange", Stage.DEPARTED_ORIGIN),
    ("Dispatched from Exchange Office", Stage.DEPARTED_ORIGIN),
    ("Arrival at inward office of exchange", Stage.INWARD_EXCHANGE),
    ("Item held at inward Office of Exchange", Stage.INWARD_EXCHANGE),
    ("Item presented to import Customs", Stage.CUSTOMS_PRESENTED),
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
    # The HS screenshot breaks the line after お届け先; the unspaced form is the same text.
    ("お届け先 休日のため保管", Stage.RETENTION),
    ("お届け先休日のため保管", Stage.RETENTION),
    ("私書箱保管", Stage.RETENTION),
    ("保管期間延長受付", Stage.RETENTION),
    ("Investigation", Stage.INVESTIGATION),
    ("調査中", Stage.INVESTIGATION),
    ("転送", Stage.FORWARDED),
    # D. Returns. Folded, every English return wording means "on its way back". The one
    # exception, exact-case "Returned to sender", is handled in map_status (_EXACT_CASE).
    ("Return to Sender", Stage.RETURNING),
    ("Returned to Sender", Stage.RETURNING),
    ("Returned to sender", Stage.RETURNING),
    ("差出人に返送", Stage.RETURNING),
    ("あて所にたずねあたりません", Stage.RETURNING),
    ("返戻", Stage.RETURNING),
    ("差出人に返送済み", Stage.RETURNED),
    ("返送できません", Stage.RETURNED),
)


def _build_table(wordings: tuple[tuple[str, Stage], ...]) -> Mapping[str, Stage]:
    table: dict[str, Stage] = {}
    for wording, stage in wordings:
        key = normalise_status(wording)
        if table.setdefault(key, stage) is not stage:
            raise ValueError(f"{wording!r} folds onto a wording already mapped to {table[key]}")
    return types.MappingProxyType(table)


KNOWN_STATUSES: Mapping[str, Stage] = _build_table(_WORDINGS)

# The same Japanese words mark both ends of an international trip; only the place of the
# event tells whether it is the sending or the receiving exchange office.
_EXCHANGE_ARRIVAL = frozenset(normalise_status(w) for w in ("国際交換局に到着", "国際交換支店に到着"))
_EXCHANGE_DEPARTURE = frozenset(normalise_status(w) for w in ("国際交換局から発送", "国際交換支店から発送"))


# Japan Post's own English notice lists "Returned to sender" (lower-case s) as the completed
# return, the counterpart of 差出人に返送済み, and one independent tracker reads the case the
# same way; "Returned to Sender" and "Return to Sender" stay RETURNING. Case matters only here.
_EXACT_CASE: Mapping[str, Stage] = {"Returned to sender": Stage.RETURNED}


def map_status(status: str, *, in_japan: bool | None = None, origin_japan: bool | None = True) -> Stage:
    """The stage a raw status wording stands for; UNKNOWN for wording not in the table."""
    exact = _WHITESPACE.sub(" ", status.replace("\u3000", " ")).strip().rstrip(".").strip()
    if exact in _EXACT_CASE:
        return _EXACT_CASE[exact]
    key = normalise_status(status)
    # Exact lookup only: a known word inside unknown text (保管期間経過, "Final delivery
    # attempt") often means something else, and UNKNOWN is safer than a wrong message.
    stage = KNOWN_STATUSES.get(key)
    if stage is not None:
        return stage
    if key not in _EXCHANGE_ARRIVAL and key not in _EXCHANGE_DEPARTURE:
        return Stage.UNKNOWN
    # A row without a place is taken to be in Japan: Japan Post prints a country for events
    # abroad (GERMANY in the 2014 capture). An item of unknown origin is taken to be a
    # Japanese export, the common case and this function's default. Together these make a
    # place-less exchange scan of an export an origin-side one.
    here = True if in_japan is None else in_japan
    origin = True if origin_japan is None else origin_japan
    at_origin = here == origin
    if key in _EXCHANGE_ARRIVAL:
        return Stage.OUTWARD_EXCHANGE if at_origin else Stage.INWARD_EXCHANGE
    return Stage.DEPARTED_ORIGIN if at_origin else Stage.INLAND_TRANSIT


# Ranks order the forward journey in steps of 10; stages sharing a rank form a band. How a
# "went backwards" check should use them:
# - compare only when both ranks are 0..120 (the journey); UNKNOWN (-1) has no place in it
#   and the exception stages (>= 200) leave it, so moves into or out of them never count;
# - within a band order is free: attempt, redelivery request, hold and pickup follow each
#   other in any order, so moving among them is not backwards;
# - the delivery-attempt band (110) -> OUT_FOR_DELIVERY (100) is the redelivery loop, not a
#   regression;
# - imports reuse the domestic relay wordings (中継, En route -> IN_TRANSIT, rank 20) after the
#   inward exchange, so IN_TRANSIT after DEPARTED_ORIGIN, and before AT_DELIVERY_OFFICE, is not
#   backwards either.
_JOURNEY_END = 120
_EXCEPTIONS = 200

ALL_STAGE_INFO: Mapping[Stage, StageInfo] = types.MappingProxyType(
    {
        info.stage: info
        for info in (
            StageInfo(
                stage=Stage.PENDING,
                rank=0,
                terminal=False,
                customer_action=False,
                meaning_en="Japan Post has no record of this parcel yet; tracking starts once a post office "
                "takes it in.",
                meaning_ja="日本郵便にはまだこのお荷物の記録がございません。郵便局がお荷物を引き受けると追跡が始まります。",
            ),
            StageInfo(
                stage=Stage.ACCEPTED,
                rank=10,
                terminal=False,
                customer_action=False,
                meaning_en="The post office has taken in the parcel and will send it on its way.",
                meaning_ja="郵便局がお荷物を引き受けました。これから発送されます。",
            ),
            StageInfo(
                stage=Stage.IN_TRANSIT,
                rank=20,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel is travelling between post offices.",
                meaning_ja="お荷物は郵便局の間を輸送中です。",
            ),
            StageInfo(
                stage=Stage.OUTWARD_EXCHANGE,
                rank=30,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel has reached the international mail centre of the sending country "
                "and is waiting to go abroad.",
                meaning_ja="お荷物は差出国の国際郵便の交換局に到着し、海外への発送を待っています。",
            ),
            StageInfo(
                stage=Stage.DEPARTED_ORIGIN,
                rank=40,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel has left the sending country; updates may pause for several days "
                "while it travels.",
                meaning_ja="お荷物は差出国を出発しました。輸送中は数日間、追跡情報が更新されないことがあります。",
            ),
            StageInfo(
                stage=Stage.INWARD_EXCHANGE,
                rank=50,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel has arrived at the international mail centre of the destination "
                "country.",
                meaning_ja="お荷物はお届け先の国の国際郵便の交換局に到着しました。",
            ),
            StageInfo(
                stage=Stage.CUSTOMS_PRESENTED,
                rank=60,
                terminal=False,
                # Customs may hold the parcel until the addressee pays duty or sends documents.
                customer_action=True,
                meaning_en="The parcel is with customs, who may ask you to pay duty or send documents.",
                meaning_ja="お荷物は税関で手続き中です。関税のお支払いや書類のご提出をお願いする場合がございます。",
            ),
            StageInfo(
                stage=Stage.CUSTOMS_CLEARED,
                rank=70,
                terminal=False,
                customer_action=False,
                meaning_en="Customs has finished with the parcel and handed it back to the post.",
                meaning_ja="税関での手続きが終わり、お荷物は郵便局に引き渡されました。",
            ),
            StageInfo(
                stage=Stage.INLAND_TRANSIT,
                rank=80,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel is travelling inside the destination country towards the post office "
                "that will deliver it.",
                meaning_ja="お荷物はお届け先の国の中を、配達を担当する郵便局へ向けて輸送中です。",
            ),
            StageInfo(
                stage=Stage.AT_DELIVERY_OFFICE,
                rank=90,
                terminal=False,
                customer_action=False,
                meaning_en="The parcel has reached the post office that will deliver it.",
                meaning_ja="お荷物は配達を担当する郵便局に到着しました。",
            ),
            StageInfo(
                stage=Stage.OUT_FOR_DELIVERY,
                rank=100,
                terminal=False,
                customer_action=False,
                meaning_en="A carrier has the parcel on today's round.",
                meaning_ja="配達員がお荷物を持ち出し、本日お届けに向かっています。",
            ),
            StageInfo(
                stage=Stage.ATTEMPTED_DELIVERY,
                rank=110,
                terminal=False,
                customer_action=True,
                meaning_en="Nobody was in when delivery was tried; use the card left behind to arrange "
                "a redelivery.",
                meaning_ja="ご不在のため、お荷物は郵便局への持ち戻りとなりました。不在連絡票から再配達をお申し込みください。",
            ),
            StageInfo(
                stage=Stage.REDELIVERY_REQUESTED,
                rank=110,
                terminal=False,
                # The customer has just acted; nothing more is needed until the new delivery.
                customer_action=False,
                meaning_en="Your redelivery request has been received and the parcel will come at the time "
                "you chose.",
                meaning_ja="再配達のお申し込みを受け付けました。ご指定の日時にお届けします。",
            ),
            StageInfo(
                stage=Stage.RETENTION,
                rank=110,
                terminal=False,
                customer_action=True,
                meaning_en="The parcel is being held at the post office; contact it soon or it will be "
                "returned to the sender.",
                meaning_ja="お荷物は郵便局で保管されています。保管期間を過ぎると当店へ返送されるため、"
                "お早めに郵便局へご連絡ください。",
            ),
            StageInfo(
                stage=Stage.READY_FOR_PICKUP,
                rank=110,
                terminal=False,
                customer_action=True,
                meaning_en="The parcel is waiting for you at a pickup point such as a post office, "
                "convenience store or locker; collect it before the holding period ends.",
                meaning_ja="お荷物は郵便局・コンビニエンスストア・宅配ロッカーなどの受け取り場所に届いています。"
                "保管期間内にお受け取りください。",
            ),
            StageInfo(
                stage=Stage.DELIVERED,
                rank=_JOURNEY_END,
                terminal=True,
                customer_action=False,
                meaning_en="The parcel has been delivered or collected.",
                meaning_ja="お荷物はお届け済み、または窓口でお受け取り済みです。",
            ),
            # Exception stages: outside the journey, ordered only among themselves.
            StageInfo(
                stage=Stage.RETURNING,
                rank=_EXCEPTIONS,
                # The way back can still end in a delivery to the sender, a re-send or a loss.
                terminal=False,
                customer_action=False,
                meaning_en="The parcel is being sent back to the sender.",
                meaning_ja="お荷物は当店へ返送されています。",
            ),
            StageInfo(
                stage=Stage.RETURNED,
                rank=_EXCEPTIONS + 10,
                terminal=True,
                customer_action=False,
                meaning_en="The return to the sender has finished, so the parcel will not be delivered "
                "to you.",
                meaning_ja="当店への返送が完了したため、お荷物はお届けできません。",
            ),
            StageInfo(
                stage=Stage.INVESTIGATION,
                rank=_EXCEPTIONS + 20,
                terminal=False,
                # Often an address problem that only the addressee can clear up.
                customer_action=True,
                meaning_en="Japan Post is looking into a problem with the parcel, often the address; "
                "contact the post office if you can help.",
                meaning_ja="日本郵便がお荷物について調査しています（宛先の不備など）。"
                "お心当たりがあれば郵便局へご連絡ください。",
            ),
            StageInfo(
                stage=Stage.FORWARDED,
                rank=_EXCEPTIONS + 30,
                # The item travels on to the new address and is delivered there.
                terminal=False,
                customer_action=False,
                meaning_en="The parcel has been sent on to the forwarding address registered with "
                "Japan Post.",
                meaning_ja="お荷物は日本郵便に届け出のある転居先へ転送されました。",
            ),
            StageInfo(
                stage=Stage.UNKNOWN,
                rank=-1,
                terminal=False,
                customer_action=False,
                meaning_en="Japan Post reported a status this service does not know yet; see the tracking "
                "page for details.",
                meaning_ja="日本郵便から、当サービスでまだ扱っていない状態が届きました。詳しくは追跡ページをご覧ください。",
            ),
        )
    }
)


def stage_info(stage: Stage) -> StageInfo:
    """What a stage means for the customer and whether it ends the tracking."""
    return ALL_STAGE_INFO[stage]
