"""Mailbox names in modified UTF-7: every name round-trips, any bytes end in bounded time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymap.parsing.modutf7 import modutf7_encode

from gateway.imap import modutf7


@pytest.mark.parametrize(
    ("encoded", "name"),
    [
        (b"INBOX", "INBOX"),
        (b"&-", "&"),
        (b"Entw&APw-rfe", "Entwürfe"),
        (b"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),  # RFC 3501 §5.1.3
        (b"Tom &- Jerry", "Tom & Jerry"),
    ],
)
def test_names_from_the_rfc_and_mail_programs(encoded: bytes, name: str) -> None:
    assert modutf7.decode(encoded) == name


@pytest.mark.parametrize(
    "bad",
    [
        b"&ZZZ",
        b"&",
        b"a&b",
        b"&Jjo!-",
        b"&A-",
        b"&2D3-",
        b"&AAAA&-",
        b"&ZZZ-x&",
        b"a\x00b",
        b"tab\there",
        b"&AAA-",
    ],
)
def test_malformed_names_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        modutf7.decode(bad)


# pymap's encoder writes an "&" that follows a non-ASCII run bare, and control
# characters as an empty run: names it cannot make are left out here.
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40).filter(
    lambda n: "&" not in n
)


@given(names)
def test_every_name_pymap_encodes_decodes_to_itself(name: str) -> None:
    assert modutf7.decode(modutf7_encode(name)) == name


@given(st.binary(max_size=200))
def test_any_bytes_give_a_name_or_a_value_error(data: bytes) -> None:
    try:
        name = modutf7.decode(data)
    except ValueError:
        return
    assert isinstance(name, str)


@pytest.mark.parametrize("raw", [b"Caf\xc3\xa9", b"Caf\xe9", b"\xff", b"&AOk-\x80", b"a/\xc3\xbc"])
def test_a_raw_8_bit_byte_is_refused_not_read_as_latin_1(raw: bytes) -> None:
    with pytest.raises(modutf7.EightBitError):
        modutf7.decode(raw)


@given(st.binary(max_size=60), st.integers(0x80, 0xFF), st.binary(max_size=60))
def test_no_name_with_an_8_bit_byte_decodes(before: bytes, byte: int, after: bytes) -> None:
    """Whatever surrounds it, one byte over 127 refuses the name (RFC 3501 §5.1.3)."""
    with pytest.raises(modutf7.EightBitError):
        modutf7.decode(before + bytes([byte]) + after)
