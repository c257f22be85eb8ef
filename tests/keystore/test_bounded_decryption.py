"""Decrypting stored mail in the sandbox: the output limit holds for every shape of bomb,
messages within it come back whole and verifiable, and the child's limits are the
caller's (issue 10, point 4)."""

from __future__ import annotations

import datetime as dt

import pytest

from keystore import packets, pgp, untrusted
from tests.security.bombs import compression_bomb

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def bob() -> pgp.SecretKey:
    return pgp.generate("bob@example.test", dt.datetime.now(dt.UTC))


def open_in_sandbox(message: bytes, bob: pgp.SecretKey, max_output: int) -> pgp.Decrypted:
    found = packets.session_key_packets(message)
    key = pgp.session_key([(p.key_id, p.packet) for p in found], [bob])
    return untrusted.decrypt_message(
        message, key, untrusted.STORED_MESSAGE_BUDGET, max_output=max_output
    )


@pytest.mark.parametrize("nested", [False, True])
def test_a_bomb_stops_at_the_output_limit(bob: pgp.SecretKey, nested: bool) -> None:
    bomb = compression_bomb(bob.public, bob, inflated=256 * MIB, nested=nested)
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        open_in_sandbox(bomb, bob, max_output=4 * MIB)
    assert refused.value.kind == "too-large"


def test_within_the_limit_the_data_comes_back_whole(bob: pgp.SecretKey) -> None:
    for nested in (False, True):
        message = compression_bomb(bob.public, bob, inflated=3 * MIB, prefix=b"P", nested=nested)
        opened = open_in_sandbox(message, bob, max_output=4 * MIB)
        assert opened.data == b"P" + bytes(3 * MIB - 1)


def test_signed_messages_verify_after_the_sandbox(bob: pgp.SecretKey) -> None:
    alice = pgp.generate("alice@example.test", dt.datetime.now(dt.UTC))
    message = pgp.encrypt_and_sign(b"signed words", [bob.public], alice, armor=False)
    opened = open_in_sandbox(message, bob, max_output=MIB)
    assert opened.data == b"signed words"
    assert pgp.verify(opened, alice.public)
    assert not pgp.verify(opened, bob.public)
    forged = pgp.Decrypted(b"other words", opened.signer_key_ids, opened.signatures)
    assert not pgp.verify(forged, alice.public)


def test_a_wrong_session_key_is_invalid_not_a_crash(bob: pgp.SecretKey) -> None:
    message = pgp.encrypt_and_sign(b"x", [bob.public], None, armor=False)
    wrong = pgp.SessionKey(9, bytes(32))
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        untrusted.decrypt_message(message, wrong, untrusted.STORED_MESSAGE_BUDGET, max_output=MIB)
    assert refused.value.kind == "invalid"


def test_input_over_the_budget_is_refused_before_any_child(bob: pgp.SecretKey) -> None:
    small = untrusted.Budget(max_bytes=1024, timeout=5.0, memory_mb=256)
    message = compression_bomb(bob.public, bob, inflated=64 * 1024, prefix=bytes(range(256)) * 64)
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        untrusted.decrypt_message(
            message + bytes(2048), pgp.SessionKey(9, bytes(32)), small, max_output=MIB
        )
    assert refused.value.kind == "too-large"
