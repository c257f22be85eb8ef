"""keystore.messages on its own: what Sequoia makes, and what it refuses to open."""

from __future__ import annotations

import datetime as dt
import pickle
import random

import pytest

from keystore import messages, pgp, untrusted
from tests.keystore.test_no_secrets_in_db import _packets
from tests.openpgp import decrypt, encrypt, signing

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


@pytest.fixture(scope="module")
def alice() -> pgp.SecretKey:
    return pgp.generate("alice@example.test", NOW)


def test_message_is_pkesk_then_seipd_and_round_trips_binary_data(alice: pgp.SecretKey) -> None:
    data = bytes(range(256)) * 4
    message = encrypt(data, [alice.public], alice, armor=False)
    tags = [tag for tag, _ in _packets(message)]
    assert tags == [1, 18]  # PKESK, SEIPD; nothing unprotected, nothing else
    assert _packets(message)[1][1][0] == 1  # SEIPD version 1 (with MDC)
    opened = decrypt(message, [alice], [alice.public])
    assert opened.data == data
    assert (opened.signature, opened.signer) == ("valid", alice.fingerprint)
    mallory = pgp.generate("mallory@example.test", NOW)
    assert decrypt(message, [alice], [mallory.public]).signature == "unknown-key"
    assert decrypt(message, [alice]).signature == "unknown-key"
    assert repr(data) not in repr(opened)


def test_an_unsigned_message_says_so(alice: pgp.SecretKey) -> None:
    opened = decrypt(encrypt(b"plain", [alice.public]), [alice], [alice.public])
    assert (opened.data, opened.signature, opened.signer) == (b"plain", "unsigned", None)


def test_a_signature_by_the_senders_key_that_does_not_verify_is_invalid(
    alice: pgp.SecretKey,
) -> None:
    """The signature names the sender's key, but the key given for it is another one with
    the same key id claimed: Sequoia finds no valid signature, the status is "invalid"."""
    bob = pgp.generate("bob@example.test", NOW)
    message = encrypt(b"signed by bob", [alice.public], bob)
    opened = decrypt(message, [alice], [alice.public])
    assert opened.signature == "unknown-key"
    pretender = pgp.PublicKey(bob.fingerprint, bob.key_id, bob.subkey_ids, alice.public._key)
    assert decrypt(message, [alice], [pretender]).signature == "invalid"


def test_the_signing_key_is_parsed_per_message_and_never_pickled(alice: pgp.SecretKey) -> None:
    key = signing(alice)
    assert key.fingerprint == key.public.fingerprint == alice.fingerprint
    assert repr(key) == f"SigningKey(fingerprint={alice.fingerprint!r})"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(pgp.PgpError):
        other = pgp.generate("x@example.test", NOW).public
        messages.signing_key(pgp.secret_key_bytes(alice), other)
    with pytest.raises(pgp.PgpError):
        messages.signing_key(b"\x99" * 40, alice.public)


def test_unprotected_encrypted_data_is_refused(alice: pgp.SecretKey) -> None:
    """An old SED packet (tag 9, no MDC) is malleable; Sequoia refuses to open it."""
    message = encrypt(b"secret", [alice.public], armor=False)
    (_, pkesk), (_, seipd) = _packets(message)
    downgraded = _packet(1, pkesk) + _packet(9, seipd[1:])
    with pytest.raises(pgp.PgpError):
        messages.open_message(downgraded, [pgp.secret_key_bytes(alice)], [])
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(downgraded, [alice])
    assert refused.value.kind == "invalid"


def test_tampered_ciphertext_is_refused(alice: pgp.SecretKey) -> None:
    message = bytearray(encrypt(b"x" * 100, [alice.public], armor=False))
    message[-30] ^= 1
    with pytest.raises(untrusted.UntrustedDataError) as refused:
        decrypt(bytes(message), [alice])
    assert refused.value.kind == "invalid"


def test_unencrypted_input_and_no_recipient(alice: pgp.SecretKey) -> None:
    with pytest.raises(pgp.PgpError):
        messages.open_message(alice.public.to_bytes(), [pgp.secret_key_bytes(alice)], [])
    with pytest.raises(ValueError):
        messages.encrypt(b"x", [], signing(alice))


def test_damaged_messages_only_ever_raise_pgp_error(alice: pgp.SecretKey) -> None:
    """Truncations and bit flips of a real message: a clear error each time, never a crash
    (in process here: the sandbox runs the same function under limits)."""
    rng = random.Random(20260504)
    message = encrypt(b"hello" * 20, [alice.public], alice, armor=False)
    secret = pgp.secret_key_bytes(alice)
    variants = [message[:cut] for cut in range(0, len(message), 7)]
    for _ in range(150):
        damaged = bytearray(message)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        variants.append(bytes(damaged))
    refused = 0
    for variant in variants:
        try:
            messages.open_message(variant, [secret], [alice.public.to_bytes()])
        except pgp.PgpError:
            refused += 1
    assert refused > 150
