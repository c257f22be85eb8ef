"""Search: subjects always match; bodies only of plain mail (encrypted bodies are ciphertext)."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl

from gateway import accounts, db
from gateway.mailbox_queries import SearchQuery, search
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer

ALICE, BOB = "alice@example.test", "bob@example.test"


def send(server: SubmissionServer, ctx: ssl.SSLContext, pw: str, subject: str, body: str) -> None:
    raw = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, pw)
        assert client.sendmail(ALICE, [BOB], raw) == {}


def find(runtime: Runtime, address: str, **query: object) -> list[str]:
    with db.read_only(runtime.sessions) as session:
        account = accounts.find_account(session, address)
        assert account is not None
        page = search(session, account.id, SearchQuery(**query), 1, 50)  # type: ignore[arg-type]
        return [m.subject for m in page.items]


def test_encrypted_body_is_not_searchable_but_its_subject_is(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    pw = mail_users[ALICE]
    send(
        submission_server, client_ssl_context, pw, "[encrypt] board notes", "the word is aubergine"
    )
    send(submission_server, client_ssl_context, pw, "[encrypt] aubergine recipe", "no match here")
    send(submission_server, client_ssl_context, pw, "plain notes", "plain body mentions Aubergine")

    found = find(runtime, BOB, text="aubergine")
    assert sorted(found) == ["aubergine recipe", "plain notes"]
    assert "board notes" not in found  # its body is encrypted: only the subject is searched
    # The sender's Sent copies behave the same.
    assert find(runtime, ALICE, text="AUBERGINE", folder="Sent") == ["aubergine recipe"]


def test_filters_by_sender_recipient_and_date_and_takes_wildcards_literally(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    send(submission_server, client_ssl_context, mail_users[ALICE], "100% sure", "body")
    send(submission_server, client_ssl_context, mail_users[ALICE], "1000 sure", "body")
    assert find(runtime, BOB, text="100%") == ["100% sure"]
    assert len(find(runtime, BOB, sender="alice@")) == 2
    assert find(runtime, BOB, sender="carol@") == []
    assert len(find(runtime, BOB, recipient="bob@example.test")) == 2
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert find(runtime, BOB, since=tomorrow) == []
    assert len(find(runtime, BOB, until=tomorrow)) == 2
