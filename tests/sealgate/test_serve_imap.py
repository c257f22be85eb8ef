"""IMAP across `sealgate serve` processes sharing one database: a message submitted to
process A is announced to a client idling on process B.

On PostgreSQL the poll of idling folders is set far beyond the wait here, so the
announcement can only have come through LISTEN/NOTIFY; on SQLite (one file, no
notices) the poll carries it.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time

import imapclient
import pytest

from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.sealgate.test_serve import ALICE, BOB, running

IMAP_READY = re.compile(r"imap-starttls=[\d.]+:(\d+) imap-tls=[\d.]+:(\d+)")


def imap_tls_port(output: list[str]) -> int:
    for line in output:
        match = IMAP_READY.search(line)
        if match:
            return int(match.group(2))
    raise AssertionError("serve did not name its IMAP ports:\n" + "".join(output))


@pytest.fixture
def serve_env(
    test_env: dict[str, str], runtime: Runtime, mail_users: dict[str, str]
) -> dict[str, str]:
    """The environment for `sealgate serve` processes on this test's (initialised) data dir."""
    return test_env


def test_idle_on_one_process_hears_of_mail_delivered_by_another(
    serve_env: dict[str, str], mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    env = dict(serve_env)
    if TEST_DATABASE_URL:
        env["SEALGATE_IMAP_IDLE_POLL_INTERVAL"] = "300"
    with running(env) as a, running(env) as b:
        client = imapclient.IMAPClient(
            "127.0.0.1", port=imap_tls_port(b.output), ssl_context=client_ssl_context, timeout=30
        )
        client.login(BOB, mail_users[BOB])
        client.select_folder("INBOX")
        client.idle()
        with smtplib.SMTP("127.0.0.1", a.submission_port, timeout=30) as smtp:
            smtp.starttls(context=client_ssl_context)
            smtp.login(ALICE, mail_users[ALICE])
            smtp.sendmail(ALICE, [BOB], b"Subject: across\r\n\r\nfrom process A\r\n")
        committed = time.monotonic()
        responses: list[tuple[object, ...]] = []
        while (1, b"EXISTS") not in responses and time.monotonic() - committed < 10:
            responses += client.idle_check(timeout=1)
        waited = time.monotonic() - committed
        client.idle_done()
        client.logout()
        print(f"IDLE announcement after {waited:.3f} s")  # recorded in docs/benchmarks.md
        assert (1, b"EXISTS") in responses
