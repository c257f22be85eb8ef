"""Decrypting stored mail in the sandbox: the output limit holds for every shape of bomb,
messages within it come back whole and verifiable, and the child's limits are the
caller's (issue 10, point 4). Sequoia decrypts in the child; its address space is
sized to the output limit, so a bomb ends it and that is reported as too large."""

from __future__ import annotations

import datetime as dt

import pytest

from keystore import packets, pgp, untrusted
from tests.openpgp import decrypt, encrypt
from tests.security.bombs import BZIP2, compression_bomb

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def bob() -> pgp.SecretKey:
    return pgp.generate("bob@example.test", dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("nested", [False, True])
def test_a_bomb_stops_at_the_output_limit(bob: pgp.SecretKey, nested: bool) -> None:
    bomb = compression_bomb(bob.public, inflated=256 * MIB, nested=nested)
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(bomb, [bob], max_output=4 * MIB)
    assert refused.value.kind == "too-large"


def test_past_the_limit_but_within_memory_is_too_large_as_well(bob: pgp.SecretKey) -> None:
    message = compression_bomb(bob.public, inflated=2 * MIB, prefix=b"P")
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(message, [bob], max_output=MIB)
    assert refused.value.kind == "too-large"


def test_within_the_limit_the_data_comes_back_whole(bob: pgp.SecretKey) -> None:
    for nested in (False, True):
        message = compression_bomb(bob.public, inflated=3 * MIB, prefix=b"P", nested=nested)
        opened = decrypt(message, [bob], max_output=4 * MIB)
        assert opened.data == b"P" + bytes(3 * MIB - 1)


def test_signed_messages_verify_in_the_sandbox(bob: pgp.SecretKey) -> None:
    alice = pgp.generate("alice@example.test", dt.datetime.now(dt.UTC))
    message = encrypt(b"signed words", [bob.public], alice, armor=False)
    opened = decrypt(message, [bob], [alice.public], max_output=MIB)
    assert (opened.data, opened.signature) == (b"signed words", "valid")
    assert decrypt(message, [bob], [bob.public], max_output=MIB).signature == "unknown-key"


def test_a_key_the_message_is_not_for_is_invalid_not_a_crash(bob: pgp.SecretKey) -> None:
    message = encrypt(b"x", [bob.public], armor=False)
    other = pgp.generate("carol@example.test", dt.datetime.now(dt.UTC))
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(message, [other], max_output=MIB)
    assert refused.value.kind == "invalid"


def test_input_over_the_budget_is_refused_before_any_child(bob: pgp.SecretKey) -> None:
    small = untrusted.Budget(max_bytes=1024, timeout=5.0, memory_mb=256)
    message = compression_bomb(bob.public, inflated=64 * 1024, prefix=bytes(range(256)) * 64)
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        untrusted.decrypt_message(
            message + bytes(2048), [pgp.secret_key_bytes(bob)], [], small, max_output=MIB
        )
    assert refused.value.kind == "too-large"
    assert packets.is_encrypted_message(message)


@pytest.mark.parametrize("nested", [False, True], ids=["bzip2", "zlib inside bzip2"])
def test_bzip2_within_the_limit_comes_back_whole(bob: pgp.SecretKey, nested: bool) -> None:
    """Sequoia, as pysequoia builds it, reads no BZip2 (RFC 9580 §9.4 lists it; GnuPG
    writes it with --compress-algo bzip2); the sandbox inflates it under the same bound."""
    kind = {"nested": True, "outer_algorithm": BZIP2} if nested else {"algorithm": BZIP2}
    message = compression_bomb(bob.public, inflated=3 * MIB, prefix=b"P", **kind)
    opened = decrypt(message, [bob], max_output=4 * MIB)
    assert (opened.data, opened.signature) == (b"P" + bytes(3 * MIB - 1), "unsigned")


@pytest.mark.parametrize("nested", [False, True], ids=["bzip2", "zlib inside bzip2"])
@pytest.mark.parametrize("inflated", [5 * MIB, 256 * MIB], ids=["past the limit", "bomb"])
def test_a_bzip2_bomb_stops_at_the_output_limit(
    bob: pgp.SecretKey, nested: bool, inflated: int
) -> None:
    kind = {"nested": True, "outer_algorithm": BZIP2} if nested else {"algorithm": BZIP2}
    bomb = compression_bomb(bob.public, inflated=inflated, **kind)
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(bomb, [bob], max_output=4 * MIB)
    assert refused.value.kind == "too-large"


def test_bzip2_data_without_integrity_protection_is_not_opened(bob: pgp.SecretKey) -> None:
    """The MDC is checked before anything is inflated: a changed byte refuses the message."""
    message = bytearray(compression_bomb(bob.public, inflated=MIB, algorithm=BZIP2))
    message[-30] ^= 0x01
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(bytes(message), [bob], max_output=4 * MIB)
    assert refused.value.kind == "invalid"
