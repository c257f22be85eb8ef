"""Records sealed under the master-key ring: bound to their purpose and row, moved by rotation.

Threat: a stolen database without the master key (the record must not show), a
blob copied to another row or used for another purpose, a version retired before
its records moved.
"""

from __future__ import annotations

import pytest

from keystore import seal
from keystore.masterkey import MasterKeyRing
from keystore.seal import SealedRecordError

DATA = b"To: carol@elsewhere.example\r\n\r\nhttps://portal.example/s/token\r\n"


@pytest.fixture
def ring() -> MasterKeyRing:
    return MasterKeyRing(primary=1, keys={1: bytes(range(32))})


def test_round_trip_hides_the_record(ring: MasterKeyRing) -> None:
    blob = seal.seal(ring, DATA, purpose="outbound queue", binding=b"Q1\0carol")
    assert DATA not in blob and b"/s/token" not in blob
    assert seal.blob_version(blob) == 1
    assert seal.open_sealed(ring, blob, purpose="outbound queue", binding=b"Q1\0carol") == DATA
    again = seal.seal(ring, DATA, purpose="outbound queue", binding=b"Q1\0carol")
    assert again != blob  # a fresh nonce each time


@pytest.mark.parametrize(
    ("purpose", "binding", "damage"),
    [
        ("outbound queue", b"Q2\0carol", False),  # moved to another row
        ("something else", b"Q1\0carol", False),  # used for another purpose
        ("outbound queue", b"Q1\0carol", True),  # a flipped bit
    ],
)
def test_every_misuse_fails_with_the_one_error(
    ring: MasterKeyRing, purpose: str, binding: bytes, damage: bool
) -> None:
    blob = bytearray(seal.seal(ring, DATA, purpose="outbound queue", binding=b"Q1\0carol"))
    if damage:
        blob[-1] ^= 1
    with pytest.raises(SealedRecordError):
        seal.open_sealed(ring, bytes(blob), purpose=purpose, binding=binding)


def test_short_or_unknown_format_and_versions_are_refused(ring: MasterKeyRing) -> None:
    blob = seal.seal(ring, DATA, purpose="p", binding=b"b")
    for broken in (blob[:20], b"\x02" + blob[1:]):
        with pytest.raises(SealedRecordError):
            seal.open_sealed(ring, broken, purpose="p", binding=b"b")
    other = MasterKeyRing(primary=7, keys={7: bytes(32)})
    with pytest.raises(SealedRecordError):
        seal.open_sealed(other, blob, purpose="p", binding=b"b")


def test_reseal_moves_a_record_to_the_new_primary_before_the_old_is_retired(
    ring: MasterKeyRing,
) -> None:
    blob = seal.seal(ring, DATA, purpose="p", binding=b"b")
    rotated = ring.with_new_primary()
    moved = seal.reseal(rotated, blob, purpose="p", binding=b"b")
    assert seal.blob_version(moved) == rotated.primary
    assert seal.reseal(rotated, moved, purpose="p", binding=b"b") is moved  # nothing to do
    retired = rotated.with_retired(ring.primary)
    assert seal.open_sealed(retired, moved, purpose="p", binding=b"b") == DATA
    assert seal.open_sealed(retired, blob, purpose="p", binding=b"b") == DATA  # decrypt-only
    with pytest.raises(SealedRecordError):
        seal.open_sealed(retired.with_destroyed(ring.primary), blob, purpose="p", binding=b"b")
