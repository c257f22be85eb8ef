"""Threat: an overlong AUTH continuation throws the SMTP session out of step.

The shape that once broke it: `AUTH LOGIN`, then a base64 "username" line longer
than the line limit (1001 bytes). aiosmtpd read it with `readline`, which raised
after keeping part of the line: the client got `451 4.3.0` with a traceback in the
server log, and the rest of the line was then read as SMTP commands. Now the whole
line is drained and answered `500 5.5.6` (RFC 4954 §4), and the next command
works, a real login included. Everything runs over real sockets under TLS.
"""

from __future__ import annotations

import base64
import logging
import ssl

import pytest

from gateway.smtp_server import SubmissionServer
from tests.gateway.test_smtp_submission import starttls_client, tls_client

ALICE = "alice@example.test"
LIMIT = 1001  # aiosmtpd's line_length_limit, which the server keeps


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _overlong(size: int) -> str:
    """A base64 line of `size` characters (valid base64, so only its length is wrong)."""
    return base64.b64encode(b"x" * (size * 3 // 4)).decode()[:size]


@pytest.mark.parametrize("size", [LIMIT + 1, 5_000, 70_000, 1_000_000])
@pytest.mark.parametrize("mechanism", ["LOGIN-user", "LOGIN-password", "PLAIN"])
def test_overlong_auth_continuation_gets_500_5_5_6_and_session_stays_in_step(
    size: int,
    mechanism: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with starttls_client(submission_server, client_ssl_context) as client:
        if mechanism == "PLAIN":
            code, _ = client.docmd("AUTH", "PLAIN")
        else:
            code, _ = client.docmd("AUTH", "LOGIN")
        assert code == 334
        if mechanism == "LOGIN-password":
            code, _ = client.docmd(_b64(ALICE))
            assert code == 334
        code, reply = client.docmd(_overlong(size))
        assert (code, reply[:5]) == (500, b"5.5.6"), reply
        # In step: the next command gets its own answer, not a leftover of the long line.
        code, reply = client.docmd("NOOP")
        assert code == 250, reply
        code, reply = client.docmd("RSET")
        assert code == 250, reply
        client.login(ALICE, mail_users[ALICE])
        code, _ = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 250
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_response_at_the_limit_is_still_read_as_credentials(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """The limit refuses only what is over it: a long but fitting response is a (wrong) login."""
    with tls_client(submission_server, client_ssl_context) as client:
        code, _ = client.docmd("AUTH", "LOGIN")
        assert code == 334
        code, _ = client.docmd(_overlong(LIMIT - 4))  # the line ends in CRLF: 999 bytes
        assert code == 334  # taken as the user name; the password is asked next
        code, reply = client.docmd(_b64("wrong"))
        assert code == 535, reply


def test_auth_aborted_with_star_and_bad_base64_keep_the_session(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with tls_client(submission_server, client_ssl_context) as client:
        assert client.docmd("AUTH", "LOGIN")[0] == 334
        assert client.docmd("*")[0] == 501
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        assert client.docmd("not base64!")[0] == 501
        assert client.docmd("NOOP")[0] == 250
        client.login(ALICE, mail_users[ALICE])


def test_client_hanging_up_mid_auth_is_no_error(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = tls_client(submission_server, client_ssl_context)
    assert client.docmd("AUTH", "LOGIN")[0] == 334
    assert client.sock is not None
    client.sock.sendall(b"dXNlcg")  # half a line, then hang up
    client.close()
    with tls_client(submission_server, client_ssl_context) as again:
        again.login(ALICE, mail_users[ALICE])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_overlong_initial_response_on_the_auth_line_keeps_the_session(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """`AUTH PLAIN <initial response>` over the limit is an overlong command line: aiosmtpd
    drains it and answers 500 (no 5.5.6: the command is not read), and the session goes on."""
    with tls_client(submission_server, client_ssl_context) as client:
        code, _ = client.docmd("AUTH", "PLAIN " + _overlong(5_000))
        assert code == 500
        assert client.docmd("NOOP")[0] == 250
        client.login(ALICE, mail_users[ALICE])
