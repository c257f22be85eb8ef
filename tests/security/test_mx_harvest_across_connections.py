"""Threat: an Internet client harvests the hosted addresses by reconnecting.

An MX session ends after 20 refused commands (test_mx_session_abuse.py), but a prober
who opened a new connection got 20 more guesses, each answered `550 5.1.1` (no such
address) or `250` (exists): the user list could be read out at the speed of
reconnecting. Refusals are now counted per client IP (an IPv6 /64 as one client)
across connections, within `[smtp] inbound_refusal_window`; past
`inbound_refusal_limit` a new connection is greeted `421 4.7.0` and every RCPT of an
open one answered `450 4.7.1`, an existing address as an unknown one, until refusals
fall out of the window. Other clients are not affected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Iterator

import pytest
import redis

from gateway import ratelimit
from gateway.inbound import ERROR_LIMIT, InboundServer, ProbeGuard
from gateway.ratelimit import RefusalWindow
from gateway.runtime import Runtime
from gateway.settings import networks
from tests.conftest import LoopThread
from tests.gateway.test_ratelimit import REDIS_URL

BOB = "bob@example.test"
PROBER, NEIGHBOUR = "127.0.0.2", "127.0.0.3"  # on Linux all of 127/8 is this machine


class Clock:
    """The server's clock, moved by the test (no sleeping)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class Wire:
    """A raw SMTP client from a chosen source address: lines out, whole replies in."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(source, 0)
        )
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> bytes:
        text = b""
        while True:
            line = self.file.readline()
            text += line
            if line[3:4] != b"-":
                return text

    def send(self, *lines: str) -> list[bytes]:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
        return [self.reply() for _ in lines]

    def closed(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mx(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread, clock: Clock
) -> Iterator[InboundServer]:
    server = InboundServer(runtime, clock=clock)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


def guesses(port: int, source: str, first: int, count: int) -> list[bytes]:
    """One connection's RCPT replies for `count` made-up addresses."""
    wire = Wire(port, source)
    try:
        assert wire.greeting.startswith(b"220"), wire.greeting
        wire.send("EHLO prober.example", "MAIL FROM:<a@elsewhere.example>")
        return wire.send(*[f"RCPT TO:<guess{i}@example.test>" for i in range(first, first + count)])
    finally:
        wire.close()


def test_a_prober_who_reconnects_meets_the_limit_and_others_do_not(
    mx: InboundServer, runtime: Runtime, clock: Clock
) -> None:
    limit = runtime.settings.smtp.inbound_refusal_limit
    assert 2 * ERROR_LIMIT < limit < 3 * ERROR_LIMIT  # the defaults: the third connection
    for connection in range(2):
        replies = guesses(mx.port, PROBER, connection * ERROR_LIMIT, ERROR_LIMIT)
        assert all(r.startswith(b"550 5.1.1") for r in replies), set(replies)

    third = Wire(mx.port, PROBER)
    try:
        assert third.greeting.startswith(b"220")
        third.send("EHLO prober.example", "MAIL FROM:<a@elsewhere.example>")
        left = limit - 2 * ERROR_LIMIT
        replies = third.send(*[f"RCPT TO:<more{i}@example.test>" for i in range(left)])
        assert all(r.startswith(b"550 5.1.1") for r in replies), set(replies)
        # Over the limit: an unknown and an existing address get the same answer.
        unknown, known = third.send("RCPT TO:<more-again@example.test>", f"RCPT TO:<{BOB}>")
        assert unknown.startswith(b"450 4.7.1") and known.startswith(b"450 4.7.1")
    finally:
        third.close()

    refused = Wire(mx.port, PROBER)
    try:
        assert refused.greeting.startswith(b"421 4.7.0")
        assert refused.closed()
    finally:
        refused.close()

    # Another client is not affected: it still gets the usual answers.
    neighbour = Wire(mx.port, NEIGHBOUR)
    try:
        assert neighbour.greeting.startswith(b"220")
        neighbour.send("EHLO neighbour.example", "MAIL FROM:<n@elsewhere.example>")
        unknown, known = neighbour.send("RCPT TO:<nobody@example.test>", f"RCPT TO:<{BOB}>")
        assert unknown.startswith(b"550 5.1.1") and known.startswith(b"250")
    finally:
        neighbour.close()

    # Once the refusals are older than the window, the prober is served again.
    clock.now += dt.timedelta(seconds=runtime.settings.smtp.inbound_refusal_window - 1)
    still = Wire(mx.port, PROBER)
    try:
        assert still.greeting.startswith(b"421 4.7.0")
    finally:
        still.close()
    clock.now += dt.timedelta(seconds=1)
    back = Wire(mx.port, PROBER)
    try:
        assert back.greeting.startswith(b"220")
        back.send("EHLO prober.example", "MAIL FROM:<a@elsewhere.example>")
        assert back.send(f"RCPT TO:<{BOB}>")[0].startswith(b"250")
    finally:
        back.close()


