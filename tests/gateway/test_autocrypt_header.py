"""The `Autocrypt:` header parser: the spec's validity rules, and no other failure than
`InvalidHeader` whatever the header holds."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.autocrypt import header
from gateway.autocrypt.header import InvalidHeader, parse_value, read_message

KEY = bytes(range(40))
B64 = base64.b64encode(KEY).decode()
LIMIT = 4096


def message(*autocrypt: str, sender: str = "carol@partner.example", extra: str = "") -> bytes:
    fields = "".join(f"Autocrypt: {value}\r\n" for value in autocrypt)
    return (
        f"From: Carol <{sender}>\r\nTo: alice@example.test\r\n"
        f"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n{extra}{fields}\r\nbody\r\n"
    ).encode()


def test_a_valid_header_with_folded_keydata_and_ignored_underscore_attributes() -> None:
    folded = "\r\n ".join(B64[i : i + 20] for i in range(0, len(B64), 20))
    facts = read_message(
        message(f"addr=Carol@Partner.example; _x=1; prefer-encrypt=mutual; keydata=\r\n {folded}"),
        max_key_bytes=LIMIT,
    )
    assert facts.sender == "carol@partner.example"
    assert facts.header is not None and facts.header.keydata == KEY
    assert facts.header.prefer_encrypt == "mutual"
    assert facts.date == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"addr=carol@partner.example; keydata={B64}; type=1", "unknown critical attribute"),
        (f"keydata={B64}", "no valid addr"),
        ("addr=carol@partner.example", "no keydata"),
        ("addr=carol@partner.example; keydata=***", "not base64"),
        (f"addr=carol@partner.example; addr=x@y.z; keydata={B64}", "given twice"),
        ("addr=carol@partner.example; keydata=" + "A" * 8000, "larger than"),
    ],
)
def test_headers_against_the_rules_are_invalid(value: str, why: str) -> None:
    with pytest.raises(InvalidHeader, match=why):
        parse_value(value, max_key_bytes=LIMIT)


def test_prefer_encrypt_other_than_mutual_is_no_preference() -> None:
    parsed = parse_value(
        f"addr=a@b.example; prefer-encrypt=always; keydata={B64}", max_key_bytes=LIMIT
    )
    assert parsed.prefer_encrypt == "nopreference"


def test_which_messages_count() -> None:
    good = f"addr=carol@partner.example; keydata={B64}"
    assert read_message(message(good), max_key_bytes=LIMIT).header is not None
    # addr not the From: ignored; the message still counts as one from Carol.
    other = read_message(message(f"addr=mallory@x.example; keydata={B64}"), max_key_bytes=LIMIT)
    assert other.sender == "carol@partner.example" and other.header is None
    assert "does not match From" in other.problem
    # Two valid headers: neither is used.
    assert read_message(message(good, good), max_key_bytes=LIMIT).header is None
    # A report (a bounce quotes someone else's headers) and a two-address From: not eligible.
    report = message(good, extra="Content-Type: multipart/report; report-type=x\r\n")
    assert read_message(report, max_key_bytes=LIMIT).sender is None
    two = message(good, sender="carol@partner.example>, <eve@x.example")
    assert read_message(two, max_key_bytes=LIMIT).sender is None
    # Comments nested beyond the parser's recursion: no sender, and no error.
    deep = message(good, sender="carol@partner.example> " + "(" * 900 + ")" * 900 + " <x")
    assert read_message(deep, max_key_bytes=LIMIT).sender is None


def test_the_effective_date_is_never_later_than_now() -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    assert header.effective_date(now + dt.timedelta(days=9), now) == now
    assert header.effective_date(None, now) == now
    assert header.effective_date(now - dt.timedelta(days=1), now) == now - dt.timedelta(days=1)


@given(st.text(max_size=600))
def test_any_header_value_parses_or_is_invalid(value: str) -> None:
    try:
        parsed = parse_value(value, max_key_bytes=LIMIT)
    except InvalidHeader:
        return
    assert "@" in parsed.addr and parsed.keydata and len(parsed.keydata) <= LIMIT


@given(st.binary(max_size=2000))
def test_any_bytes_as_a_message_never_raise(raw: bytes) -> None:
    facts = read_message(b"Autocrypt: " + raw, max_key_bytes=LIMIT)
    assert facts.header is None or facts.sender == facts.header.addr


def test_gossip_headers_round_trip() -> None:
    raw = header.gossip_headers([("a@x.example", KEY), ("b@y.example", KEY[::-1])])
    values = [
        "".join(line.strip() for line in field.split(b":", 1)[1].decode().splitlines())
        for field in raw.split(b"Autocrypt-Gossip")[1:]
    ]
    parsed = [parse_value(v, max_key_bytes=LIMIT) for v in values]
    assert [(p.addr, p.keydata) for p in parsed] == [
        ("a@x.example", KEY),
        ("b@y.example", KEY[::-1]),
    ]
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
