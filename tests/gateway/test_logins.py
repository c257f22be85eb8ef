"""The one login function: Argon2 at most once per login, never inside a transaction or the
SQLite writer lock, and a verified-credential cache that no change of password, disable,
lockout or second factor can outlive, in this process or in another one.

Threat: a cached login that still opens an account after its owner changed the
password, an admin disabled it, or the lockout closed it, perhaps in another `serve`
process; and logins that hold the database while Argon2 runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import accounts, credential_cache, db, lockout, logins
from gateway.logins import Attempt, LoginResult
from gateway.models import Account, Address, AuditEvent, LoginLockout
from gateway.passwords import PasswordHasher
from gateway.runtime import Runtime
from gateway.settings import PasswordSettings
from gateway.timeutil import utcnow

ALICE, BOB = "alice@example.test", "bob@example.test"


class WatchedHasher(PasswordHasher):
    """Counts Argon2 verifies, and notes what the database looked like during each."""

    def __init__(self, settings: PasswordSettings, runtime: Runtime) -> None:
        super().__init__(settings)
        self.runtime = runtime
        self.verifies = 0
        self.during: list[tuple[int, bool]] = []

    def verify(self, stored_hash: str | None, password: str) -> bool:
        self.verifies += 1
        owned = db.holds_writer_turn(self.runtime.sessions)
        # Connections checked out of the pool: a session or transaction open right now.
        self.during.append((self.runtime.engine.pool.checkedout(), owned))  # type: ignore[attr-defined]
        return super().verify(stored_hash, password)


@pytest.fixture
def watched(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[WatchedHasher]:
    hasher = WatchedHasher(runtime.settings.passwords, runtime)
    yield hasher
    # Whatever each test did, Argon2 never ran with the database held.
    assert hasher.during and all(d == (0, False) for d in hasher.during), hasher.during


def login(
    runtime: Runtime,
    hasher: PasswordHasher,
    protocol: logins.Protocol,
    name: str,
    password: str,
    *,
    now: dt.datetime | None = None,
) -> LoginResult:
    return logins.check(
        runtime.sessions,
        hasher,
        runtime.credentials,
        runtime.settings,
        Attempt(protocol, name, password, "192.0.2.9"),
        now=now or utcnow(),
    )


def address_id(runtime: Runtime, address: str) -> tuple[int, int]:
    with db.read_only(runtime.sessions) as session:
        row = accounts.find_address(session, address)
        assert row is not None
        return row.id, row.account_id


def test_argon2_once_outside_transactions_then_the_cache_spares_it(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    first = login(runtime, watched, "SMTP", ALICE, mail_users[ALICE])
    assert first.ok and not first.cached and watched.verifies == 1
    assert first.addresses == frozenset({ALICE})
    again = login(runtime, watched, "SMTP", ALICE, mail_users[ALICE])
    assert again.ok and again.cached and watched.verifies == 1
    # IMAP takes the same address password: the same entry.
    assert login(runtime, watched, "IMAP", ALICE, mail_users[ALICE]).cached
    # The account password is another credential (portal): verified on its own.
    portal = login(runtime, watched, "portal", ALICE, "portal-" + mail_users[ALICE])
    assert portal.ok and not portal.cached and watched.verifies == 2
    assert login(runtime, watched, "portal", ALICE, "portal-" + mail_users[ALICE]).cached
    # The address password does not open the portal, cached or not.
    assert not login(runtime, watched, "portal", ALICE, mail_users[ALICE]).ok


def test_a_wrong_password_never_enters_the_cache(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    for expected in (1, 2):
        result = login(runtime, watched, "SMTP", ALICE, "guess")
        assert result.refusal == "wrong" and watched.verifies == expected
    assert len(runtime.credentials) == 0
    assert login(runtime, watched, "SMTP", ALICE, mail_users[ALICE]).ok
    assert len(runtime.credentials) == 1 and watched.verifies == 3


def test_a_password_changed_by_another_process_ends_the_cached_login(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    assert login(runtime, watched, "SMTP", ALICE, mail_users[ALICE]).ok
    row_id, _ = address_id(runtime, ALICE)
    # Another process (or the CLI) sets a new password: only the row changes here.
    other = PasswordHasher(runtime.settings.passwords)
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(Address)
            .where(Address.id == row_id)
            .values(password_hash=other.hash("new-pw"))
        )
    stale = login(runtime, watched, "SMTP", ALICE, mail_users[ALICE])
    assert stale.refusal == "wrong" and not stale.cached and watched.verifies == 2
    assert login(runtime, watched, "IMAP", ALICE, "new-pw").ok


def test_disable_or_a_lock_by_another_process_ends_the_cached_login(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    password = mail_users[ALICE]
    assert login(runtime, watched, "IMAP", ALICE, password).ok
    _, account_id = address_id(runtime, ALICE)
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(Account).where(Account.id == account_id).values(disabled_at=utcnow())
        )
    assert login(runtime, watched, "IMAP", ALICE, password).refusal == "disabled"
    with db.transaction(runtime.sessions) as session:
        session.execute(sa.update(Account).where(Account.id == account_id).values(disabled_at=None))
        # Another process locked the account, and this mail program's network (known
        # since its login above, so the account's lock alone would not refuse it): rows
        # in the shared counters, nothing more.
        now = utcnow()
        for key in (
            lockout.account_key(account_id),
            lockout.client_key(account_id, "net:192.0.2.9/32"),
        ):
            session.add(
                LoginLockout(
                    key=key,
                    failures=0,
                    window_started_at=now,
                    locked_until=now + dt.timedelta(minutes=5),
                    lock_count=1,
                    last_failure_at=now,
                )
            )
    verifies = watched.verifies
    locked = login(runtime, watched, "SMTP", ALICE, password)
    assert locked.refusal == "locked" and watched.verifies == verifies  # no Argon2 at all
    assert login(runtime, watched, "portal", ALICE, "portal-" + password).refusal == "locked"


def test_changes_in_this_process_empty_the_cache_at_once(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    """Password change, disable (gateway.admin) and a lock starting forget the account."""
    assert login(runtime, watched, "SMTP", ALICE, mail_users[ALICE]).ok
    assert login(runtime, watched, "SMTP", BOB, mail_users[BOB]).ok
    assert len(runtime.credentials) == 2
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, ALICE)
        assert row is not None
        accounts.set_address_password(session, runtime.hasher, row, mail_users[ALICE], actor="test")
    assert len(runtime.credentials) == 1  # Bob's stays
    assert login(runtime, watched, "SMTP", ALICE, mail_users[ALICE]).ok
    threshold = runtime.settings.security.lockout_threshold
    for _ in range(threshold):
        login(runtime, watched, "IMAP", ALICE, "guess")
    assert len(runtime.credentials) == 1  # the lock forgot Alice
    assert login(runtime, watched, "SMTP", ALICE, mail_users[ALICE]).refusal == "locked"
    credential_cache.forget_account(address_id(runtime, BOB)[1])
    assert len(runtime.credentials) == 0


def test_an_outdated_argon2_cost_is_rehashed_at_a_right_login(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    old = PasswordHasher(PasswordSettings(time_cost=2, memory_cost=512, parallelism=1))
    row_id, _ = address_id(runtime, ALICE)
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(Address).where(Address.id == row_id).values(password_hash=old.hash("pw-1"))
        )
    assert login(runtime, watched, "SMTP", ALICE, "pw-1").ok
    with db.read_only(runtime.sessions) as session:
        stored = session.scalars(sa.select(Address.password_hash).where(Address.id == row_id)).one()
    cost = runtime.settings.passwords
    assert f"m={cost.memory_cost},t={cost.time_cost},p={cost.parallelism}$" in stored
    # The cache knows the new hash: the next login costs no Argon2.
    assert login(runtime, watched, "IMAP", ALICE, "pw-1").cached


def test_unknown_names_cost_a_verify_and_lock_alike_over_every_protocol(
    runtime: Runtime, mail_users: dict[str, str], watched: WatchedHasher
) -> None:
    threshold = runtime.settings.security.lockout_threshold
    protocols: list[logins.Protocol] = ["SMTP", "IMAP", "portal"]
    for attempt in range(threshold):
        result = login(runtime, watched, protocols[attempt % 3], "nobody@example.test", "x")
        assert result.refusal == "wrong" and result.known_account_id is None
    assert watched.verifies == threshold
    for protocol in protocols:
        assert login(runtime, watched, protocol, "Nobody@example.test", "x").refusal == "locked"
    assert watched.verifies == threshold
    # A name that cannot be an address can never be an account: not counted, not
    # written down anywhere (people type passwords into the name field).
    typed = "Tr0ub4dor&3 oops"
    for protocol in protocols:
        assert login(runtime, watched, protocol, typed, "x").refusal == "wrong"
    with db.read_only(runtime.sessions) as session:
        keys = session.scalars(sa.select(LoginLockout.key)).all()
        actors = set(session.scalars(sa.select(AuditEvent.actor)).all())
    assert keys == ["name:nobody@example.test"]
    assert "(not an address)" in actors and not any(typed in actor for actor in actors)
