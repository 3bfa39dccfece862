"""The built-in journeys: the capture, the scripted parcels and the status catalog."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import NamedTuple

from notifier.testing.simulator.model import (
    ContactRow,
    Journey,
    Scan,
)

# ------------------------------------------------------------------------------------------- journeys


class _Place(NamedTuple):
    office_en: str
    office_ja: str
    region_en: str
    region_ja: str
    postal_code: str = ""


def _at(place: _Place, when: str, status_en: str, status_ja: str, details: str = "") -> Scan:
    return Scan(
        when=when,
        status_en=status_en,
        status_ja=status_ja,
        office_en=place.office_en,
        office_ja=place.office_ja,
        region_en=place.region_en,
        region_ja=place.region_ja,
        postal_code=place.postal_code,
        details=details,
    )


def _acceptance(place: _Place, phone: str, office_id: str = "") -> ContactRow:
    return ContactRow(
        role_en="Acceptance",
        role_ja="引受",
        office_en=place.office_en,
        office_ja=place.office_ja,
        phone=phone,
        office_id=office_id,
    )


def _delivery(place: _Place, phone: str, office_id: str = "") -> ContactRow:
    return ContactRow(
        role_en="Delivery",
        role_ja="配達",
        office_en=place.office_en,
        office_ja=place.office_ja,
        phone=phone,
        office_id=office_id,
    )


# Offices abroad keep their romaji name in Japanese too (the site prints what the foreign post
# reports); only the country is translated. Phone numbers are made up: Japanese subscriber numbers
# never start with 0, so none of them can ring anyone.
_HIGASHIKURUME = _Place("HIGASHIKURUME", "東久留米郵便局", "TOKYO", "東京都", "203-8799")
_TOKYO_INT = _Place("TOKYO INT", "東京国際郵便局", "TOKYO", "東京都", "138-8799")
_FRANKFURT = _Place("FRANKFURT A/M FLUGHAFEN", "FRANKFURT A/M FLUGHAFEN", "GERMANY", "ドイツ")
_SHIBUYA = _Place("SHIBUYA", "渋谷郵便局", "TOKYO", "東京都", "150-8799")
_NEW_YORK_ISC = _Place("NEW YORK NY ISC", "NEW YORK NY ISC", "UNITED STATES", "アメリカ合衆国")
_BROOKLYN = _Place("BROOKLYN NY", "BROOKLYN NY", "UNITED STATES", "アメリカ合衆国")
_SHINJUKU = _Place("SHINJUKU", "新宿郵便局", "TOKYO", "東京都", "163-8799")
_SHIN_TOKYO = _Place("SHIN-TOKYO", "新東京郵便局", "TOKYO", "東京都", "135-8799")
_OSAKA_KITA = _Place("OSAKA-KITA", "大阪北郵便局", "OSAKA", "大阪府", "531-8799")
_SAKAI = _Place("SAKAI", "堺郵便局", "OSAKA", "大阪府", "590-8799")
_OSAKA_INT = _Place("OSAKA INT", "大阪国際郵便局", "OSAKA", "大阪府", "549-8799")
_SHANGHAI = _Place("SHANGHAI EMS", "SHANGHAI EMS", "CHINA", "中華人民共和国")


def capture_journey() -> Journey:
    """EL015307999JP exactly as the genuine 2014 capture shows it, fully revealed."""
    return Journey(
        number="EL015307999JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_HIGASHIKURUME, "2014-11-03T20:37", "Posting/Collection", "引受"),
            _at(_TOKYO_INT, "2014-11-04T11:49", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _TOKYO_INT,
                "2014-11-04T13:40",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_FRANKFURT, "2014-11-05T13:46", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _FRANKFURT,
                "2014-11-05T14:03",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
        ],
        contacts=[_acceptance(_HIGASHIKURUME, "042-473-8141", "200121008120")],
        type_code="4",
        class_code="2130",
        accepted_seconds=11,
    )


def builtin_journeys() -> list[Journey]:
    """The scripted demo journeys (2026), one scan revealed each; the last is never found."""
    ems = Journey(
        number="EJ202603021JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_SHIBUYA, "2026-03-02T10:15", "Posting/Collection", "引受"),
            _at(_TOKYO_INT, "2026-03-02T21:40", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _TOKYO_INT,
                "2026-03-03T13:05",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            # Local New York time: looks earlier than the Tokyo dispatch, as FORMAT.md §6 warns.
            _at(
                _NEW_YORK_ISC, "2026-03-03T14:20", "Arrival at inward office of exchange", "国際交換局に到着"
            ),
            _at(
                _NEW_YORK_ISC,
                "2026-03-03T18:45",
                "Item presented to import Customs",
                "税関検査のため税関へ提示",
            ),
            _at(_NEW_YORK_ISC, "2026-03-04T09:30", "Item returned from import Customs", "税関から受領"),
            _at(_BROOKLYN, "2026-03-05T06:10", "Processing at delivery Post Office", "到着"),
            _at(_BROOKLYN, "2026-03-05T08:25", "Item out for physical delivery", "持ち出し中"),
            _at(_BROOKLYN, "2026-03-05T14:50", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(_BROOKLYN, "2026-03-06", "Retention", "保管"),
            _at(_BROOKLYN, "2026-03-07T11:35", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[_acceptance(_SHIBUYA, "03-0000-0150", "000000000150")],
        revealed=1,
        class_code="2130",
        accepted_seconds=42,
    )
    yupack = Journey(
        number="314159265350",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(_SHINJUKU, "2026-03-10T16:40", "Posting/Collection", "引受"),
            _at(_SHIN_TOKYO, "2026-03-10T23:55", "En route", "中継"),
            _at(_OSAKA_KITA, "2026-03-11T07:30", "Arrival", "到着"),
            _at(_OSAKA_KITA, "2026-03-11T09:05", "Allocated to delivery staff", "持ち出し中"),
            _at(_OSAKA_KITA, "2026-03-11", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(_OSAKA_KITA, "2026-03-11T20:12", "A request for re-delivery was received.", "配達希望受付"),
            _at(_OSAKA_KITA, "2026-03-12T13:30", "Allocated to delivery staff", "持ち出し中"),
            _at(_OSAKA_KITA, "2026-03-12T15:02", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[
            _acceptance(_SHINJUKU, "03-0000-0163", "000000000163"),
            _delivery(_OSAKA_KITA, "06-0000-0531", "000000000531"),
        ],
        revealed=1,
        accepted_seconds=5,
    )
    returned = Journey(
        number="CP314159268JP",
        item_type_en="Parcel",
        item_type_ja="国際小包",
        international=True,
        scans=[
            _at(_SAKAI, "2026-04-06T16:20", "Posting/Collection", "引受"),
            _at(_OSAKA_INT, "2026-04-07T05:10", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _OSAKA_INT,
                "2026-04-07T18:45",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_SHANGHAI, "2026-04-09T10:30", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _SHANGHAI, "2026-04-09T15:00", "Item presented to import Customs", "税関検査のため税関へ提示"
            ),
            _at(_SHANGHAI, "2026-04-10T11:20", "Held by import Customs", "税関保留"),
            _at(_SHANGHAI, "2026-04-20T09:00", "Return to Sender", "差出人に返送"),
            _at(_OSAKA_INT, "2026-04-24T07:40", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _OSAKA_INT,
                "2026-04-24T13:15",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
            _at(_SAKAI, "2026-04-25T11:30", "Returned to sender", "差出人に返送済み"),
        ],
        contacts=[_acceptance(_SAKAI, "072-000-0590", "000000000590")],
        revealed=1,
        accepted_seconds=30,
    )
    never_found = Journey(
        number="EJ271828189JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[],
        revealed=0,
    )
    return [ems, yupack, returned, never_found]


RECENT_DAYS_AGO = 2
"""`--now`: each journey's last scan is this many days before today. Two, not zero: abroad a scan
is a wall time without a zone, and a day's margin keeps it in the past wherever it was scanned."""


