"""Secret-key wrapping: AES-256-GCM under the master ring, bound to its row.

Threats: a database thief (or a rogue admin with SQL access) copying a wrapped
blob to another address's row, or editing its header to name another master-key
version; a blob under a retired version being opened again; error messages that
tell an attacker which check failed.
"""

from __future__ import annotations

import pytest

from keystore import wrap
from keystore.masterkey import MasterKeyRing
from keystore.wrap import DecryptionError

ALICE = ("alice@example.test", "A" * 40)
BOB = ("bob@example.test", "B" * 40)
SECRET = b"\x95\x01\x02secret key packet bytes"
RING = MasterKeyRing(primary=1, keys={1: bytes(range(32))})


def _wrap(ring: MasterKeyRing, who: tuple[str, str] = ALICE) -> bytes:
    return wrap.wrap(ring, SECRET, address=who[0], fingerprint=who[1])


def _unwrap(ring: MasterKeyRing, blob: bytes, who: tuple[str, str] = ALICE) -> bytes:
    return wrap.unwrap(ring, blob, address=who[0], fingerprint=who[1])


def test_round_trip_and_format() -> None:
    blob = _wrap(RING)
    assert blob[0] == wrap.FORMAT_V1
    assert wrap.blob_version(blob) == 1
    assert len(blob) == 1 + 4 + 12 + len(SECRET) + 16
    assert SECRET not in blob
    assert _unwrap(RING, blob) == SECRET


def test_known_answer_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen bytes: a change to the format, the KDF label or the AD breaks old blobs."""
    monkeypatch.setattr(wrap.os, "urandom", lambda n: bytes(range(100, 100 + n)))
    blob = _wrap(RING)
    assert blob.hex() == KAT_BLOB
    assert _unwrap(RING, bytes.fromhex(KAT_BLOB)) == SECRET


KAT_BLOB = (
    "01000000016465666768696a6b6c6d6e6f4a55b0ce9249934cef541bf2b7a1754c"
    "8481975efea42aa794628626ae25903c88cc80e88a0c2cb3dbfc"
)


def test_nonces_are_fresh() -> None:
    blobs = {_wrap(RING)[5:17] for _ in range(50)}
    assert len(blobs) == 50


def test_format_as_documented() -> None:
    """Rebuild the decryption from the module docstring alone, with plain primitives."""
    import struct

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    blob = _wrap(RING)
    header, nonce, sealed = blob[:5], blob[5:17], blob[17:]
    fields = [b"sealgate keystore wrap v1", header, ALICE[0].encode(), ALICE[1].encode()]
    ad = b"".join(struct.pack(">H", len(f)) + f for f in fields)
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"sealgate keystore wrap v1"
    ).derive(RING.keys[1])
    assert AESGCM(derived).decrypt(nonce, sealed, ad) == SECRET
    with pytest.raises(InvalidTag):  # the raw master key is never the AES key
        AESGCM(RING.keys[1]).decrypt(nonce, sealed, ad)


def test_blob_copied_to_another_row_does_not_open() -> None:
    blob = _wrap(RING, ALICE)
    with pytest.raises(DecryptionError) as info:
        _unwrap(RING, blob, BOB)
    with pytest.raises(DecryptionError):
        _unwrap(RING, blob, (ALICE[0], BOB[1]))  # same address, other key
    with pytest.raises(DecryptionError):
        _unwrap(RING, blob, (BOB[0], ALICE[1]))  # same key, other address
    assert str(info.value) == "the wrapped secret key cannot be opened"


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],
        lambda b: b[:20],
        lambda b: b"",
        lambda b: bytes([2]) + b[1:],
        lambda b: b[:1] + (2).to_bytes(4, "big") + b[5:],  # header names another version
        lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:],
        lambda b: b[:-1] + bytes([b[-1] ^ 0x80]),
    ],
    ids=["truncated-tag", "truncated", "empty", "format", "version", "ciphertext", "tag"],
)
def test_every_failure_is_the_same_error(damage: object) -> None:
    ring = RING.with_new_primary()
    ring = MasterKeyRing(primary=1, keys=ring.keys)  # versions 1 and 2 both present
    blob = wrap.wrap(ring, SECRET, address=ALICE[0], fingerprint=ALICE[1])
    with pytest.raises(DecryptionError) as info:
        _unwrap(ring, damage(blob))  # type: ignore[operator]
    assert str(info.value) == "the wrapped secret key cannot be opened"
    # No chained exception tells which check failed.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_new_blobs_use_the_primary_and_old_versions_still_open() -> None:
    old_blob = _wrap(RING)
    rotated = RING.with_new_primary()
    new_blob = _wrap(rotated)
    assert wrap.blob_version(new_blob) == 2
    assert _unwrap(rotated, old_blob) == SECRET
    assert _unwrap(rotated, new_blob) == SECRET


def test_blob_under_a_retired_version_opens_until_the_version_is_destroyed() -> None:
    """Retired means decrypt-only (an old backup must open); destroyed means gone."""
    old_blob = _wrap(RING)
    retired = RING.with_new_primary().with_retired(1)
    assert _unwrap(retired, old_blob) == SECRET
    assert wrap.blob_version(_wrap(retired)) == 2  # never wraps under a retired version
    destroyed = retired.with_destroyed(1)
    with pytest.raises(DecryptionError):
        _unwrap(destroyed, old_blob)


def test_unknown_version_is_refused() -> None:
    blob = _wrap(RING.with_new_primary())
    with pytest.raises(DecryptionError):
        _unwrap(RING, blob)
