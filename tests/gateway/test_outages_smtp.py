"""SMTP submission while the database or the master key ring is away, and after.

Found by an operations probe of a running `serve` (2026-12-06): with the database
unreachable or the ring file gone, each SMTP session logged a full traceback (a log
flood that buried the cause), and clients got a generic error. Now the command that
meets the outage is answered `451 4.3.0` (nothing of the message kept), the log says
so once (gateway.outages), and the server takes mail again by itself when the outage
ends, saying that too. A full disk: tests/gateway/test_outage_disk_full.py.
"""

from __future__ import annotations

import smtplib
import ssl

import pytest

from gateway import outages
from gateway.inbound import InboundServer
from gateway.runtime import Runtime
from gateway.smtp_codes import SERVICE_UNAVAILABLE
from gateway.smtp_server import SubmissionServer
from gateway.workers import WorkerPool
from tests.conftest import LoopThread
from tests.gateway.outage_support import (
    capture,
    first_refusal,
    fresh_watch,
    outage_lines,
    ring_unavailable,
    sqlite_file_unavailable,
    tracebacks,
)
from tests.gateway.test_smtp_2fa import auth, starttls_client
from tests.gateway.test_smtp_submission import mailbox_rows, message
from tests.gateway.test_workers import pool_server, worker_env

__all__ = ["fresh_watch", "worker_env"]
UNAVAILABLE_TEXT = SERVICE_UNAVAILABLE[10:]

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.skipif(
    bool(__import__("tests.conftest").conftest.TEST_DATABASE_URL),
    reason="the SQLite file; PostgreSQL: tests/gateway/test_outage_postgres.py",
)
def test_sqlite_file_unavailable_is_451_once_logged_and_recovers(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    runtime = submission_server.runtime
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "before"))[0] == 250
        with sqlite_file_unavailable(runtime):
            replies = [
                first_refusal(client, ALICE, BOB, message(ALICE, BOB, f"during-{n}"))
                for n in range(3)
            ]
            # A new session meets it too, and is answered alike.
            with starttls_client(submission_server, client_ssl_context) as other:
                code, text = auth(other, BOB, mail_users[BOB])
                if code == 235:
                    code, text = first_refusal(other, BOB, ALICE, message(BOB, ALICE, "other"))
                replies.append((code, text))
        assert [(code, text[:5]) for code, text in replies] == [(451, "4.3.0")] * 4, replies
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "after"))[0] == 250
    subjects = [m.subject for m in mailbox_rows(runtime, BOB)]
    assert sorted(subjects) == ["after", "before"]
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (SQLITE_CANTOPEN)")
    assert lines[1].startswith("outage ended: database unavailable")
    assert tracebacks(caplog) == []


def encrypted(subject: str) -> bytes:
    return b"X-Sealgate-Encrypt: yes\r\n" + message(ALICE, BOB, subject)


@pytest.mark.usefixtures("fresh_watch")
def test_ring_unavailable_is_451_once_logged_and_recovers(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    runtime = submission_server.runtime
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        with ring_unavailable(runtime):
            # Encrypted to Bob: his key (and Alice's, to sign) sealed under the ring.
            replies = [
                first_refusal(client, ALICE, BOB, encrypted(f"during-{n}")) for n in range(3)
            ]
        assert [(code, text[:5]) for code, text in replies] == [(451, "4.3.0")] * 3, replies
        assert first_refusal(client, ALICE, BOB, encrypted("after"))[0] == 250
    assert [m.encrypted for m in mailbox_rows(runtime, BOB)] == [True]
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: master key ring unavailable (")
    assert "master.keys does not exist" in lines[0]
    assert lines[1].startswith("outage ended: master key ring unavailable")
    assert tracebacks(caplog) == []
    assert outages.WATCH.current == frozenset()


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.skipif(
    bool(__import__("tests.conftest").conftest.TEST_DATABASE_URL),
    reason="the SQLite file; PostgreSQL: tests/gateway/test_outage_postgres.py",
)
def test_inbound_mx_answers_451_in_an_outage_and_recovers(
    inbound: InboundServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The MX (mail from anywhere) alike: other mail servers retry a 451 later."""
    capture(caplog)
    carol = "carol@elsewhere.test"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.elsewhere.test")
        with sqlite_file_unavailable(inbound.runtime):
            replies = [first_refusal(client, carol, BOB, message(carol, BOB, "mx")) for _ in "ab"]
        assert [(code, text[:5]) for code, text in replies] == [(451, "4.3.0")] * 2, replies
        assert first_refusal(client, carol, BOB, message(carol, BOB, "mx"))[0] == 250
    assert [m.subject for m in mailbox_rows(inbound.runtime, BOB)] == ["mx"]
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert tracebacks(caplog) == []


@pytest.mark.usefixtures("fresh_watch")
def test_worker_processes_answer_an_outage_451_and_say_it_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    client_ssl_context: ssl.SSLContext,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """With the pipeline in worker processes (as under serve), the worker that meets
    the outage logs it (once) and serve answers what it sent back."""
    pool = WorkerPool(runtime.settings.data_dir, 1, max_group=8, sessions=runtime.sessions)
    with (
        pool_server(runtime, loop_thread, pool) as server,
        starttls_client(server, client_ssl_context) as client,
    ):
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        with ring_unavailable(runtime):
            replies = [first_refusal(client, ALICE, BOB, encrypted(f"w{n}")) for n in "abc"]
        assert first_refusal(client, ALICE, BOB, encrypted("after"))[0] == 250
    assert [(code, text[:5]) for code, text in replies] == [(451, "4.3.0")] * 3, replies
    assert all(UNAVAILABLE_TEXT in text for _code, text in replies), replies
    assert [m.encrypted for m in mailbox_rows(runtime, BOB)] == [True]
    err = capfd.readouterr().err
    assert err.count("outage: master key ring unavailable") == 1, err
    assert "outage ended: master key ring unavailable" in err
    assert "Traceback" not in err