def test_an_exempt_client_is_never_counted(mx: InboundServer, runtime: Runtime) -> None:
    """Postfix in front of sealgate (docs/postfix.md) relays every sender's guesses from
    one address; counting them would shut the MX for everyone. Loopback is exempt by
    default (`[smtp] inbound_refusal_exempt`)."""
    assert "127.0.0.1" in runtime.settings.smtp.inbound_refusal_exempt
    rounds = runtime.settings.smtp.inbound_refusal_limit // ERROR_LIMIT + 1
    for connection in range(rounds):
        replies = guesses(mx.port, "127.0.0.1", connection * ERROR_LIMIT, ERROR_LIMIT)
        assert all(r.startswith(b"550 5.1.1") for r in replies), set(replies)
    assert guesses(mx.port, "127.0.0.1", 0, 1)[0].startswith(b"550 5.1.1")


def test_a_blocked_session_still_ends_at_the_session_limit(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread, clock: Clock
) -> None:
    """The 450s of a blocked client count as refusals of its session: it cannot keep a
    connection busy with RCPTs that are each answered at once."""
    strict = Runtime.open(runtime.settings.replace(smtp={"inbound_refusal_limit": 1}))
    server = InboundServer(strict, clock=clock)
    loop_thread.run(server.start())
    try:
        wire = Wire(server.port, PROBER)
        try:
            wire.send("EHLO prober.example", "MAIL FROM:<a@elsewhere.example>")
            assert wire.send("RCPT TO:<first@example.test>")[0].startswith(b"550 5.1.1")
            replies = wire.send(*[f"RCPT TO:<{BOB}>"] * (ERROR_LIMIT - 1))
            assert all(r.startswith(b"450 4.7.1") for r in replies), set(replies)
            assert wire.send(f"RCPT TO:<{BOB}>")[0].startswith(b"421 4.7.0")
            assert wire.closed()
        finally:
            wire.close()
    finally:
        loop_thread.run(server.stop(grace=5))
        strict.close()


def test_an_ipv6_client_is_its_64_and_mapped_loopback_stays_exempt() -> None:
    """IPv6 hands a host a whole /64: counting its addresses one by one would give it
    2^64 allowances. An IPv4-mapped address is its IPv4 address, exemption included."""
    clock = Clock()
    guard = ProbeGuard(
        RefusalWindow(2, 600, 100, lambda: clock().timestamp()),
        networks("127.0.0.1, ::1", "exempt"),
    )
    assert guard.key("::1") is None and guard.key("::ffff:127.0.0.1") is None
    first, second = guard.key("2001:db8:0:7::1"), guard.key("2001:db8:0:7:a:b:c:d")
    assert first == second == "2001:db8:0:7::/64"

    async def probe() -> tuple[bool, bool, bool]:
        await guard.record(first)
        await guard.record(second)
        return (
            await guard.blocked(guard.key("2001:db8:0:7::99")),
            await guard.blocked(guard.key("2001:db8:0:8::1")),
            await guard.blocked(guard.key("::ffff:127.0.0.1")),
        )

    assert asyncio.run(probe()) == (True, False, False)


def test_serve_processes_sharing_redis_share_the_count(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread, clock: Clock
) -> None:
    """With `[limits] storage` on Redis, a prober spreading its guesses over several
    serve processes (behind one address) meets one limit: refused at one, refused at all."""
    shared = runtime.settings.replace(
        limits={"storage": REDIS_URL}, smtp={"inbound_refusal_limit": 3}
    )
    key = f"{ratelimit.PREFIX}:inbound:refused:{PROBER}"
    store = redis.Redis.from_url(REDIS_URL)
    store.delete(key)
    first, second = Runtime.open(shared), Runtime.open(shared)
    one, two = InboundServer(first, clock=clock), InboundServer(second, clock=clock)
    loop_thread.run(one.start())
    loop_thread.run(two.start())
    try:
        assert all(r.startswith(b"550") for r in guesses(one.port, PROBER, 0, 2))
        assert guesses(two.port, PROBER, 2, 1)[0].startswith(b"550")
        for server in (one, two):
            wire = Wire(server.port, PROBER)
            try:
                assert wire.greeting.startswith(b"421 4.7.0")
            finally:
                wire.close()
        clock.now += dt.timedelta(seconds=shared.smtp.inbound_refusal_window)
        assert guesses(one.port, PROBER, 3, 1)[0].startswith(b"550")
    finally:
        loop_thread.run(one.stop(grace=5))
        loop_thread.run(two.stop(grace=5))
        first.close()
        second.close()
        store.delete(key)
        store.close()
