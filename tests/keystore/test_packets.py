"""The hand-read session-key packets: right on real messages (ours, GnuPG's), and on any
input either an answer or a `PacketError`, in time and memory that do not grow with it."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore import packets, pgp
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import make_key
from tests.openpgp import encrypt


def key(address: str) -> pgp.SecretKey:
    return pgp.generate(address, dt.datetime.now(dt.UTC))


def test_our_messages_name_each_recipient_once() -> None:
    bob, carol = key("bob@example.test"), key("carol@example.test")
    binary = encrypt(b"hello", [bob.public, carol.public], bob, armor=False)
    for form in (binary, packets.armor(binary), encrypt(b"x", [bob.public])):
        found = packets.session_key_packets(form)
        assert {p.key_id for p in found} <= set(bob.key_ids | carol.key_ids)
    found = packets.session_key_packets(binary)
    assert len(found) == 2
    assert packets.recipient_key_ids(binary) == {bob.subkey_ids[0], carol.subkey_ids[0]}
    assert packets.dearmor(packets.armor(binary)) == binary
    assert packets.dearmor_whole(packets.armor(binary)) == binary
    assert packets.is_encrypted_message(binary)


def test_gnupg_messages_with_armor_headers_are_read(tmp_path: Path) -> None:
    home = tmp_path / "gpg"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    fingerprint = make_key(gpg, "Dora <dora@partner.example>")
    armored = gpg.run(
        "--armor",
        "--comment",
        "a comment line",
        "--trust-model",
        "always",
        "--encrypt",
        "-r",
        fingerprint,
        input=b"from gnupg\n",
    ).stdout
    assert b"Comment: a comment line" in armored
    found = packets.session_key_packets(armored)
    assert len(found) == 1 and len(found[0].key_id) == 16


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"-----BEGIN PGP MESSAGE-----\r\n",
        b"-----BEGIN PGP MESSAGE-----\r\n\r\n!!!!\r\n-----END PGP MESSAGE-----\r\n",
        bytes([0xC1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) + b"\x03" * 20,  # a 4 GiB "PKESK"
        bytes([0xC1, 0x05, 0x04, 0, 0, 0, 0]),  # version 4
        bytes([0xD2, 0x05, 1, 2, 3, 4, 5]),  # only encrypted data, no session key
    ],
)
def test_malformed_heads_are_clear_errors(data: bytes) -> None:
    with pytest.raises(packets.PacketError):
        packets.session_key_packets(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.booleans())
def test_any_input_is_an_answer_or_a_packet_error(data: bytes, armored: bool) -> None:
    if armored:
        data = packets.armor(data)
    try:
        found = packets.session_key_packets(data)
    except packets.PacketError:
        return
    assert 0 < len(found) <= packets.MAX_SESSION_KEY_PACKETS
    assert all(len(p.packet) <= packets.MAX_SESSION_KEY_PACKET_BYTES + 6 for p in found)


def test_only_the_head_of_a_huge_armored_message_is_decoded() -> None:
    bob = key("bob@example.test")
    binary = encrypt(b"z", [bob.public], armor=False) + b"\x00" * (8 << 20)
    head = packets.message_head(packets.armor(binary))
    assert len(head) == packets.MAX_HEAD_BYTES
    assert head == binary[: packets.MAX_HEAD_BYTES]


def _crc24_bitwise(data: bytes) -> int:
    """RFC 9580 §6.1.1's reference CRC-24, one bit at a time: an implementation of its
    own to check the library's against."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


@given(st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_the_armor_checksum_is_rfc_9580s_crc24(data: bytes) -> None:
    armored = packets.armor(data)
    line = next(x for x in armored.split(b"\r\n") if x.startswith(b"=") and len(x) == 5)
    assert base64.b64decode(line[1:]) == _crc24_bitwise(data).to_bytes(3, "big")
    assert packets.dearmor(armored) == data
