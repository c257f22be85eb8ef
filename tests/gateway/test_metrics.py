"""`/metrics` and `/healthz`: off by default, on a listener of their own, and true.

Mail goes in over real SMTP (TLS): one message encrypted to a hosted recipient,
one plain to an external address (queued for the relay); a portal name is locked
after too many failures. The counters, the histogram and the queue depth read
from the metrics listener move accordingly. A real `sealgate serve` opens the
listener only when `[metrics] enabled` is set, on its own port.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from gateway import db, lockout
from gateway.metrics import MetricsServer
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from tests.sealgate.test_serve import running
from webportal import create_app

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@elsewhere.example"


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(sealgate_\S+) (\S+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def metrics_url(runtime: Runtime) -> Iterator[str]:
    on = Runtime.open(runtime.settings.replace(metrics={"enabled": True, "port": 0}))
    server = MetricsServer(on)
    server.start()
    yield server.url
    server.stop()
    on.close()


def send(
    server: SubmissionServer, ctx: ssl.SSLContext, password: str, raw: bytes, rcpt: str
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        assert client.sendmail(ALICE, [rcpt], raw) == {}


def test_metrics_follow_the_mail(
    metrics_url: str,
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
) -> None:
    before = scrape(metrics_url)
    assert before['sealgate_queue_depth{state="queued"}'] == 0

    encrypted = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: metrics\r\nX-Sealgate-Encrypt: yes\r\n\r\nhi\r\n"
    ).encode()
    send(submission_server, client_ssl_context, mail_users[ALICE], encrypted, BOB)
    plain = f"From: {ALICE}\r\nTo: {CAROL}\r\nSubject: plain\r\n\r\nhello\r\n".encode()
    send(submission_server, client_ssl_context, mail_users[ALICE], plain, CAROL)
    with db.transaction(runtime.sessions) as session:
        counters = lockout.store_for(session, runtime.settings.security)
        for _ in range(runtime.settings.security.lockout_threshold):
            counters.record_failure(lockout.name_key("mallory@example.test"), utcnow())

    after = scrape(metrics_url)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta('sealgate_messages_total{handling="pgp"}') == 1
    assert delta('sealgate_messages_total{handling="plain"}') == 1
    assert delta("sealgate_encrypt_seconds_count") == 1
    assert after["sealgate_encrypt_seconds_sum"] > before.get("sealgate_encrypt_seconds_sum", 0)
    assert after['sealgate_queue_depth{state="queued"}'] == 1
    assert delta('sealgate_lockouts_total{kind="login"}') == 1
    assert delta('sealgate_portal_unlocks_total{result="opened"}') == 0

    assert get(f"{metrics_url}/healthz") == (200, "ok\n")
    assert get(f"{metrics_url}/login")[0] == 404


def test_healthz_says_when_the_database_is_gone(runtime: Runtime, settings: object) -> None:
    broken = Runtime.open(
        runtime.settings.replace(
            metrics={"enabled": True, "port": 0},
            database={"url": "sqlite:////nonexistent-dir/for-sure/sealgate.db"},
        )
    )
    server = MetricsServer(broken)
    server.start()
    try:
        status, body = get(f"{server.url}/healthz")
        assert status == 503 and "database" in body
    finally:
        server.stop()
        broken.close()


def test_the_portal_does_not_serve_metrics(runtime: Runtime) -> None:
    client = create_app(runtime, testing=True).test_client()
    assert client.get("/metrics", base_url="https://localhost").status_code == 404
    assert client.get("/healthz", base_url="https://localhost").status_code == 404


def test_serve_opens_the_listener_only_when_enabled(
    test_env: dict[str, str], runtime: Runtime
) -> None:
    with running(test_env) as server:
        assert not any("metrics=" in line for line in server.output)
    on = {**test_env, "SEALGATE_METRICS_ENABLED": "true", "SEALGATE_METRICS_PORT": "0"}
    with running(on) as server:
        ready = next(line for line in server.output if "sealgate ready" in line)
        match = re.search(r"metrics=(http://\S+)", ready)
        assert match, ready
        url = match.group(1)
        assert url.rsplit(":", 1)[1] != server.portal_url.rsplit(":", 1)[1]
        assert get(f"{url}/healthz") == (200, "ok\n")
        assert "sealgate_queue_depth" in get(f"{url}/metrics")[1]
