"""IMAPClient (a second, independent client library) against the real server over STARTTLS.

Also the promise that no password crosses the wire in clear: before STARTTLS
the server offers no login at all, not even to a client on localhost.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl
from collections.abc import Iterator

import imapclient
import pytest
from imapclient.exceptions import LoginError
from imapclient.imapclient import ANSWERED, DRAFTS, SEEN, SENT, TRASH

from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.gateway.imap.conftest import ALICE, BOB, deliver, plain, rows


@pytest.fixture
def client(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[imapclient.IMAPClient]:
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port, ssl=False, timeout=30)
    c.starttls(client_ssl_context)
    c.login(ALICE, mail_users[ALICE])
    yield c
    c.logout()


def test_no_login_before_starttls(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port, ssl=False, timeout=30)
    caps = c.capabilities()
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps
    assert not any(cap.startswith(b"AUTH=") for cap in caps)
    with pytest.raises(LoginError):
        c.login(ALICE, mail_users[ALICE])
    c.starttls(client_ssl_context)
    c.login(ALICE, mail_users[ALICE])
    c.logout()


def test_special_folders_flags_append_move_expunge(
    client: imapclient.IMAPClient, runtime: Runtime
) -> None:
    assert client.find_special_folder(SENT) == "Sent"
    assert client.find_special_folder(DRAFTS) == "Drafts"
    assert client.find_special_folder(TRASH) == "Trash"

    response = client.append("INBOX", plain("Appended"), flags=[b"$Important"])
    assert b"APPENDUID" in response
    uid = deliver(runtime, ALICE, plain("Delivered"))
    info = client.select_folder("INBOX")
    assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] == uid + 1
    fetched = client.fetch([uid], ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[]"])
    assert fetched[uid][b"ENVELOPE"].subject == b"Delivered"
    assert fetched[uid][b"BODY[]"] == plain("Delivered")
    assert fetched[uid][b"RFC822.SIZE"] == len(plain("Delivered"))

    client.add_flags([uid], [SEEN, ANSWERED])
    assert set(client.get_flags([uid])[uid]) == {b"\\Seen", b"\\Answered"}
    assert client.search(["UNSEEN"]) == [uid - 1]
    assert client.search(["KEYWORD", "$Important"]) == [uid - 1]

    client.move([uid], "Trash")
    assert [r.subject for r in rows(runtime, ALICE, "Trash")] == ["Delivered"]
    client.select_folder("Trash")
    [trashed] = client.search(["ALL"])
    client.delete_messages([trashed])
    client.uid_expunge([trashed])
    assert rows(runtime, ALICE, "Trash") == []


def test_idle_announces_mail_submitted_over_smtp(
    client: imapclient.IMAPClient,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    client.select_folder("INBOX")
    client.idle()
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as smtp:
        smtp.login(BOB, mail_users[BOB])
        smtp.sendmail(BOB, [ALICE], plain("Fresh from SMTP"))
    responses: list[tuple[object, ...]] = []
    for _ in range(20):
        responses += client.idle_check(timeout=1)
        if (1, b"EXISTS") in responses:
            break
    client.idle_done()
    assert (1, b"EXISTS") in responses
    fetched = client.fetch([1], ["BODY.PEEK[]"])
    [(_uid, data)] = fetched.items()
    assert (
        email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default)["Subject"]
        == "Fresh from SMTP"
    )
