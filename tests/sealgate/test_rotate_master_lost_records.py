"""A master-key rotation with records under a destroyed version finishes, and names them.

Failure: a TOTP secret or a DKIM key sealed under a master-key version that was
destroyed later (sealed by a process that still held the old ring, or a version
destroyed while `sealgate keys destroy-master` listed them) made `sealgate keys
rotate-master` end in a traceback (SecretUnavailable, SealedRecordError), and every
later run resumed the same rotation and failed again: no master-key rotation could
ever finish. An address key under a destroyed version stopped it the same way, with
an error. The background re-wrap of `sealgate serve` failed alike. Such a record is
lost either way; now it is left as it is and named by its owner (which account's
two-factor login, which domain's DKIM key, which address's key; never a secret),
with what to do, and the rotation finishes for everything else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, db, master_records, queue, totp
from gateway.admin import Actor
from gateway.admin import keys as admin_keys
from gateway.dkim import keys as dkim_keys
from gateway.models import AccountSecurity, DkimKey, Domain, QueueItem
from gateway.runtime import Runtime
from keystore import rotation, seal, store, wrap
from keystore.masterkey import MasterKeyRing, load_ring, save_ring
from keystore.models import StoredKey
from tests.keystore.conftest import audit_sink, run_sealgate

ALICE, BOB = "alice@example.test", "bob@example.test"
ALICE_SECRET, BOB_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
ADMIN = Actor("root@example.test", ip="192.0.2.7", user_agent="test")


def account_id(session: so.Session, email: str) -> int:
    account = accounts.find_account(session, email)
    assert account is not None
    return account.id


def rotated_then_stale_records(runtime: Runtime) -> tuple[MasterKeyRing, str]:
    """Rotate to version 2 (version 1 retired), then seal records under version 1 as a
    process still holding the old ring would: Alice's TOTP secret and the Ed25519 DKIM
    key of example.test. Bob's TOTP secret is under version 2, as it should be.
    Returns the old ring and the DKIM private key (base64), to look for in the output."""
    data_dir = runtime.settings.data_dir
    old = load_ring(data_dir, env={})
    assert old.primary == 1
    rotation.rotate_master(
        data_dir, runtime.sessions, NOW, events=audit_sink, other_blobs=master_records.rewrap
    )
    ring = runtime.ring.get()
    assert ring.primary == 2 and ring.decrypt_only_versions == [1]
    with db.transaction(runtime.sessions) as session:
        for email, secret, under in ((ALICE, ALICE_SECRET, old), (BOB, BOB_SECRET, ring)):
            ident = account_id(session, email)
            session.add(
                AccountSecurity(
                    account_id=ident, totp_secret=totp.seal_secret(under, secret, ident)
                )
            )
        domain = session.scalar(sa.select(Domain).where(Domain.name == "example.test"))
        assert domain is not None
        [ed] = [k for k in dkim_keys.domain_keys(session, domain.id) if k.algorithm == "ed25519"]
        private = dkim_keys.open_key(ring, ed, domain.name).private
        ed.sealed_private_key = seal.seal(
            old,
            private,
            purpose=dkim_keys.SEAL_PURPOSE,
            binding=f"{domain.name}\0{ed.selector}".encode(),
        )
        ed.master_version = 1
    return old, private.decode("ascii")


def destroy_version_1(runtime: Runtime) -> None:
    ring = load_ring(runtime.settings.data_dir, env={})
    save_ring(runtime.settings.data_dir, ring.with_destroyed(1))


def totp_versions(runtime: Runtime) -> dict[str, int]:
    with db.read_only(runtime.sessions) as session:
        return {
            email: totp.blob_version(blob)
            for email in (ALICE, BOB)
            if (
                blob := session.scalar(
                    sa.select(AccountSecurity.totp_secret).where(
                        AccountSecurity.account_id == account_id(session, email)
                    )
                )
            )
            is not None
        }


def dkim_versions(runtime: Runtime) -> dict[str, int]:
    with db.read_only(runtime.sessions) as session:
        rows = session.execute(sa.select(DkimKey.algorithm, DkimKey.master_version))
        return {algorithm: version for algorithm, version in rows}


ALICE_2FA = (
    f"skipped: the two-factor secret of {ALICE}: not re-wrapped, master-key version 1 was"
    f" destroyed; {ALICE} signs in with a recovery code, then turns two-factor login off and"
    " on again (portal: Security) to get a new one"
)


def dkim_line(selector: str) -> str:
    return (
        f"skipped: the DKIM key {selector} (ed25519) of example.test: not re-wrapped,"
        " master-key version 1 was destroyed; it signs nothing; `sealgate keys renew-dkim"
        " example.test` replaces what does not open (then publish the new record)"
    )


def ed_selector(runtime: Runtime) -> str:
    with db.read_only(runtime.sessions) as session:
        selector = session.scalar(sa.select(DkimKey.selector).where(DkimKey.algorithm == "ed25519"))
    assert selector is not None
    return selector


def test_rotate_master_skips_them_names_them_and_finishes(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    _old, dkim_private = rotated_then_stale_records(runtime)
    destroy_version_1(runtime)

    result = run_sealgate(test_env, "keys", "rotate-master")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert skipped == [ALICE_2FA, dkim_line(ed_selector(runtime))]
    assert (
        "done: version 2 retired; everything is wrapped under version 3 except 2 record(s)"
        " that cannot be opened (listed above, left as they are)"
    ) in result.stdout
    for secret in (ALICE_SECRET, BOB_SECRET, dkim_private):
        assert secret not in result.stdout + result.stderr

    # Everything else moved; the version is retired; the lost records are as they were.
    ring = load_ring(runtime.settings.data_dir, env={})
    assert (ring.primary, ring.decrypt_only_versions, ring.destroyed_versions) == (3, [2], [1])
    assert totp_versions(runtime) == {ALICE: 1, BOB: 3}
    assert dkim_versions(runtime) == {"ed25519": 1, "rsa": 3}
    with db.read_only(runtime.sessions) as session:
        bob = account_id(session, BOB)
        blob = session.scalar(
            sa.select(AccountSecurity.totp_secret).where(AccountSecurity.account_id == bob)
        )
        assert blob is not None and totp.open_secret(ring, blob, bob) == BOB_SECRET
        assert {row.master_version for row in session.scalars(sa.select(StoredKey))} <= {3}

    # The next rotation is not stopped either, and says the same.
    again = run_sealgate(test_env, "keys", "rotate-master")
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stderr.splitlines() if line.startswith("skipped:")] == skipped
    assert load_ring(runtime.settings.data_dir, env={}).primary == 4


def test_an_address_key_under_a_destroyed_version_no_longer_stops_every_rotation(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """Left behind by `destroy-master`: every rotation after it failed on that key."""
    with db.transaction(runtime.sessions) as session:
        key = store.get_or_create(session, runtime.ring.get(), ALICE, NOW, events=audit_sink)
        fingerprint, blob = key.fingerprint, key.wrapped_secret
    assert run_sealgate(test_env, "keys", "rotate-master").returncode == 0
    with db.transaction(runtime.sessions) as session:  # an old backup's blob, put back
        row = store.current_key(session, ALICE)
        assert row is not None
        row.wrapped_secret, row.master_version = blob, 1
    destroy_version_1(runtime)

    result = run_sealgate(test_env, "keys", "rotate-master")
    assert result.returncode == 0, result.stderr
    assert (
        f"skipped: the secret key {fingerprint} of {ALICE}: not re-wrapped, master-key version 1"
        " was destroyed; what was encrypted to it stays unreadable; `sealgate keys rotate"
        f" {ALICE}` gives the address a new key"
    ) in result.stderr.splitlines()
    assert "1 record(s) that cannot be opened" in result.stdout
    assert load_ring(runtime.settings.data_dir, env={}).decrypt_only_versions == [2]

    # The way out it names works: the address gets a key the ring opens.
    renewed = run_sealgate(test_env, "keys", "rotate", ALICE)
    assert renewed.returncode == 0, renewed.stderr
    with db.read_only(runtime.sessions) as session:
        current = store.current_key(session, ALICE)
        assert current is not None and current.master_version == 3
        assert wrap.blob_version(current.wrapped_secret) == 3
    last = run_sealgate(test_env, "keys", "rotate-master")
    assert last.returncode == 0, last.stderr
    assert "skipped: the secret key" in last.stderr  # the old key stays, named, decrypt-only
    assert "`sealgate keys rotate" not in last.stderr  # but it is no longer the current one


def test_the_background_rotation_of_serve_finishes_and_says_what_it_left(
    runtime: Runtime, mail_users: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rotated_then_stale_records(runtime)
    destroy_version_1(runtime)
    fast = runtime.settings.replace(admin={"rotation_poll_interval": 0.05})
    rt = Runtime(fast, runtime.engine, runtime.sessions, runtime.hasher, runtime.ring)

    async def scenario() -> admin_keys.JobProgress:
        stop = asyncio.Event()
        task = asyncio.create_task(admin_keys.run_rotations(rt, stop))
        with db.transaction(rt.sessions) as session:
            job_id = admin_keys.request_master_rotation(session, actor=ADMIN, now=NOW).id
        try:
            for _ in range(1200):
                with db.read_only(rt.sessions) as session:
                    progress = admin_keys.progress(session, job_id)
                if progress.state in (admin_keys.DONE, admin_keys.FAILED):
                    return progress
                await asyncio.sleep(0.05)
            raise AssertionError("the rotation job never ended")
        finally:
            stop.set()
            await task

    progress = asyncio.run(scenario())
    assert progress.state == admin_keys.DONE
    # Shown on the console's progress page: its fixes in the console's terms, no command.
    assert progress.error == (
        "2 record(s) cannot be opened and were left as they are: "
        + ALICE_2FA.removeprefix("skipped: ")
        + f"; the DKIM key {ed_selector(runtime)} (ed25519) of example.test: not re-wrapped,"
        " master-key version 1 was destroyed; it signs nothing; ask the server's operator to"
        " renew the DKIM keys of example.test that do not open, then publish the new DNS"
        " record"
    )
    assert "sealgate " not in progress.error
    assert "master-key rotation check failed" not in caplog.text
    skipped = [r for r in caplog.records if "skipped:" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING, logging.WARNING]
    assert load_ring(runtime.settings.data_dir, env={}).decrypt_only_versions == [2]
    assert totp_versions(runtime) == {ALICE: 1, BOB: 3}


# -- the invariant, over any mix of records ---------------------------------------------

STATES = ("primary", "old", "destroyed", "foreign", "damaged")
TOTP_SLOTS = ((ALICE, "totp_secret"), (ALICE, "totp_pending"), (BOB, "totp_secret"))
NOTIFICATION = b"Subject: a link\r\n\r\nhttps://portal.example/s/token\r\n"
DAMAGED = b"\x09" + bytes(40)  # a blob format this code does not know


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    totp_states=st.lists(st.sampled_from(STATES), min_size=3, max_size=3),
    dkim_states=st.lists(st.sampled_from(STATES), min_size=2, max_size=2),
    queue_states=st.lists(st.sampled_from(STATES), max_size=6),
)
def test_every_record_is_moved_or_named_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    totp_states: list[str],
    dkim_states: list[str],
    queue_states: list[str],
) -> None:
    """Whatever mix of two-factor secrets, DKIM keys and queued notifications: each one
    under an old version the ring holds moves to the primary and opens there; each one
    that does not open (version destroyed, not in the ring, or a damaged blob) is named
    once by its owner and left byte for byte (an unconfirmed set-up: dropped); nothing
    raises."""
    base = load_ring(runtime.settings.data_dir, env={})
    v1 = base.primary
    old = MasterKeyRing(primary=v1, keys={v1: base.key(v1)})
    ring = base.with_new_primary().with_new_primary()  # v1+1 to be destroyed, v1+2 primary
    doomed = MasterKeyRing(primary=v1 + 1, keys={v1 + 1: ring.key(v1 + 1)})
    ring = ring.with_retired(v1).with_retired(v1 + 1).with_destroyed(v1 + 1)
    foreign = MasterKeyRing(primary=v1 + 7, keys={v1 + 7: bytes(32)})
    sealers = {"primary": ring, "old": old, "destroyed": doomed, "foreign": foreign}
    lost = ("destroyed", "foreign", "damaged")
    session = runtime.sessions()
    try:
        expected_left: list[str] = []
        before: dict[str, bytes] = {}
        secrets_by_slot: dict[tuple[str, str], str] = {}
        for (email, column), state in zip(TOTP_SLOTS, totp_states, strict=True):
            ident = account_id(session, email)
            row = totp.security_row(session, ident)
            secret = totp.new_secret()
            blob = (
                DAMAGED if state == "damaged" else totp.seal_secret(sealers[state], secret, ident)
            )
            setattr(row, column, blob)
            secrets_by_slot[email, column] = secret
            before[f"{email} {column}"] = blob
            if state in lost:
                kind = (
                    "the two-factor secret"
                    if column == "totp_secret"
                    else ("the unconfirmed two-factor set-up")
                )
                expected_left.append(f"{kind} of {email}")
        domain = session.scalar(sa.select(Domain).where(Domain.name == "example.test"))
        assert domain is not None
        privates: dict[str, bytes] = {}
        for key, state in zip(dkim_keys.domain_keys(session, domain.id), dkim_states, strict=True):
            private = dkim_keys.open_key(base, key, domain.name).private
            privates[key.selector] = private
            binding = f"{domain.name}\0{key.selector}".encode()
            if state == "damaged":
                key.sealed_private_key, key.master_version = DAMAGED, v1
            else:
                sealer = sealers[state]
                key.sealed_private_key = seal.seal(
                    sealer, private, purpose=dkim_keys.SEAL_PURPOSE, binding=binding
                )
                key.master_version = sealer.primary
            before[key.selector] = key.sealed_private_key
            if state in lost:
                expected_left.append(
                    f"the DKIM key {key.selector} ({key.algorithm}) of example.test"
                )
        for n, state in enumerate(queue_states):
            qid, rcpt = f"Q{n:02d}", f"r{n}@elsewhere.example"
            blob = (
                DAMAGED
                if state == "damaged"
                else queue.seal_raw(sealers[state], NOTIFICATION, queue_id=qid, rcpt_to=rcpt)
            )
            queue.enqueue(
                session, queue_id=qid, mail_from="", rcpt_to=rcpt, raw=blob, now=NOW, sealed=True
            )
            before[qid] = blob
            if state in lost:
                expected_left.append(f"the queued notification {qid} to {rcpt}")
        session.flush()

        result = master_records.rewrap(session, ring)

        everything = [*totp_states, *dkim_states, *queue_states]
        assert result.moved == everything.count("old")
        assert sorted(left.what for left in result.left) == sorted(expected_left)
        for (email, column), state in zip(TOTP_SLOTS, totp_states, strict=True):
            ident = account_id(session, email)
            blob = getattr(totp.security_row(session, ident), column)
            if state in lost:
                # An unconfirmed set-up is dropped (a new one is made on the next visit).
                assert blob == (None if column == "totp_pending" else before[f"{email} {column}"])
            else:
                assert totp.blob_version(blob) == ring.primary
                assert totp.open_secret(ring, blob, ident) == secrets_by_slot[email, column]
        for key, state in zip(dkim_keys.domain_keys(session, domain.id), dkim_states, strict=True):
            if state in lost:
                assert key.sealed_private_key == before[key.selector]
            else:
                assert key.master_version == ring.primary
                assert dkim_keys.open_key(ring, key, domain.name).private == privates[key.selector]
        for item in session.scalars(sa.select(QueueItem)):
            if queue_states[int(item.queue_id[1:])] in lost:
                assert item.raw == before[item.queue_id]
            else:
                assert queue.open_raw(ring, item) == NOTIFICATION
    finally:
        session.rollback()
        session.close()


def test_the_console_s_rotation_names_the_console_s_way_out_for_a_lost_address_key(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The console's rotation job (its progress page shows the note) says what the
    console's admin does: rotate the key on the Keys page, not a command."""
    with db.transaction(runtime.sessions) as session:
        key = store.get_or_create(session, runtime.ring.get(), ALICE, NOW, events=audit_sink)
        fingerprint, blob = key.fingerprint, key.wrapped_secret
    rotation.rotate_master(
        runtime.settings.data_dir, runtime.sessions, NOW, events=audit_sink,
        other_blobs=master_records.rewrap,
    )  # fmt: skip
    with db.transaction(runtime.sessions) as session:  # an old backup's blob, put back
        row = store.current_key(session, ALICE)
        assert row is not None
        row.wrapped_secret, row.master_version = blob, 1
    destroy_version_1(runtime)
    with db.transaction(runtime.sessions) as session:
        job_id = admin_keys.request_master_rotation(session, actor=ADMIN, now=NOW).id
    progress = admin_keys.run_job(runtime, job_id)
    assert progress.state == admin_keys.DONE
    assert (
        f"the secret key {fingerprint} of {ALICE}: not re-wrapped, master-key version 1 was"
        " destroyed; what was encrypted to it stays unreadable; rotating the key of"
        f" {ALICE} on the Keys page gives it a new one"
    ) in progress.error
    assert "sealgate " not in progress.error
