"""Tracking number normalisation and validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.core.numbers import S10_WEIGHTS, NumberKind, normalise, parse_number, s10_check_digit
from notifier.errors import InvalidNumberError

GENUINE = "EL015307999JP"  # from the 2014 capture, so its check digit is Japan Post's own


def test_genuine_number_has_valid_check_digit() -> None:
    assert s10_check_digit("01530799") == 9
    assert parse_number(GENUINE).kind is NumberKind.S10


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("EL 015 307 999 JP", GENUINE),
        ("el-015-307-999-jp", GENUINE),
        ("ＥＬ０１５３０７９９９ＪＰ", GENUINE),  # full-width, as typed with a Japanese IME
        ("EL\u3000015\u3000307 999JP", GENUINE),
        ("1234-5678-9012", "123456789012"),
        ("12345678901", "12345678901"),
        ("1234567890123", "1234567890123"),
    ],
)
def test_normalises_typed_forms(typed: str, expected: str) -> None:
    assert parse_number(typed).value == expected


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "empty"),
        ("EL015307998JP", "check digit is 8"),
        ("EL015307999123JP", "16 characters"),
        ("1234567890", "11 to 13 digits, this has 10"),
        ("12345678901234", "this has 14"),
        ("E1015307999JP", "2 letters, 9 digits and 2 letters"),
        ("EL01530799#JP", "characters that never appear"),
    ],
)
def test_rejects_with_reason(typed: str, reason: str) -> None:
    with pytest.raises(InvalidNumberError) as info:
        parse_number(typed)
    assert reason in str(info.value)


def test_display_groups_like_japan_post() -> None:
    assert parse_number(GENUINE).display == "EL 015 307 999 JP"
    assert parse_number("123456789012").display == "1234-5678-9012"
    assert parse_number("123456789012").country == "JP"
    assert parse_number("RR123456785US").country == "US"


serials = st.text(alphabet="0123456789", min_size=8, max_size=8)
letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


def s10(prefix: str, serial: str, country: str) -> str:
    return f"{prefix}{serial}{s10_check_digit(serial)}{country}"


@given(prefix=letters, serial=serials, country=letters, data=st.data())
def test_valid_numbers_round_trip_through_any_spacing(
    prefix: str, serial: str, country: str, data: st.DataObject
) -> None:
    number = s10(prefix, serial, country)
    separators = data.draw(
        st.lists(st.sampled_from(["", " ", "-", "\u3000", "  "]), min_size=13, max_size=13)
    )
    typed = "".join(ch + sep for ch, sep in zip(number, separators, strict=True))
    if data.draw(st.booleans()):
        typed = typed.lower()
    parsed = parse_number(typed)
    assert parsed.value == number
    assert parse_number(parsed.display).value == number
    assert normalise(parsed.value) == parsed.value


def residue(serial: str) -> int:
    return sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11


@given(serial=serials, position=st.integers(0, 8), replacement=st.integers(0, 9))
def test_check_digit_catches_single_digit_errors(serial: str, position: int, replacement: int) -> None:
    """Every single-digit mistake is caught, except the one S10 itself cannot see.

    S10 maps both residue 0 (11 -> 5) and residue 6 (5) to check digit 5, so a typo that
    moves the weighted sum between those residues keeps a valid-looking number. The test
    pins that exact gap rather than pretending it does not exist.
    """
    number = s10("EL", serial, "JP")
    digits = list(number[2:11])
    if int(digits[position]) == replacement:
        return
    digits[position] = str(replacement)
    mistyped = "EL" + "".join(digits) + "JP"
    if int(mistyped[10]) != s10_check_digit(mistyped[2:10]):
        with pytest.raises(InvalidNumberError, match="check digit"):
            parse_number(mistyped)
    else:
        assert parse_number(mistyped).value == mistyped
        assert position < 8
        assert {residue(serial), residue("".join(digits[:8]))} == {0, 6}
        assert digits[8] == "5"
