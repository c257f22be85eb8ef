"""keystore.pgp on its own (keys): refusals of unsafe or malformed input."""

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


def test_unencrypted_and_malformed_input() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    with pytest.raises(pgp.PgpError):
        pgp.parse_public_key(b"\x99" * 10)
    with pytest.raises(pgp.PgpError, match="too large"):
        pgp.parse_public_key(b"\x00" * (pgp.MAX_KEY_BYTES + 1))
    with pytest.raises(pgp.PgpError, match="expected a secret key"):
        pgp.parse_secret_key(alice.public.to_bytes())


def test_a_public_key_parse_never_keeps_secret_material() -> None:
    alice = pgp.generate("alice@example.test", NOW)
    parsed = pgp.parse_public_key(pgp.secret_key_bytes(alice))
    assert parsed.fingerprint == alice.fingerprint
    assert [tag for tag, _ in _packets(parsed.to_bytes()) if tag in (5, 7)] == []


def test_damaged_keys_only_ever_raise_pgp_error() -> None:
    """Truncations and bit flips of real data: a clear error each time, never a crash."""
    rng = random.Random(20260504)
    alice = pgp.generate("alice@example.test", NOW)
    key = alice.public.to_bytes()
    outcomes = {"refused": 0, "accepted": 0}
    for original in (key,):
        variants = [original[:cut] for cut in range(0, len(original), 7)]
        for _ in range(150):
            damaged = bytearray(original)
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            variants.append(bytes(damaged))
        for variant in variants:
            try:
                pgp.parse_public_key(variant)
                outcomes["accepted"] += 1
            except pgp.PgpError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 30
