"""Commands a careless or hostile client sends: each gets a permanent, clear answer and
the session goes on; none costs a 451 (which makes a client retry for days) or a
traceback in the log.

Found by probing a running serve: 8-bit bytes that are not UTF-8 in MAIL, RCPT and
VRFY (451 and a traceback: the reply quoting them could not be encoded, the lookup
could not be run); STARTTLS inside TLS (a second handshake and an asyncio
traceback); AUTH PLAIN with another authorization identity (accepted and ignored);
the null reverse path (refused with the wrong text).
"""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.inbound import InboundServer
from gateway.smtp_server import SubmissionServer
from tests.gateway.test_smtp_submission import starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture
def submission(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> Iterator[smtplib.SMTP]:
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        yield client


def raw_command(client: smtplib.SMTP, line: bytes) -> tuple[int, bytes]:
    client.send(line + b"\r\n")
    return client.getreply()


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Shown with undecodable bytes replaced: the report must reach pytest's workers.
    assert not errors, [r.getMessage().encode("utf-8", "replace").decode() for r in errors]


@pytest.mark.usefixtures("no_errors_logged")
@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<\xff\xfe@example.test>",
        b"RCPT TO:<\xff\xfe@example.test>",
        b"VRFY @ \xff",
        b"VRFY <\xc3@example.test>",
    ],
)
def test_bytes_that_are_not_utf8_get_a_permanent_answer(
    submission: smtplib.SMTP, line: bytes
) -> None:
    if line.startswith(b"RCPT"):
        assert submission.mail(ALICE)[0] == 250
    code, _text = raw_command(submission, line)
    assert 500 <= code < 600, code
    assert submission.noop()[0] == 250


@pytest.mark.usefixtures("no_errors_logged")
def test_the_mx_refuses_such_a_sender_at_once_not_after_data(inbound: InboundServer) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.example")
        code, _ = raw_command(client, b"MAIL FROM:<\xff\xfe@ext.example>")
        assert 500 <= code < 600, code
        code, _ = raw_command(client, b"RCPT TO:<\xff@example.test>")
        assert 500 <= code < 600, code
        assert client.noop()[0] == 250


@pytest.mark.usefixtures("no_errors_logged")
@pytest.mark.parametrize(
    "path",
    [
        b'<"a\x01b"@ext.example>',  # no control byte, even quoted (RFC 5321 qtextSMTP)
        b'<"a\x7fb"@ext.example>',
        b'<"a\\\tb"@ext.example>',  # nor as a quoted pair
        b'<"\\"@ext.example>',  # an escaped quote: the string and the path never close
    ],
)
def test_the_mx_refuses_a_malformed_quoted_sender(inbound: InboundServer, path: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.example")
        code, _ = raw_command(client, b"MAIL FROM:" + path)
        assert 500 <= code < 600, code
        assert raw_command(client, b'MAIL FROM:<"a b"@ext.example>')[0] == 250
        assert client.noop()[0] == 250


def test_starttls_inside_tls_is_refused(submission: smtplib.SMTP) -> None:
    code, text = submission.docmd("STARTTLS")
    assert code == 503 and b"already" in text
    assert submission.noop()[0] == 250


@pytest.mark.parametrize(
    ("authzid", "code"), [(b"", 235), (b"ALICE@example.test", 235), (BOB.encode(), 535)]
)
def test_auth_plain_takes_no_other_identity(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    authzid: bytes,
    code: int,
) -> None:
    blob = base64.b64encode(authzid + b"\0" + ALICE.encode() + b"\0" + mail_users[ALICE].encode())
    with starttls_client(submission_server, client_ssl_context) as client:
        assert client.docmd("AUTH", "PLAIN " + blob.decode())[0] == code


def test_the_null_sender_is_named_as_such(submission: smtplib.SMTP) -> None:
    code, text = submission.docmd("MAIL", "FROM:<>")
    assert code == 553 and b"null sender" in text


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    verb=st.sampled_from([b"MAIL FROM:", b"RCPT TO:", b"VRFY "]),
    argument=st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
def test_any_bytes_in_a_path_get_an_answer_and_never_a_451(
    submission: smtplib.SMTP, verb: bytes, argument: bytes
) -> None:
    submission.rset()
    if verb.startswith(b"RCPT"):
        assert submission.mail(ALICE)[0] == 250
    code, _text = raw_command(submission, verb + argument)
    assert code < 400 or 500 <= code < 600 or code == 452, code
    assert submission.noop()[0] == 250


def test_the_mx_offers_no_auth_even_under_tls(
    inbound: InboundServer, client_ssl_context: ssl.SSLContext
) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        code, text = client.ehlo("mx.example")
        assert code == 250 and b"AUTH" not in text and b"STARTTLS" not in text
