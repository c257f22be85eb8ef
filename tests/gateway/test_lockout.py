"""Lockout counters: N failures in a window lock a name for a doubling time, in the
database and in Redis alike, shared by every process.

Threat: password guessing spread over time, processes or client addresses.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
import redis

from gateway import db, lockout
from gateway.runtime import Runtime

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
POLICY = lockout.Policy(
    threshold=3,
    window=dt.timedelta(minutes=15),
    first_lock=dt.timedelta(minutes=5),
    max_lock=dt.timedelta(minutes=30),
)
REDIS_URL = "redis://127.0.0.1:6379/0"


class Counters:
    """Each call in its own transaction, as separate requests (or processes) would do."""

    def __init__(self, runtime: Runtime, kind: str) -> None:
        self.runtime = runtime
        self.kind = kind
        self.prefix = f"sealgate-test:{secrets.token_hex(6)}"
        self.client = redis.Redis.from_url(REDIS_URL) if kind == "redis" else None

    def _store(self, session: object) -> lockout.Store:
        if self.client is not None:
            return lockout.RedisStore(self.client, POLICY, prefix=self.prefix)
        return lockout.DatabaseStore(session, POLICY)  # type: ignore[arg-type]

    def fail(self, key: str, now: dt.datetime) -> dt.datetime | None:
        with db.transaction(self.runtime.sessions) as session:
            return self._store(session).record_failure(key, now)

    def locked(self, key: str, now: dt.datetime) -> dt.datetime | None:
        with db.transaction(self.runtime.sessions) as session:
            return self._store(session).locked_until(key, now)

    def clear(self, key: str) -> None:
        with db.transaction(self.runtime.sessions) as session:
            self._store(session).clear(key)

    def locked_among(self, keys: list[str], now: dt.datetime) -> frozenset[str]:
        with db.transaction(self.runtime.sessions) as session:
            return self._store(session).locked_among(keys, now)

    def clear_account(self, account_id: int) -> None:
        with db.transaction(self.runtime.sessions) as session:
            self._store(session).clear_account(account_id)

    def close(self) -> None:
        if self.client is not None:
            for name in self.client.scan_iter(f"{self.prefix}:*"):
                self.client.delete(name)
            self.client.close()


@pytest.fixture(params=["database", "redis"])
def counters(request: pytest.FixtureRequest, runtime: Runtime) -> Iterator[Counters]:
    made = Counters(runtime, request.param)
    yield made
    made.close()


def test_threshold_failures_lock(counters: Counters) -> None:
    key = lockout.name_key("Alice@Example.test ")
    assert key == "name:alice@example.test"
    assert lockout.account_key(7) == "account:7"
    assert counters.fail(key, T0) is None
    assert counters.fail(key, T0 + dt.timedelta(seconds=10)) is None
    until = counters.fail(key, T0 + dt.timedelta(seconds=20))
    assert until == T0 + dt.timedelta(seconds=20) + POLICY.first_lock
    assert counters.locked(key, T0 + dt.timedelta(minutes=1)) == until
    assert counters.locked(key, until) is None  # it ends
    assert counters.locked("name:bob@example.test", T0 + dt.timedelta(minutes=1)) is None


def test_failures_outside_the_window_start_over(counters: Counters) -> None:
    key = "portal:alice@example.test"
    counters.fail(key, T0)
    counters.fail(key, T0 + dt.timedelta(minutes=1))
    later = T0 + dt.timedelta(minutes=17)
    assert counters.fail(key, later) is None
    assert counters.fail(key, later + dt.timedelta(seconds=1)) is None
    assert counters.locked(key, later + dt.timedelta(seconds=2)) is None


def test_each_lock_lasts_twice_as_long_up_to_the_cap(counters: Counters) -> None:
    key = "smtp:42"
    now = T0
    lengths = []
    for _ in range(5):
        for _ in range(POLICY.threshold - 1):
            assert counters.fail(key, now) is None
        until = counters.fail(key, now)
        assert until is not None
        lengths.append(until - now)
        # Attempts while locked are refused unchecked and not counted.
        assert counters.fail(key, now + dt.timedelta(seconds=1)) is None
        now = until + dt.timedelta(seconds=1)
    assert [int(x.total_seconds() // 60) for x in lengths] == [5, 10, 20, 30, 30]


def test_clear_forgets_failures_and_lock(counters: Counters) -> None:
    key = "portal:alice@example.test"
    for i in range(POLICY.threshold):
        counters.fail(key, T0 + dt.timedelta(seconds=i))
    assert counters.locked(key, T0 + dt.timedelta(minutes=1)) is not None
    counters.clear(key)
    assert counters.locked(key, T0 + dt.timedelta(minutes=1)) is None
    # The next lock is a first lock again.
    for i in range(POLICY.threshold - 1):
        counters.fail(key, T0 + dt.timedelta(minutes=2, seconds=i))
    until = counters.fail(key, T0 + dt.timedelta(minutes=3))
    assert until == T0 + dt.timedelta(minutes=3) + POLICY.first_lock


def test_client_keys_lock_apart_and_an_unlock_clears_the_account_and_its_clients(
    counters: Counters,
) -> None:
    """A known client's key (gateway.known_clients) is one more count under the account:
    read with the account's in one go, cleared with it, and nothing else."""
    account, device = lockout.account_key(7), lockout.client_key(7, "device:abc")
    network = lockout.client_key(7, "net:192.0.2.1/32")
    neighbour = lockout.account_key(70)  # "account:70" starts with "account:7"
    assert device == "account:7:device:abc"
    for key in (device, network, neighbour):
        for i in range(POLICY.threshold):
            counters.fail(key, T0 + dt.timedelta(seconds=i))
    now = T0 + dt.timedelta(minutes=1)
    assert counters.locked_among([account, device, network], now) == {device, network}
    assert counters.locked_among([account], now) == frozenset()
    assert counters.locked_among([device], T0 + dt.timedelta(hours=1)) == frozenset()
    counters.clear_account(7)
    assert counters.locked_among([account, device, network, neighbour], now) == {neighbour}


def test_lock_count_is_forgotten_after_a_quiet_spell(counters: Counters) -> None:
    key = "portal:alice@example.test"
    for i in range(POLICY.threshold):
        counters.fail(key, T0 + dt.timedelta(seconds=i))
    quiet = T0 + POLICY.memory + dt.timedelta(minutes=1)
    for i in range(POLICY.threshold - 1):
        counters.fail(key, quiet + dt.timedelta(seconds=i))
    until = counters.fail(key, quiet + dt.timedelta(seconds=10))
    assert until == quiet + dt.timedelta(seconds=10) + POLICY.first_lock


def test_database_records_are_purged_once_forgotten(runtime: Runtime) -> None:
    counters = Counters(runtime, "database")
    counters.fail("portal:old@example.test", T0)
    counters.fail("portal:new@example.test", T0 + POLICY.memory)
    later = T0 + POLICY.memory + dt.timedelta(minutes=1)
    assert lockout.purge(runtime.sessions, later, POLICY) == 1


def test_store_for_follows_the_setting(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        assert isinstance(
            lockout.store_for(session, runtime.settings.security), lockout.DatabaseStore
        )
        redis_settings = runtime.settings.replace(security={"lockout_storage": REDIS_URL})
        assert isinstance(lockout.store_for(session, redis_settings.security), lockout.RedisStore)
