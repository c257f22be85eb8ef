"""gateway.master_records.check_ring: another installation's ring is refused by what the
gateway seals itself too (DKIM keys, two-factor secrets, queued notifications), so a
database that holds none of those records' address keys is no longer waved through."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import sqlalchemy as sa

from gateway import accounts, db, master_records, queue, totp
from gateway.models import AccountSecurity, DkimKey
from gateway.runtime import Runtime
from keystore import ringcheck
from keystore.masterkey import MasterKeyRing
from keystore.models import StoredKey

NOW = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)


def _ring(runtime: Runtime) -> MasterKeyRing:
    return totp.ring_for(runtime.settings)


def _no_address_keys(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(StoredKey)) == 0


def _check(runtime: Runtime, ring: MasterKeyRing) -> None:
    with db.read_only(runtime.sessions) as session:
        master_records.check_ring(session, ring)


def _dkim_only(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "example.test", actor="test", ring=_ring(runtime))
        assert session.scalar(sa.select(sa.func.count()).select_from(DkimKey)) == 2


def _totp_only(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        account = accounts.add_account(session, runtime.hasher, "a@example.test", "pw", actor="t")
        session.flush()
        totp.start_enrolment(session, _ring(runtime), account.id, NOW)
        assert session.scalar(sa.select(AccountSecurity.totp_pending)) is not None


def _queue_only(runtime: Runtime) -> None:
    raw = b"Subject: a link\r\n\r\nhttps://example.test/s/token\r\n"
    with db.transaction(runtime.sessions) as session:
        sealed = queue.seal_raw(_ring(runtime), raw, queue_id="Q1", rcpt_to="r@elsewhere.test")
        queue.enqueue(
            session,
            queue_id="Q1",
            mail_from="",
            rcpt_to="r@elsewhere.test",
            raw=sealed,
            now=NOW,
            sealed=True,
        )


@pytest.mark.parametrize("records", [_dkim_only, _totp_only, _queue_only])
def test_a_database_without_address_keys_still_refuses_another_ring(
    runtime: Runtime, records: object
) -> None:
    assert callable(records)
    records(runtime)
    _no_address_keys(runtime)
    _check(runtime, _ring(runtime))
    with pytest.raises(ringcheck.WrongRingError) as caught:
        _check(runtime, MasterKeyRing.generate())  # version 1, another key
    assert caught.value.version == 1


def test_a_ring_sharing_no_version_with_the_records_is_refused(runtime: Runtime) -> None:
    _dkim_only(runtime)
    fresh = MasterKeyRing(primary=4, keys={4: secrets.token_bytes(32)})
    with pytest.raises(ringcheck.ForeignVersionsError, match="holds version 4, but"):
        _check(runtime, fresh)


def test_a_new_domain_is_not_sealed_under_another_ring(runtime: Runtime) -> None:
    """`domain add` with the wrong ring: one clear error, no DKIM key written."""
    _totp_only(runtime)
    with (
        pytest.raises(accounts.AccountError, match="it is not this installation's ring"),
        db.transaction(runtime.sessions) as session,
    ):
        accounts.add_domain(session, "other.test", actor="t", ring=MasterKeyRing.generate())
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(DkimKey)) == 0


def test_two_factor_enrolment_is_not_sealed_under_another_ring(runtime: Runtime) -> None:
    _dkim_only(runtime)
    with db.transaction(runtime.sessions) as session:
        account = accounts.add_account(session, runtime.hasher, "b@example.test", "pw", actor="t")
    with pytest.raises(ringcheck.WrongRingError), db.transaction(runtime.sessions) as session:
        totp.start_enrolment(session, MasterKeyRing.generate(), account.id, NOW)
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(AccountSecurity.totp_pending)) is None


def test_a_first_address_key_is_not_wrapped_under_another_ring(runtime: Runtime) -> None:
    """The domain's DKIM keys are the only sealed records: keystore's own check (address
    keys only) had nothing to try."""
    _dkim_only(runtime)
    with (
        pytest.raises(accounts.AccountError, match="it is not this installation's ring"),
        db.transaction(runtime.sessions) as session,
    ):
        account = accounts.add_account(session, runtime.hasher, "c@example.test", "pw", actor="t")
        accounts.add_address(
            session,
            runtime.hasher,
            "c@example.test",
            account,
            "pw",
            actor="t",
            ring=MasterKeyRing.generate(),
        )
    _no_address_keys(runtime)
