"""SMTP per-client counters: in Redis two counters (as two processes) count together;
the MX's refusal window, in memory, stays within its bounds under any load."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import ratelimit
from gateway.ratelimit import (
    RedisConnectionCounter,
    RedisFailureWindow,
    RedisRefusalWindow,
    RefusalWindow,
    client_key,
)

REDIS_URL = "redis://127.0.0.1:6379/3"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    name = f"test-{id(conn)}"
    yield conn
    for key in conn.scan_iter(f"{ratelimit.PREFIX}:{name}*"):
        conn.delete(key)
    for key in conn.scan_iter(f"{ratelimit.PREFIX}:rl-*"):
        conn.delete(key)
    conn.close()


def test_connections_count_over_both_processes_and_a_dead_process_expires(
    client: redis.Redis,
) -> None:
    clock = Clock()
    one = RedisConnectionCounter(client, 3, "rl-conn", clock=clock, lease=60)
    two = RedisConnectionCounter(client, 3, "rl-conn", clock=clock, lease=60)
    assert one.acquire("192.0.2.1") and two.acquire("192.0.2.1") and one.acquire("192.0.2.1")
    assert not two.acquire("192.0.2.1")  # three open, over both
    assert two.acquire("198.51.100.7")  # other clients are apart
    one.release("192.0.2.1")
    assert two.acquire("192.0.2.1")
    # A process that died holding its entries: they end with their lease.
    clock.now += 61
    assert one.acquire("192.0.2.1")


def test_auth_failures_count_over_both_processes_within_the_window(client: redis.Redis) -> None:
    clock = Clock()
    one = RedisFailureWindow(client, 4, 600, "rl-auth", clock=clock)
    two = RedisFailureWindow(client, 4, 600, "rl-auth", clock=clock)
    for window in (one, two, one):
        window.record("192.0.2.1")
    assert not one.blocked("192.0.2.1") and not two.blocked("192.0.2.1")
    two.record("192.0.2.1")
    assert one.blocked("192.0.2.1") and two.blocked("192.0.2.1")
    assert not one.blocked("198.51.100.7")
    clock.now += 601
    assert not two.blocked("192.0.2.1")


def test_an_unreachable_redis_lets_clients_through() -> None:
    dead = ratelimit.redis_client("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert RedisConnectionCounter(dead, 1, "rl-dead").acquire("192.0.2.1")
    window = RedisFailureWindow(dead, 1, 60, "rl-dead")
    window.record("192.0.2.1")
    assert not window.blocked("192.0.2.1")


def test_memory_storage_keeps_the_in_process_counters() -> None:
    assert isinstance(
        ratelimit.connection_limiter("memory://", 2, "x"), ratelimit.ConnectionCounter
    )
    assert isinstance(ratelimit.failure_counter("memory://", 2, 60, "x"), ratelimit.FailureWindow)
    assert isinstance(ratelimit.refusal_counter("memory://", 2, 60, 10, "x"), RefusalWindow)
    assert isinstance(ratelimit.refusal_counter(REDIS_URL, 2, 60, 10, "x"), RedisRefusalWindow)
    assert isinstance(
        ratelimit.connection_limiter(REDIS_URL, 2, "x"), ratelimit.RedisConnectionCounter
    )


def test_refusals_count_over_both_processes_trimmed_to_the_limit(client: redis.Redis) -> None:
    clock = Clock()
    one = RedisRefusalWindow(client, 3, 600, "rl-refused", clock=clock)
    two = RedisRefusalWindow(client, 3, 600, "rl-refused", clock=clock)
    assert one.record("192.0.2.1") == 1 and two.record("192.0.2.1") == 2
    assert not one.blocked("192.0.2.1")
    clock.now += 100
    assert one.record("192.0.2.1") == 3
    assert one.blocked("192.0.2.1") and two.blocked("192.0.2.1")
    assert not two.blocked("198.51.100.7")
    for _ in range(10):  # a client refused on and on keeps no more than `limit` entries
        two.record("192.0.2.1")
    assert client.zcard(f"{ratelimit.PREFIX}:rl-refused:refused:192.0.2.1") == 3
    clock.now += 601
    assert not one.blocked("192.0.2.1")


def test_an_unreachable_redis_counts_no_refusal() -> None:
    dead = ratelimit.redis_client("redis://127.0.0.1:1/0")
    window = RedisRefusalWindow(dead, 1, 60, "rl-dead")
    assert window.record("192.0.2.1") == 0
    assert not window.blocked("192.0.2.1")


def test_a_client_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    same = {client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff:ffff:ffff:ffff")}
    assert same == {"2001:db8:1:2::/64"}
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("unknown") == "unknown"


def test_the_refusal_window_slides() -> None:
    clock = Clock()
    window = RefusalWindow(3, 600, 100, clock)
    start = clock.now
    for at in (0, 100, 200):
        clock.now = start + at
        window.record("a")
    assert window.blocked("a") and not window.blocked("b")
    clock.now = start + 599
    assert window.blocked("a")
    clock.now = start + 600  # the first refusal has left the window: two are left
    assert not window.blocked("a")
    assert window.record("a") == 3 and window.blocked("a")


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 40), st.floats(0, 50, allow_nan=False)), max_size=300),
    limit=st.integers(1, 5),
    capacity=st.integers(1, 10),
)
def test_the_refusal_window_stays_bounded_and_agrees_with_a_full_log(
    events: list[tuple[int, float]], limit: int, capacity: int
) -> None:
    """Under refusals from up to 41 clients: never more than `capacity` clients nor
    `limit` times per client are kept; a client is forgotten only when its latest
    refusal has left the window or the table is full; and a client is blocked exactly
    when a log of its refusals (since it was last forgotten) has `limit` in the window."""
    clock = Clock()
    window = RefusalWindow(limit, 100.0, capacity, clock)
    log: dict[str, list[float]] = {}
    for client, step in events:
        clock.now += step
        name = f"198.51.100.{client}"
        window.record(name)
        log.setdefault(name, []).append(clock.now)
        assert len(window) <= capacity
        assert all(len(times) <= limit for times in window._times.values())
        for known, times in log.items():
            if times and known not in window._times:
                assert clock.now - times[-1] >= 100.0 or len(window) == capacity
                times.clear()
            recent = [t for t in times if clock.now - t < 100.0]
            assert window.blocked(known) == (len(recent) >= limit)


def _same_64(n: int) -> str:
    return f"2001:db8:7:1::{n:x}"


def test_auth_failures_from_one_ipv6_64_count_together() -> None:
    """An attacker holding a /64 (every IPv6 host does) rotated its source address to
    get ten fresh guesses per address: the per-client limit must see one client."""
    clock = Clock()
    window = ratelimit.FailureWindow(3, 600, clock)
    for n in range(3):
        assert not window.blocked(_same_64(n))
        window.record(_same_64(n))
    assert window.blocked(_same_64(99))
    assert window.blocked("2001:db8:7:1:ffff:ffff:ffff:ffff")
    assert not window.blocked("2001:db8:7:2::1")  # the next /64 is another client
    clock.now += 601
    assert not window.blocked(_same_64(99))


def test_redis_auth_failures_and_connections_from_one_64_count_together(
    client: redis.Redis,
) -> None:
    clock = Clock()
    failures = RedisFailureWindow(client, 2, 600, "rl-auth64", clock=clock)
    failures.record(_same_64(1))
    failures.record(_same_64(2))
    assert failures.blocked(_same_64(3))
    connections = RedisConnectionCounter(client, 2, "rl-conn64", clock=clock, lease=60)
    assert connections.acquire(_same_64(1)) and connections.acquire(_same_64(2))
    assert not connections.acquire(_same_64(3))
    connections.release(_same_64(2))  # released under the address it came from
    assert connections.acquire(_same_64(4))


def test_connections_from_one_64_count_together_in_memory() -> None:
    counter = ratelimit.ConnectionCounter(2)
    assert counter.acquire(_same_64(1)) and counter.acquire(_same_64(2))
    assert not counter.acquire(_same_64(3))
    assert counter.acquire("2001:db8:7:2::1")
    counter.release(_same_64(1))
    assert counter.acquire(_same_64(5))


@settings(max_examples=60, deadline=None)
@given(
    addresses=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=400),
    capacity=st.integers(min_value=1, max_value=50),
)
def test_the_memory_auth_failure_table_stays_within_its_capacity(
    addresses: list[int], capacity: int
) -> None:
    """Failures from ever new addresses, none of which is checked again, must not grow
    the table without bound (it did: a client was forgotten only when checked)."""
    clock = Clock()
    window = ratelimit.FailureWindow(5, 600, clock, capacity=capacity)
    for n in addresses:
        window.record(str(ipaddress.IPv4Address(n)))
        clock.now += 0.5
        assert len(window) <= capacity
