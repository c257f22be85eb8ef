"""keystore.pgp on its own: message format, and refusals of unsafe or malformed input."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from keystore import pgp
from tests.keystore.test_no_secrets_in_db import _packets

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)


def _packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def test_message_is_pkesk_then_seipd_and_round_trips_binary_data() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    data = bytes(range(256)) * 4
    message = pgp.encrypt_and_sign(data, [alice.public], alice, armor=False)
    tags = [tag for tag, _ in _packets(message)]
    assert tags == [1, 18]  # PKESK, SEIPD; nothing unprotected, nothing else
    assert _packets(message)[1][1][0] == 1  # SEIPD version 1 (with MDC)
    opened = pgp.decrypt(message, [alice])
    assert opened.data == data
    assert opened.signer_key_ids == {alice.key_id}
    assert pgp.verify(opened, alice.public)
    assert not pgp.verify(opened, pgp.generate("mallory@example.test", NOW).public)
    assert "data" not in repr(opened) or repr(data) not in repr(opened)


def test_unprotected_encrypted_data_is_refused() -> None:
    """An old SED packet (tag 9, no MDC) is malleable; it is refused before decryption."""
    alice = pgp.generate("alice@example.test", NOW)
    message = pgp.encrypt_and_sign(b"secret", [alice.public], None, armor=False)
    (_, pkesk), (_, seipd) = _packets(message)
    downgraded = _packet(1, pkesk) + _packet(9, seipd[1:])
    with pytest.raises(pgp.PgpError, match="no integrity protection"):
        pgp.decrypt(downgraded, [alice])


def test_tampered_ciphertext_is_refused() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    message = bytearray(pgp.encrypt_and_sign(b"x" * 100, [alice.public], None, armor=False))
    message[-30] ^= 1
    with pytest.raises(pgp.PgpError):
        pgp.decrypt(bytes(message), [alice])


def test_unencrypted_and_malformed_input() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    with pytest.raises(pgp.PgpError):
        pgp.decrypt(alice.public.to_bytes(), [alice])
    with pytest.raises(pgp.PgpError):
        pgp.parse_public_key(b"\x99" * 10)
    with pytest.raises(pgp.PgpError, match="too large"):
        pgp.parse_public_key(b"\x00" * (pgp.MAX_KEY_BYTES + 1))
    with pytest.raises(pgp.PgpError, match="expected a secret key"):
        pgp.parse_secret_key(alice.public.to_bytes())
    with pytest.raises(ValueError):
        pgp.encrypt_and_sign(b"x", [], alice)


def test_a_public_key_parse_never_keeps_secret_material() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    parsed = pgp.parse_public_key(pgp.secret_key_bytes(alice))
    assert parsed.fingerprint == alice.fingerprint
    assert [tag for tag, _ in _packets(parsed.to_bytes()) if tag in (5, 7)] == []


def test_damaged_keys_and_messages_only_ever_raise_pgp_error() -> None:
    """Truncations and bit flips of real data: a clear error each time, never a crash."""
    rng = random.Random(20260504)
    alice = pgp.generate("alice@example.test", NOW)
    key = alice.public.to_bytes()
    message = pgp.encrypt_and_sign(b"hello" * 20, [alice.public], alice, armor=False)
    outcomes = {"refused": 0, "accepted": 0}
    for original, use in ((key, "key"), (message, "message")):
        variants = [original[:cut] for cut in range(0, len(original), 7)]
        for _ in range(150):
            damaged = bytearray(original)
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            variants.append(bytes(damaged))
        for variant in variants:
            try:
                if use == "key":
                    pgp.parse_public_key(variant)
                else:
                    pgp.decrypt(variant, [alice])
                outcomes["accepted"] += 1
            except pgp.PgpError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 200
