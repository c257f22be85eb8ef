"""TOTP and recovery codes: ±1 step, each code once, secrets wrapped under the master key.

Threats: a phished or shoulder-surfed code replayed within its 30 s; a stolen
database yielding the TOTP secrets or the recovery codes; a wrapped secret
copied onto another account's row.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import db, totp
from gateway.models import Account, AccountSecurity, RecoveryCode
from gateway.runtime import Runtime
from keystore.masterkey import MasterKeyRing, load_ring, save_ring

T0 = dt.datetime(2026, 11, 27, 10, 0, 5, tzinfo=dt.UTC)
ALICE = "alice@example.test"


def account(runtime: Runtime, email: str = ALICE) -> Account:
    with runtime.sessions() as session:
        row = session.scalar(sa.select(Account).where(Account.email == email))
        assert row is not None
        return row


def enrol(runtime: Runtime, email: str = ALICE, now: dt.datetime = T0) -> tuple[str, list[str]]:
    ring = totp.ring_for(runtime.settings)
    acct = account(runtime, email)
    with db.transaction(runtime.sessions) as session:
        secret = totp.start_enrolment(session, ring, acct.id, now)
    with db.transaction(runtime.sessions) as session:
        codes = totp.confirm_enrolment(
            session, ring, acct, totp.code_at(secret, totp.time_step(now)), now
        )
    assert codes is not None
    return secret, codes


def check(runtime: Runtime, typed: str, now: dt.datetime, email: str = ALICE) -> str | None:
    ring = totp.ring_for(runtime.settings)
    with db.transaction(runtime.sessions) as session:
        return totp.check_second_factor(session, ring, account(runtime, email).id, typed, now)


def test_known_answer_rfc6238() -> None:
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s -> 94287082 (8 digits).
    import base64

    import pyotp

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert pyotp.TOTP(secret, digits=8).at(59) == "94287082"
    assert totp.code_at(secret, 59 // 30) == "287082"


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_window_is_one_step_either_side(
    runtime: Runtime, mail_users: dict[str, str], offset: int, accepted: bool
) -> None:
    secret, _ = enrol(runtime, now=T0 - dt.timedelta(minutes=5))
    login_at = T0
    code = totp.code_at(secret, totp.time_step(login_at) + offset)
    assert (check(runtime, code, login_at) == "totp") is accepted


def test_a_code_is_accepted_once(runtime: Runtime, mail_users: dict[str, str]) -> None:
    secret, _ = enrol(runtime, now=T0 - dt.timedelta(minutes=5))
    code = totp.code_at(secret, totp.time_step(T0))
    assert check(runtime, code, T0) == "totp"
    assert check(runtime, code, T0) is None
    # Still refused 20 s later, while it is inside the window.
    assert check(runtime, code, T0 + dt.timedelta(seconds=20)) is None
    # An older, never-used code is refused too once a later one was used.
    older = totp.code_at(secret, totp.time_step(T0) - 1)
    assert check(runtime, older, T0) is None
    # The next step's code works.
    later = T0 + dt.timedelta(seconds=30)
    assert check(runtime, totp.code_at(secret, totp.time_step(later)), later) == "totp"


def test_the_enrolment_code_cannot_be_replayed_for_login(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    secret, _ = enrol(runtime, now=T0)
    assert check(runtime, totp.code_at(secret, totp.time_step(T0)), T0) is None


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x", "１２３４５６"])
def test_malformed_codes_are_refused(
    runtime: Runtime, mail_users: dict[str, str], typed: str
) -> None:
    enrol(runtime, now=T0 - dt.timedelta(minutes=5))
    assert check(runtime, typed, T0) is None


def test_spaces_in_a_code_are_fine(runtime: Runtime, mail_users: dict[str, str]) -> None:
    secret, _ = enrol(runtime, now=T0 - dt.timedelta(minutes=5))
    code = totp.code_at(secret, totp.time_step(T0))
    assert check(runtime, f" {code[:3]} {code[3:]} ", T0) == "totp"


def test_enrolment_keeps_its_secret_until_confirmed(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    ring = totp.ring_for(runtime.settings)
    acct = account(runtime)
    with db.transaction(runtime.sessions) as session:
        first = totp.start_enrolment(session, ring, acct.id, T0)
    with db.transaction(runtime.sessions) as session:
        assert totp.start_enrolment(session, ring, acct.id, T0 + dt.timedelta(minutes=3)) == first
        assert not totp.is_enabled(session, acct.id)
    with db.transaction(runtime.sessions) as session:
        assert totp.confirm_enrolment(session, ring, acct, "000000", T0) is None
        assert not totp.is_enabled(session, acct.id)
    with db.transaction(runtime.sessions) as session:
        codes = totp.confirm_enrolment(
            session, ring, acct, totp.code_at(first, totp.time_step(T0)), T0
        )
        assert codes is not None and totp.is_enabled(session, acct.id)
    with db.transaction(runtime.sessions) as session, pytest.raises(totp.TotpError):
        totp.start_enrolment(session, ring, acct.id, T0)


def test_secret_is_stored_wrapped_and_bound_to_its_account(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    secret, _ = enrol(runtime)
    alice, bob = account(runtime), account(runtime, "bob@example.test")
    with runtime.sessions() as session:
        row = session.get(AccountSecurity, alice.id)
        assert row is not None and row.totp_secret is not None
        blob = row.totp_secret
    assert secret.encode() not in blob
    ring = totp.ring_for(runtime.settings)
    assert totp.open_secret(ring, blob, alice.id) == secret
    with pytest.raises(totp.SecretUnavailable):
        totp.open_secret(ring, blob, bob.id)  # copied to another row
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(totp.SecretUnavailable):
        totp.open_secret(ring, bytes(tampered), alice.id)
    with pytest.raises(totp.SecretUnavailable):
        totp.open_secret(MasterKeyRing.generate(), blob, alice.id)  # another installation's key


def test_rewrap_moves_secrets_to_a_new_master_key_version(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    secret, _ = enrol(runtime)
    alice = account(runtime)
    old = load_ring(runtime.settings.data_dir)
    rotated = old.with_new_primary()
    with db.transaction(runtime.sessions) as session:
        assert totp.rewrap_secrets(session, rotated).moved == 1
    retired = rotated.with_retired(old.primary)
    with runtime.sessions() as session:
        row = session.get(AccountSecurity, alice.id)
        assert row is not None and row.totp_secret is not None
        assert totp.blob_version(row.totp_secret) == rotated.primary
        assert totp.open_secret(retired, row.totp_secret, alice.id) == secret


def test_an_unreadable_secret_refuses_codes_but_recovery_codes_still_work(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    secret, codes = enrol(runtime)
    alice = account(runtime)
    with db.transaction(runtime.sessions) as session:
        row = session.get(AccountSecurity, alice.id)
        assert row is not None
        row.totp_secret = totp.seal_secret(MasterKeyRing.generate(), secret, alice.id)
    later = T0 + dt.timedelta(minutes=1)
    assert check(runtime, totp.code_at(secret, totp.time_step(later)), later) is None
    assert check(runtime, codes[0], later) == "recovery"


def test_recovery_codes_are_ten_distinct_one_time_codes_stored_as_digests(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    _, codes = enrol(runtime)
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert all(c in totp.CODE_ALPHABET for c in "".join(groups))
    with runtime.sessions() as session:
        stored = session.scalars(sa.select(RecoveryCode.digest)).all()
    assert len(stored) == 10
    assert not any(code.replace("-", "") in digest for code in codes for digest in stored)

    later = T0 + dt.timedelta(minutes=1)
    assert check(runtime, codes[3], later) == "recovery"
    assert check(runtime, codes[3], later) is None  # spent
    # Case, dashes and spaces do not matter.
    assert check(runtime, codes[4].upper().replace("-", " "), later) == "recovery"
    with runtime.sessions() as session:
        assert totp.recovery_codes_left(session, account(runtime).id) == 8


def test_recovery_codes_belong_to_one_account(runtime: Runtime, mail_users: dict[str, str]) -> None:
    _, alice_codes = enrol(runtime)
    enrol(runtime, "bob@example.test")
    assert check(runtime, alice_codes[0], T0, "bob@example.test") is None
    assert check(runtime, alice_codes[0], T0) == "recovery"


def test_new_recovery_codes_replace_the_old_ones(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    _, old_codes = enrol(runtime)
    with db.transaction(runtime.sessions) as session:
        new_codes = totp.replace_recovery_codes(session, account(runtime).id, T0)
    assert set(old_codes).isdisjoint(new_codes)
    assert check(runtime, old_codes[0], T0) is None
    assert check(runtime, new_codes[0], T0) == "recovery"


def test_disable_forgets_secret_and_codes(runtime: Runtime, mail_users: dict[str, str]) -> None:
    secret, codes = enrol(runtime)
    with db.transaction(runtime.sessions) as session:
        acct = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        totp.disable(session, acct, T0)
    with runtime.sessions() as session:
        assert not totp.is_enabled(session, account(runtime).id)
        assert session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    later = T0 + dt.timedelta(minutes=1)
    assert check(runtime, totp.code_at(secret, totp.time_step(later)), later) is None
    assert check(runtime, codes[0], later) is None


def test_qr_code_is_a_local_svg_of_the_otpauth_uri() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", ALICE, "sealgate")
    assert uri.startswith(
        "otpauth://totp/sealgate:alice%40example.test?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    )
    data_uri = totp.qr_svg_data_uri(uri)
    assert data_uri.startswith("data:image/svg+xml")
    assert "%3Csvg" in data_uri and "http" not in data_uri.split(",", 1)[1].replace(
        "http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg", ""
    )


def test_a_secret_under_an_old_version_is_rewrapped_when_used(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    secret, _ = enrol(runtime, now=T0 - dt.timedelta(minutes=5))
    old = load_ring(runtime.settings.data_dir)
    save_ring(runtime.settings.data_dir, old.with_new_primary())  # rotate-master's first step
    assert check(runtime, totp.code_at(secret, totp.time_step(T0)), T0) == "totp"
    with runtime.sessions() as session:
        row = session.get(AccountSecurity, account(runtime).id)
        assert row is not None and row.totp_secret is not None
        assert totp.blob_version(row.totp_secret) == old.primary + 1


def _destroy_version_of_the_pending_set_up(runtime: Runtime, account_id: int) -> None:
    """The unconfirmed set-up sealed under a version that is then destroyed (`keys
    destroy-master` after a rotation that named it); every other record stays openable."""
    base = load_ring(runtime.settings.data_dir)
    doomed = base.with_new_primary()
    with db.transaction(runtime.sessions) as session:
        row = totp.security_row(session, account_id)
        row.totp_pending = totp.seal_secret(doomed, totp.new_secret(), account_id)
    rest = doomed.with_new_primary().with_retired(doomed.primary)
    save_ring(runtime.settings.data_dir, rest.with_destroyed(doomed.primary))


def test_a_set_up_whose_version_was_destroyed_is_discarded_on_confirm(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The code typed for it is refused with "start again" (no SecretUnavailable
    escaping as an error page), the dead set-up is gone, and a new one opens and
    confirms."""
    acct = account(runtime)
    with db.transaction(runtime.sessions) as session:
        totp.start_enrolment(session, totp.ring_for(runtime.settings), acct.id, T0)
    _destroy_version_of_the_pending_set_up(runtime, acct.id)
    ring = totp.ring_for(runtime.settings)
    # The caller's transaction commits (as the portal's request does): the drop stays.
    with (
        db.transaction(runtime.sessions) as session,
        pytest.raises(totp.TotpError, match="set-up had expired"),
    ):
        totp.confirm_enrolment(session, ring, acct, "123456", T0)
    with runtime.sessions() as session:
        row = session.get(AccountSecurity, acct.id)
        assert row is not None
        assert (row.totp_pending, row.totp_pending_at, row.totp_secret) == (None, None, None)
    later = T0 + dt.timedelta(minutes=1)
    with db.transaction(runtime.sessions) as session:
        fresh = totp.start_enrolment(session, ring, acct.id, later)
    with db.transaction(runtime.sessions) as session:
        codes = totp.confirm_enrolment(
            session, ring, acct, totp.code_at(fresh, totp.time_step(later)), later
        )
        assert codes is not None and totp.is_enabled(session, acct.id)


def test_a_rotation_discards_a_set_up_whose_version_was_destroyed(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Nothing is lost with it (the owner never confirmed it; the page makes a new one),
    and kept it would name a destroyed version forever: in every rotation's report and
    in every backup's list of versions in use."""
    from gateway import master_records

    acct = account(runtime)
    _destroy_version_of_the_pending_set_up(runtime, acct.id)
    ring = totp.ring_for(runtime.settings)
    with db.transaction(runtime.sessions) as session:
        done = totp.rewrap_secrets(session, ring)
    assert done.moved == 0
    assert [str(left) for left in done.left] == [
        f"the unconfirmed two-factor set-up of {ALICE}: not re-wrapped, master-key version"
        f" {ring.primary - 1} was destroyed; discarded, a new one is made when they next"
        " set up two-factor login"
    ]
    with runtime.sessions() as session:
        row = session.get(AccountSecurity, acct.id)
        assert row is not None and (row.totp_pending, row.totp_pending_at) == (None, None)
        assert ring.primary - 1 not in master_records.versions_in_use(session)
