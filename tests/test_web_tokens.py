"""Signed tokens: they round-trip, survive a restart (same secret), and any change to one fails."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from notifier.core.links import ALL, Claim, Links, Purpose, Signer

SECRET = "the shop's secret, long enough to sign"
signer = Signer(SECRET)

addresses = st.emails().filter(lambda a: "\n" not in a)
numbers = st.one_of(st.just(ALL), st.from_regex(r"[A-Z]{2}[0-9]{9}JP|[0-9]{12}", fullmatch=True))
purposes = st.sampled_from(list(Purpose))
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(purposes, addresses, numbers)
def test_a_token_says_who_and_what_and_nothing_needs_looking_up(
    purpose: Purpose, email: str, number: str
) -> None:
    token = signer.make(purpose, email, number)
    assert set(token) <= set(URL_SAFE)
    assert signer.check(purpose, token) == Claim(recipient=email, scope=number)
    # Derived from the secret alone: a restarted daemon (a new Signer) accepts it.
    assert Signer(SECRET).check(purpose, token) == Claim(recipient=email, scope=number)


@given(purposes, addresses, numbers)
def test_one_purposes_token_never_opens_the_other(purpose: Purpose, email: str, number: str) -> None:
    token = signer.make(purpose, email, number)
    for other in Purpose:
        if other is not purpose:
            assert signer.check(other, token) is None


@given(purposes, addresses, numbers, st.data())
def test_changing_any_character_of_a_token_fails(
    purpose: Purpose, email: str, number: str, data: st.DataObject
) -> None:
    token = signer.make(purpose, email, number)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(URL_SAFE).filter(lambda c: c != token[position]))
    tampered = token[:position] + replacement + token[position + 1 :]
    assert signer.check(purpose, tampered) is None


@given(purposes, addresses, numbers, st.data())
def test_changing_any_byte_of_a_tokens_content_fails(
    purpose: Purpose, email: str, number: str, data: st.DataObject
) -> None:
    token = signer.make(purpose, email, number)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert signer.check(purpose, forged) is None


@given(purposes, addresses, numbers, st.integers(1, 3))
def test_cutting_or_extending_a_token_fails(purpose: Purpose, email: str, number: str, cut: int) -> None:
    token = signer.make(purpose, email, number)
    assert signer.check(purpose, token[:-cut]) is None
    assert signer.check(purpose, token + "A" * cut) is None
    assert signer.check(purpose, token + "=") is None


@given(purposes, addresses, numbers)
def test_another_secret_rejects_every_token(purpose: Purpose, email: str, number: str) -> None:
    token = signer.make(purpose, email, number)
    assert Signer(SECRET + " rotated").check(purpose, token) is None


@given(st.text(max_size=300))
def test_garbage_is_refused_without_an_error(garbage: str) -> None:
    for purpose in Purpose:
        assert signer.check(purpose, garbage) is None


def test_another_address_or_parcel_cannot_be_claimed_with_a_known_token() -> None:
    token = signer.make(Purpose.UNSUBSCRIBE, "a@example.com", "EJ123456785JP")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    swapped = raw.replace(b"a@example.com", b"b@example.com")
    assert signer.check(Purpose.UNSUBSCRIBE, base64.urlsafe_b64encode(swapped).rstrip(b"=").decode()) is None


def test_links_put_the_tokens_under_the_public_url() -> None:
    links = Links(public_url="https://track.example.com", signer=signer)
    unsubscribe = links.unsubscribe("a@example.com", "EJ123456785JP")
    assert unsubscribe.startswith("https://track.example.com/u/")
    assert signer.check(Purpose.UNSUBSCRIBE, unsubscribe.rsplit("/", 1)[1]) == Claim(
        "a@example.com", "EJ123456785JP"
    )
    tracking = links.tracking("a@example.com", "EJ123456785JP")
    assert signer.check(Purpose.TRACK, tracking.rsplit("/", 1)[1]) == Claim("a@example.com", "EJ123456785JP")
    assert "secret" not in repr(signer)