def shifted_scan(scan: Scan, days: int) -> Scan:
    """The scan `days` later, at the same wall clock (a date-only row stays date-only)."""
    day = (scan.date + dt.timedelta(days=days)).isoformat()
    return dataclasses.replace(scan, when=f"{day}T{scan.clock}" if scan.clock else day)


def recent_journeys(journeys: list[Journey], today: dt.date) -> list[Journey]:
    """The journeys moved in whole days so that each ends RECENT_DAYS_AGO days before `today`:
    their news is fresh for the rules' max_event_age, as a parcel shipped this week would be.
    The spacing of each journey's scans, their clocks and everything else stay as scripted."""
    moved = []
    for journey in journeys:
        if not journey.scans:
            moved.append(dataclasses.replace(journey))
            continue
        days = (today - dt.timedelta(days=RECENT_DAYS_AGO) - journey.scans[-1].date).days
        moved.append(dataclasses.replace(journey, scans=[shifted_scan(s, days) for s in journey.scans]))
    return moved


def catalog_journeys() -> list[Journey]:
    """Fully revealed journeys that together show every status wording of STATUSES.md tables A-D.

    Wordings with no counterpart in the other language are paired with the nearest real wording
    of the same stage family (STATUSES.md §F), never with invented text.
    """
    singapore_ex = _Place("SINGAPORE EMS", "SINGAPORE EMS", "SINGAPORE", "シンガポール")
    singapore_mc = _Place("SINGAPORE MAIL CENTRE", "SINGAPORE MAIL CENTRE", "SINGAPORE", "シンガポール")
    tampines = _Place("TAMPINES", "TAMPINES", "SINGAPORE", "シンガポール")
    los_angeles = _Place("LOS ANGELES CA 90052", "LOS ANGELES CA 90052", "UNITED STATES", "アメリカ合衆国")
    los_angeles_isc = _Place("LOS ANGELES CA ISC", "LOS ANGELES CA ISC", "UNITED STATES", "アメリカ合衆国")
    kawasaki = _Place("KAWASAKI-HIGASHI", "川崎東郵便局", "KANAGAWA", "神奈川県", "210-8799")
    setagaya = _Place("SETAGAYA", "世田谷郵便局", "TOKYO", "東京都", "154-8799")
    sapporo = _Place("SAPPORO-CHUO", "札幌中央郵便局", "HOKKAIDO", "北海道", "060-8799")
    sapporo_east = _Place("SAPPORO-HIGASHI", "札幌東郵便局", "HOKKAIDO", "北海道", "065-8799")
    nakano = _Place("NAKANO", "中野郵便局", "TOKYO", "東京都", "164-8799")
    fukuoka = _Place("FUKUOKA-CHUO", "福岡中央郵便局", "FUKUOKA", "福岡県", "810-8799")
    shin_fukuoka = _Place("SHIN-FUKUOKA", "新福岡郵便局", "FUKUOKA", "福岡県", "812-8799")
    kokura = _Place("KOKURA", "小倉郵便局", "FUKUOKA", "福岡県", "802-8799")
    nagoya = _Place("NAGOYA-CHUO", "名古屋中央郵便局", "AICHI", "愛知県", "450-8799")
    kyoto = _Place("KYOTO-CHUO", "京都中央郵便局", "KYOTO", "京都府", "600-8799")
    sendai = _Place("SENDAI-CHUO", "仙台中央郵便局", "MIYAGI", "宮城県", "980-8799")
    morioka = _Place("MORIOKA-CHUO", "盛岡中央郵便局", "IWATE", "岩手県", "020-8799")

    export_pickup = Journey(
        number="EJ161803397JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_SHIBUYA, "2026-05-11T09:30", "Posting/Collection", "引受"),
            _at(
                _TOKYO_INT, "2026-05-11T20:05", "Arrival at outward office of exchange", "国際交換支店に到着"
            ),
            _at(
                _TOKYO_INT,
                "2026-05-12T10:40",
                "Dispatch from outward office of exchange",
                "国際交換支店から発送",
            ),
            _at(singapore_ex, "2026-05-12T19:15", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(singapore_ex, "2026-05-12T21:00", "Item held at inward Office of Exchange", "税関保留"),
            _at(
                singapore_ex,
                "2026-05-13T08:10",
                "Item presented to import Customs",
                "税関検査のため税関へ提示",
            ),
            _at(singapore_ex, "2026-05-13T15:30", "Held by import Customs", "税関保留"),
            _at(singapore_ex, "2026-05-14T10:20", "Item returned from import Customs", "税関から受領"),
            _at(
                singapore_ex,
                "2026-05-14T12:00",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
            _at(singapore_mc, "2026-05-14T18:45", "Item out of sorting centre", "中継"),
            _at(tampines, "2026-05-15T07:30", "Arrival at delivery office", "到着"),
            _at(
                tampines,
                "2026-05-15T09:00",
                "Item arrival at collection point for pick-up",
                "コンビニエンスストア等に引渡",
            ),
            _at(tampines, "2026-05-16T14:10", "Final delivery - Collected at counter", "窓口でお渡し"),
        ],
        contacts=[_acceptance(_SHIBUYA, "03-0000-0150", "000000000150")],
        class_code="2130",
    )
    import_bond = Journey(
        number="EX141421354US",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(los_angeles, "2026-06-01T14:20", "Posting/Collection", "引受"),
            _at(
                los_angeles_isc,
                "2026-06-02T09:45",
                "Arrival at outward office of exchange",
                "国際交換局に到着",
            ),
            _at(
                los_angeles_isc,
                "2026-06-02T23:50",
                "Departure from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_TOKYO_INT, "2026-06-04T06:15", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(_TOKYO_INT, "2026-06-04T08:30", "Transported in bond", "保税運送中"),
            _at(kawasaki, "2026-06-04T13:10", "Arrived in bond", "保税運送到着"),
            _at(kawasaki, "2026-06-04T15:00", "In Customs", "輸入申告手続中"),
            _at(kawasaki, "2026-06-05T10:30", "Held by import Customs", "税関から名宛人に照会中"),
            _at(kawasaki, "2026-06-08T11:00", "In Customs", "通関手続中"),
            _at(kawasaki, "2026-06-09T09:40", "Item returned from import Customs", "通関完了"),
            _at(kawasaki, "2026-06-09T17:20", "Dispatched from Exchange Office", "国際交換局から発送"),
            _at(setagaya, "2026-06-10T07:05", "Processing at delivery Post Office", "到着"),
            _at(setagaya, "2026-06-10T08:40", "Allocated to delivery staff", "配達局から出発"),
            _at(setagaya, "2026-06-10T11:25", "Final delivery", "お届け済み"),
        ],
        contacts=[_delivery(setagaya, "03-0000-0154", "000000000154")],
    )
    holds = Journey(
        number="271828182846",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(sapporo, "2026-07-01T17:45", "Posting/Collection", "引受"),
            _at(sapporo_east, "2026-07-01T22:10", "En route", "通過"),
            _at(sapporo_east, "2026-07-02T04:30", "En route", "通過（車又は船輸送に変更）"),
            _at(_SHIN_TOKYO, "2026-07-02T18:00", "En route", "発送"),
            _at(nakano, "2026-07-03T06:20", "Arrival", "到着"),
            _at(nakano, "2026-07-03T09:15", "Item out for physical delivery", "持ち出し中"),
            _at(nakano, "2026-07-03", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(nakano, "2026-07-03", "Retention", "保管"),
            _at(nakano, "2026-07-06T10:00", "Retention", "保管期間延長受付"),
            _at(nakano, "2026-07-08T08:30", "Office closed. Retention.", "お届け先休日等のため保管"),
            _at(nakano, "2026-07-09T08:30", "Office closed. Retention.", "お届け先 休日のため保管"),
            _at(nakano, "2026-07-10T12:00", "Retention", "保管中"),
            _at(nakano, "2026-07-10T16:00", "Retention", "私書箱保管"),
            _at(nakano, "2026-07-11T09:00", "En route", "転送"),
            _at(nakano, "2026-07-11T15:30", "Investigation", "調査中"),
            _at(nakano, "2026-07-12T19:20", "A request for re-delivery was received.", "配達希望受付"),
            _at(nakano, "2026-07-13T09:10", "Allocated to delivery staff", "持ち出し中"),
            _at(nakano, "2026-07-13T14:45", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[
            _acceptance(sapporo, "011-000-0060", "000000000060"),
            _delivery(nakano, "03-0000-0164", "000000000164"),
        ],
    )
    pickup = Journey(
        number="161803398875",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(fukuoka, "2026-08-03T11:00", "Posting/Collection", "引受"),
            _at(shin_fukuoka, "2026-08-03T23:40", "En route", "中継"),
            _at(kokura, "2026-08-04T07:10", "Arrival", "到着"),
            _at(
                kokura,
                "2026-08-04T07:30",
                "Item arrival at collection point for pick-up",
                "最寄局・最寄店送付",
            ),
            _at(
                kokura,
                "2026-08-05T10:00",
                "Item arrival at collection point for pick-up",
                "コンビニエンスストアに引渡",
            ),
        ],
        contacts=[_acceptance(fukuoka, "092-000-0810")],
    )
    returned = Journey(
        number="141421356230",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(nagoya, "2026-09-01T10:00", "Posting/Collection", "引受"),
            _at(nagoya, "2026-09-01T21:00", "En route", "中継"),
            _at(kyoto, "2026-09-02T07:00", "Arrival", "到着"),
            _at(kyoto, "2026-09-02T10:30", "Item out for physical delivery", "持ち出し中"),
            _at(kyoto, "2026-09-02T15:00", "Return to Sender", "あて所にたずねあたりません"),
            _at(kyoto, "2026-09-03T09:00", "Returned to Sender", "差出人に返送"),
            _at(kyoto, "2026-09-03T18:00", "Return to Sender", "返戻"),
            _at(nagoya, "2026-09-04T12:30", "Returned to sender", "差出人に返送済み"),
        ],
        contacts=[_acceptance(nagoya, "052-000-0450", "000000000450")],
    )
    unreturnable = Journey(
        number="173205080753",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(sendai, "2026-10-05T15:10", "Posting/Collection", "引受"),
            _at(morioka, "2026-10-06T07:45", "Arrival", "到着"),
            _at(morioka, "2026-10-06", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(morioka, "2026-10-07", "Retention", "保管"),
            _at(morioka, "2026-10-14T09:00", "Return to Sender", "差出人に返送"),
            _at(morioka, "2026-10-20T16:30", "Returned to sender", "返送できません"),
        ],
        contacts=[_acceptance(sendai, "022-000-0980", "000000000980")],
    )
    return [export_pickup, import_bond, holds, pickup, returned, unreturnable]
