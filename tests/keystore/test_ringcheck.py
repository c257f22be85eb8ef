"""keystore.ringcheck: a ring that opens none of the keys under one of its versions is
refused, whatever its version numbers say; the right ring, an empty database and a
few blobs written under a wrong ring after the right ones all pass."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from hypothesis import given
from hypothesis import strategies as st

from keystore import ringcheck, store, wrap
from keystore.masterkey import MasterKeyError, MasterKeyRing
from keystore.models import StoredKey
from tests.keystore.conftest import audit_sink

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
Sessions = so.sessionmaker[so.Session]


def _keys(sessions: Sessions, ring: MasterKeyRing, *addresses: str) -> None:
    with sessions.begin() as session:
        for address in addresses:
            store.get_or_create(session, ring, address, NOW, events=audit_sink)


def test_an_empty_database_passes_any_ring(sessions: Sessions) -> None:
    with sessions() as session:
        ringcheck.check_ring_opens_keys(session, MasterKeyRing.generate())


def test_the_right_ring_passes_and_another_installations_is_refused(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    _keys(sessions, ring, "a@example.test", "b@example.test")
    other = MasterKeyRing.generate()  # same version number 1, other key
    with sessions() as session:
        ringcheck.check_ring_opens_keys(session, ring)
        with pytest.raises(ringcheck.WrongRingError) as caught:
            ringcheck.check_ring_opens_keys(session, other, source="here")
    assert isinstance(caught.value, MasterKeyError)
    assert caught.value.version == 1
    assert str(caught.value) == (
        "the master key ring (here) does not open the keys the database holds under its"
        " version 1: it is not this installation's ring (restore the right master.keys;"
        " nothing was changed)"
    )


def test_blobs_wrapped_later_under_a_wrong_ring_do_not_block_the_right_one(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    wrong = MasterKeyRing.generate()
    _keys(sessions, ring, *(f"a{i}@example.test" for i in range(ringcheck.RING_CHECK_SAMPLE)))
    _keys(sessions, ring, *(f"x{i}@example.test" for i in range(5)))
    with sessions.begin() as session:  # as a command run with the wrong ring left them
        for row in session.scalars(sa.select(StoredKey).where(StoredKey.address.like("x%"))):
            secret = wrap.unwrap(
                ring, row.wrapped_secret, address=row.address, fingerprint=row.fingerprint
            )
            row.wrapped_secret = wrap.wrap(
                wrong, secret, address=row.address, fingerprint=row.fingerprint
            )
    with sessions() as session:
        ringcheck.check_ring_opens_keys(session, ring)
        # The oldest rows are the right ring's: the wrong one is still refused.
        with pytest.raises(ringcheck.WrongRingError):
            ringcheck.check_ring_opens_keys(session, wrong)


def test_at_most_a_few_rows_per_version_are_tried(
    sessions: Sessions, ring: MasterKeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    _keys(sessions, ring, *(f"u{i}@example.test" for i in range(6)))
    with sessions.begin() as session:  # the oldest rows no longer open: all are tried
        for row in session.scalars(sa.select(StoredKey).order_by(StoredKey.id).limit(5)):
            row.wrapped_secret = row.wrapped_secret[:-1] + bytes([row.wrapped_secret[-1] ^ 1])
    tried: list[str] = []
    real = wrap.unwrap

    def counting(r: MasterKeyRing, blob: bytes, *, address: str, fingerprint: str) -> bytes:
        tried.append(address)
        return real(r, blob, address=address, fingerprint=fingerprint)

    monkeypatch.setattr(wrap, "unwrap", counting)
    with sessions() as session, pytest.raises(ringcheck.WrongRingError):
        ringcheck.check_ring_opens_keys(session, ring)
    assert len(tried) == ringcheck.RING_CHECK_SAMPLE


def _ring_at(*versions: int) -> MasterKeyRing:
    """A ring of its own whose versions are `versions` (the last one primary)."""
    return MasterKeyRing(primary=versions[-1], keys={v: secrets.token_bytes(32) for v in versions})


def test_a_ring_that_holds_none_of_the_keys_versions_is_refused(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    """Another installation rotated twice (its keys under versions 2 and 3) against a
    fresh ring (version 1): no version in common, so no key to try; it used to pass,
    and the next key was wrapped under version 1 of the wrong ring."""
    rotated = ring.with_new_primary()
    _keys(sessions, rotated, "a@example.test")
    rotated = rotated.with_new_primary()
    _keys(sessions, rotated, "b@example.test")
    with sessions.begin() as session:  # the old version's rows are gone, as after a rewrap
        session.execute(sa.delete(StoredKey).where(StoredKey.master_version == 1))
    with sessions() as session:
        ringcheck.check_ring_opens_keys(session, rotated)
        with pytest.raises(ringcheck.ForeignVersionsError) as caught:
            ringcheck.check_ring_opens_keys(session, _ring_at(1), source="here")
    assert str(caught.value) == (
        "the master key ring (here) holds version 1, but the database holds its keys under"
        " versions 2, 3 only: it is not this installation's ring (restore the right"
        " master.keys; nothing was changed)"
    )


def test_a_ring_that_holds_some_of_the_versions_passes(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    """A version destroyed on purpose leaves its keys unreadable: not a wrong ring."""
    rotated = ring.with_new_primary()
    _keys(sessions, ring, "a@example.test")
    _keys(sessions, rotated, "b@example.test")
    without_first = MasterKeyRing(primary=2, keys={2: rotated.key(2)})
    with sessions() as session:
        ringcheck.check_ring_opens_keys(session, without_first)


@given(
    in_use=st.sets(st.integers(1, 6), max_size=4),
    held=st.sets(st.integers(1, 6), min_size=1, max_size=4),
)
def test_only_a_ring_sharing_no_version_in_use_is_refused(in_use: set[int], held: set[int]) -> None:
    ring = _ring_at(*sorted(held))
    if in_use and not in_use & held:
        with pytest.raises(ringcheck.ForeignVersionsError):
            ringcheck.check_ring_shares_versions(ring, in_use)
    else:
        ringcheck.check_ring_shares_versions(ring, in_use)
