"""SMTP per-client counters in Redis: two counters (as two processes) count together."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from gateway import ratelimit
from gateway.ratelimit import RedisConnectionCounter, RedisFailureWindow

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
    assert isinstance(
        ratelimit.connection_limiter(REDIS_URL, 2, "x"), ratelimit.RedisConnectionCounter
    )
