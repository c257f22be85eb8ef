"""IMAP while the database is away, and after.

Found by an operations probe of a running `serve` (2026-12-06): a command that met an
unreachable database ended the session with pymap's `BYE [SERVERBUG] Unhandled server
error` and a traceback in the log, per command. Now: a tagged `NO [UNAVAILABLE]` (RFC
5530), the session goes on, the log says it once (gateway.outages), and the same
session works again when the database is back.
"""

from __future__ import annotations

import imaplib
import ssl

import pytest

from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.outage_support import (
    capture,
    fresh_watch,
    outage_lines,
    sqlite_file_unavailable,
    tracebacks,
)

from .conftest import ALICE, deliver, plain

__all__ = ["fresh_watch"]


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file is taken away")
def test_database_unavailable_is_no_unavailable_and_the_session_goes_on(
    imap_server: ImapServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    deliver(runtime, ALICE, plain("first"))
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    try:
        assert client.login(ALICE, mail_users[ALICE])[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        with sqlite_file_unavailable(runtime):
            answers = [client.status("INBOX", "(MESSAGES)") for _ in range(3)]
            answers.append(client.select("INBOX"))
        for typ, data in answers:
            assert typ == "NO", (typ, data)
            assert data[0].startswith(b"[UNAVAILABLE] The mail store is temporarily unavailable")
        assert client.status("INBOX", "(MESSAGES)") == ("OK", [b"INBOX (MESSAGES 1)"])
        assert client.select("INBOX") == ("OK", [b"1"])
    finally:
        client.logout()
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (SQLITE_CANTOPEN)")
    assert lines[1].startswith("outage ended: database unavailable")
    assert tracebacks(caplog) == []
