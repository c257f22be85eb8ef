"""The per-client limit on the secure page holds across portal processes (Redis storage).

Threat: one client spreading password guesses over several portal processes,
each with its own in-memory counter. With `[portal] ratelimit_storage` on Redis,
two apps (as two processes) share one budget for tries and answers.
"""

from __future__ import annotations

import secrets

from flask import Flask
from flask.testing import FlaskClient

from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import CAROL, PASSWORD, compose, send
from webportal import create_app

REDIS_URL = "redis://127.0.0.1:6379/0"


def browser(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def test_two_processes_share_one_budget_through_redis(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    settings = runtime.settings.replace(
        portal={"ratelimit_storage": REDIS_URL},
        securepage={"rate_limit": "4/minute", "max_failures": 100},
    )
    first, second = Runtime.open(settings), Runtime.open(settings)
    try:
        apps = [create_app(first, testing=True), create_app(second, testing=True)]
        # An address unique to this run: counters other runs left in Redis do not count.
        ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7"
        clients = [browser(app, ip) for app in apps]
        tokens = [csrf_from(c.get(f"/s/{token}").text) for c in clients]
        codes = []
        for n in range(4):
            which = n % 2
            codes.append(
                clients[which]
                .post(f"/s/{token}", data={"password": f"guess {n}", "csrf_token": tokens[which]})
                .status_code
            )
        assert codes == [403, 403, 403, 403]
        blocked = clients[0].post(
            f"/s/{token}", data={"password": PASSWORD, "csrf_token": tokens[0]}
        )
        assert blocked.status_code == 429
        # Answers draw on the same budget; another client is not affected.
        assert (
            clients[1].post(f"/s/{token}/reply", data={"csrf_token": tokens[1]}).status_code == 429
        )
        other = browser(apps[1], ip[:-1] + "8")
        field = csrf_from(other.get(f"/s/{token}").text)
        assert (
            other.post(f"/s/{token}", data={"password": PASSWORD, "csrf_token": field}).status_code
            == 303
        )
    finally:
        first.close()
        second.close()
