"""SMTP per-client limits shared by several `sealgate serve` processes (issue 13, Must show 4).

Two real `serve` processes on one database (PostgreSQL when the suite runs on
it) count AUTH failures in Redis (`[limits] storage`): ten failures from one
client, five on each process, lock that client's logins on both, the right
password included. With each process counting on its own (`memory://`) the same
ten failures lock neither: the sharing is what does it. The account lockout is
set out of reach here so it cannot be what refuses the login.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Iterator

import pytest
import redis

from gateway.runtime import Runtime
from tests.sealgate.test_serve import ServeProcess, running

ALICE = "alice@example.test"
REDIS_URL = "redis://127.0.0.1:6379/3"  # this engineer's database number


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)

    def clean() -> None:
        for key in client.scan_iter("sealgate:smtp:*"):
            client.delete(key)

    clean()
    yield client
    clean()
    client.close()


def auth(server: ServeProcess, ctx: ssl.SSLContext, password: str) -> int:
    """One AUTH PLAIN on a fresh connection (smtplib's login would try several
    mechanisms, so several failures); returns the reply code."""
    blob = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=30) as client:
        client.ehlo()
        code, _text = client.docmd("AUTH", f"PLAIN {blob}")
        return code


def ten_failures_then_the_right_password(
    env: dict[str, str], ctx: ssl.SSLContext, password: str
) -> list[int]:
    with running(env) as first, running(env) as second:
        for attempt in range(10):
            assert auth((first, second)[attempt % 2], ctx, "wrong password") == 535
        return [auth(first, ctx, password), auth(second, ctx, password)]


def test_auth_failures_spread_over_two_serve_processes_lock_the_client_on_both(
    test_env: dict[str, str],
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    shared_redis: redis.Redis,
) -> None:
    env = {
        **test_env,
        "SEALGATE_SECURITY_LOCKOUT_THRESHOLD": "1000",
        "SEALGATE_SMTP_MAX_AUTH_FAILURES_PER_CLIENT": "10",
    }
    alone = ten_failures_then_the_right_password(
        {**env, "SEALGATE_LIMITS_STORAGE": "memory://"}, client_ssl_context, mail_users[ALICE]
    )
    assert alone == [235, 235]  # five failures each: neither process reached ten

    shared = ten_failures_then_the_right_password(
        {**env, "SEALGATE_LIMITS_STORAGE": REDIS_URL}, client_ssl_context, mail_users[ALICE]
    )
    assert shared == [454, 454]  # 4.7.0 too many failed logins from your address
    assert list(shared_redis.scan_iter("sealgate:smtp:submission:authfail:*"))
