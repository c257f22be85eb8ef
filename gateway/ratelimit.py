"""Per-client counters for the SMTP edge: concurrent connections, recent AUTH failures,
and the MX's recent refusals.

With `[limits] storage = "memory://"` (the default) they live in the process that
holds the connections. With a Redis URL every `sealgate serve` process counts in
the same Redis, so a client spreading connections or password guesses over
several processes (behind one load balancer) meets the same limits as against
one. Account lockout is separate (gateway/lockout.py, database or Redis).

The Redis forms are sorted sets per client, scored by time, changed by Lua
scripts so a check and its update are one atomic step. A connection entry
carries a lease (`CONNECTION_LEASE` seconds, renewed by nothing): if a process
dies without releasing, its entries expire instead of locking the client out.
A Redis that cannot be reached lets the client through (logged): the limits are
a brake, and the account lockout still guards the passwords.

The MX's refusal counts (gateway.inbound) follow the same pattern: in the serve
process's memory by default (the MX runs on its event loop, and a read costs no
I/O), in Redis when `[limits] storage` names one, so every process behind one
address sees the same count.

Every counter here counts a client as an IPv4 address or an IPv6 /64 (`client_key`):
one host usually holds a whole /64, and counting its addresses one by one would give
it 2^64 connections and password guesses.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import secrets
import threading
import time
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

MEMORY = "memory://"
PREFIX = "sealgate:smtp"
CONNECTION_LEASE = 3600
# The most clients one process keeps AUTH failure times for (about a kilobyte each at
# the default limit): past it, the one that failed longest ago is forgotten first.
FAILURE_CLIENTS = 50_000


class ConnectionLimiter(Protocol):
    limit: int

    def acquire(self, client: str) -> bool: ...

    def release(self, client: str) -> None: ...


class FailureCounter(Protocol):
    def blocked(self, client: str) -> bool: ...

    def record(self, client: str) -> None: ...


class RefusalCounter(Protocol):
    """Refusals per client within a sliding window (the MX's probe limit)."""

    # True when a call costs no I/O, so the event loop may make it itself.
    in_process: ClassVar[bool]
    limit: int

    def blocked(self, client: str) -> bool: ...

    def record(self, client: str) -> int: ...


def client_key(ip: str) -> str:
    """The name a client is counted under: an IPv4 address as it is (an IPv4-mapped IPv6
    address as its IPv4 address), an IPv6 address as its /64 network, anything else
    (a peer that is no IP address) as given."""
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])  # no zone: fe80::1%eth0
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class ConnectionCounter:
    """In one process; locked, because the SMTP edge calls it from worker threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> bool:
        client = client_key(client)
        with self._lock:
            if self._open[client] >= self.limit:
                return False
            self._open[client] += 1
            return True

    def release(self, client: str) -> None:
        client = client_key(client)
        with self._lock:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]


class FailureWindow:
    """In one process: at most `limit` AUTH failures per client within `window` seconds.

    Kept as `RefusalWindow` keeps its clients (the latest `limit` times each, at most
    `capacity` clients): a table keyed by every address that ever failed once would
    grow for as long as new addresses keep failing, and IPv6 gives any attacker
    enough of those to fill the process's memory."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = FAILURE_CLIENTS,
    ) -> None:
        self.limit = limit
        self.window = window
        self._times = RefusalWindow(limit, window, capacity, clock)

    def __len__(self) -> int:
        return len(self._times)

    def blocked(self, client: str) -> bool:
        return self._times.blocked(client_key(client))

    def record(self, client: str) -> None:
        self._times.record(client_key(client))


class RefusalWindow:
    """In one process: at most `limit` refusals per client within `window` seconds.

    Each client keeps only its `limit` latest refusal times (that is all a sliding
    window of `limit` needs: the client is blocked while the oldest of them is younger
    than `window`), in an array of doubles, so a client costs under a kilobyte at the
    default limit. Clients are kept in the order of their latest refusal: those whose
    latest refusal left the window are dropped as new refusals come in, and past
    `capacity` clients the one refused longest ago goes even if it is still in its
    window. A prober would need `capacity` other /64s or IPv4 addresses refused within
    one window to wash its own count out, and with those it has its own allowances
    anyway.
    """

    in_process: ClassVar[bool] = True

    def __init__(
        self,
        limit: int,
        window: float,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._times: OrderedDict[str, array[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def blocked(self, client: str) -> bool:
        with self._lock:
            times = self._times.get(client)
            return (
                times is not None
                and len(times) >= self.limit
                and self._clock() - times[0] < self.window
            )

    def record(self, client: str) -> int:
        """Count one refusal; how many the client has within the window now (at most
        `limit`: no more are kept)."""
        now = self._clock()
        with self._lock:
            times = self._times.pop(client, None) or array("d")
            times.append(now)
            if len(times) > self.limit:
                del times[0]
            self._times[client] = times  # now the most recently refused
            self._forget(now)
            return sum(1 for t in times if now - t < self.window)

    def _forget(self, now: float) -> None:
        """Drop the clients refused longest ago while their latest refusal is out of the
        window or the table is over capacity; amortised O(1) per refusal."""
        while self._times:
            times = next(iter(self._times.values()))
            if len(self._times) <= self.capacity and now - times[-1] < self.window:
                return
            self._times.popitem(last=False)


_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

_BLOCKED = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


class RedisConnectionCounter:
    """Concurrent connections per client, counted over every process sharing Redis."""

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
        lease: int = CONNECTION_LEASE,
    ) -> None:
        self.limit = limit
        self._redis = client
        self._name = name
        self._clock = clock
        self._lease = lease
        self._token = secrets.token_hex(8)  # this process's entries
        self._serial = itertools.count()
        self._held: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()
        self._acquire: Any = client.register_script(_ACQUIRE)

    def _key(self, client: str) -> str:
        return f"{PREFIX}:{self._name}:conn:{client_key(client)}"

    def acquire(self, client: str) -> bool:
        member = f"{self._token}:{next(self._serial)}"
        now = self._clock()
        try:
            granted = self._acquire(
                keys=[self._key(client)],
                args=[now, self.limit, now + self._lease, member, self._lease],
            )
        except redis.RedisError as exc:
            log.warning("connection limit not checked (Redis: %s)", type(exc).__name__)
            return True
        if not int(granted):
            return False
        with self._lock:
            self._held[client].append(member)
        return True

    def release(self, client: str) -> None:
        with self._lock:
            members = self._held.get(client)
            if not members:
                return
            member = members.pop()
            if not members:
                del self._held[client]
        try:
            self._redis.zrem(self._key(client), member)
        except redis.RedisError as exc:  # the entry's lease ends it
            log.warning("connection not released in Redis (%s)", type(exc).__name__)


_REFUSE = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return redis.call('ZCARD', KEYS[1])
"""


class RedisRefusalWindow:
    """`RefusalWindow` over every process sharing Redis: a sorted set per client, trimmed
    to its `limit` latest refusals, expiring a window after the latest. Redis bounds the
    number of clients (its `maxmemory`)."""

    in_process: ClassVar[bool] = False

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        window: float,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
        kind: str = "refused",
    ) -> None:
        """`kind` names what is counted, in the keys and in the log ("refused": the MX's
        refusals; "authfail": `RedisFailureWindow`'s AUTH failures)."""
        self.limit = limit
        self.window = window
        self._name = name
        self._kind = kind
        self._clock = clock
        self._blocked: Any = client.register_script(_BLOCKED)
        self._refuse: Any = client.register_script(_REFUSE)

    def _key(self, client: str) -> str:
        return f"{PREFIX}:{self._name}:{self._kind}:{client_key(client)}"

    def blocked(self, client: str) -> bool:
        try:
            count = self._blocked(keys=[self._key(client)], args=[self._clock() - self.window])
        except redis.RedisError as exc:
            log.warning("%s limit not checked (Redis: %s)", self._kind, type(exc).__name__)
            return False
        return int(count) >= self.limit

    def record(self, client: str) -> int:
        now = self._clock()
        try:
            count = self._refuse(
                keys=[self._key(client)],
                args=[
                    now,
                    secrets.token_hex(8),
                    now - self.window,
                    self.limit,
                    max(int(self.window) + 1, 1),
                ],
            )
        except redis.RedisError as exc:
            log.warning("%s not counted (Redis: %s)", self._kind, type(exc).__name__)
            return 0
        return int(count)


class RedisFailureWindow:
    """`FailureWindow` over every process sharing Redis: AUTH failures kept as the MX's
    refusals are (`RedisRefusalWindow`), under keys of their own."""

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        window: float,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self._times = RedisRefusalWindow(client, limit, window, name, clock=clock, kind="authfail")

    def blocked(self, client: str) -> bool:
        return self._times.blocked(client)

    def record(self, client: str) -> None:
        self._times.record(client)


_clients: dict[str, redis.Redis] = {}
_clients_guard = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """One client per URL and process. No retries: a counter that cannot be reached
    should let the client through at once, not after rounds of back-off."""
    with _clients_guard:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
            )
            _clients[url] = client
        return client


def connection_limiter(storage: str, limit: int, name: str) -> ConnectionLimiter:
    """The per-client connection counter for the listener `name`, where `storage` says."""
    if storage == MEMORY:
        return ConnectionCounter(limit)
    return RedisConnectionCounter(redis_client(storage), limit, name)


def failure_counter(storage: str, limit: int, window: float, name: str) -> FailureCounter:
    if storage == MEMORY:
        return FailureWindow(limit, window)
    return RedisFailureWindow(redis_client(storage), limit, window, name)


def refusal_counter(
    storage: str,
    limit: int,
    window: float,
    capacity: int,
    name: str,
    *,
    clock: Callable[[], float] = time.time,
) -> RefusalCounter:
    """The per-client refusal window of the listener `name`, where `storage` says.
    `clock` gives seconds (since the epoch, for Redis: every process must agree)."""
    if storage == MEMORY:
        return RefusalWindow(limit, window, capacity, clock)
    return RedisRefusalWindow(redis_client(storage), limit, window, name, clock=clock)
