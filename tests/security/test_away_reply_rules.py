"""Threat: the away reply answers mail it must not answer, over the real MX.

RFC 3834 §2: a personal responder SHOULD NOT answer unless an address of the recipient
is in To, Cc, Bcc, Resent-To, Resent-Cc or Resent-Bcc. It answered mail that reached
the user by Bcc or through a list without List-* fields (telling a list, or whoever
sent a Bcc, that the user is away); mail from a program or a list whose marker it
did not look for (a second Auto-Submitted field, `Precedence: bulk (comment)`, List-*
fields other than List-Id, a sender `MAILER-DAEMON` without a domain); and mail whose
`Auto-Submitted` field was in the obsolete syntax (`Auto-Submitted : auto-replied`,
RFC 5322 §4.5.3, which Postfix reads as the field): another responder's reply was
answered, the start of a mail loop.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import accounts, autoresponder, db
from gateway.inbound import InboundServer
from gateway.models import Alias, AutoreplySent, Autoresponder, QueueItem
from gateway.runtime import Runtime

BOB = "bob@example.test"
ALICE = "alice@example.test"
SENDER = "carol@elsewhere.example"


@pytest.fixture
def bob_away(inbound: InboundServer, runtime: Runtime) -> Iterator[InboundServer]:
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, BOB)
        assert bob is not None
        responder = Autoresponder(address_id=bob.id, name="away", subject="Away:", body="Later.")
        session.add(responder)
        session.flush()
        autoresponder.activate(session, responder)
        account = bob.account
        robert = accounts.add_address(
            session, runtime.hasher, "robert@example.test", account, "robert-pw", actor="t"
        )
        session.flush()
        session.add(Alias(alias="bobby@example.test", address_id=bob.id))
        session.add(Alias(alias="rob@example.test", address_id=robert.id))
    yield inbound


def answered(runtime: Runtime) -> list[str]:
    """Whom Bob's responder answered (its own record, whether the reply was relayed
    or stored for a hosted sender)."""
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(AutoreplySent.sender)))


def relayed(runtime: Runtime) -> list[str]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(QueueItem.rcpt_to)))


def send(server: InboundServer, header: str, sender: str = SENDER) -> None:
    raw = f"From: {sender}\r\n{header}Subject: hello\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        assert client.sendmail(sender, [BOB], raw) == {}


@pytest.mark.parametrize(
    "header",
    [
        f"To: {ALICE}\r\n",  # Bob had a Bcc
        "To: team@lists.elsewhere.example\r\n",  # a list that adds no List-* field
        "",  # no recipient field at all
        f'To: "{BOB}" <{ALICE}>\r\n',  # Bob's address only as a display name
        f"To: =?utf-8?q?{BOB}?= <{ALICE}>\r\n",
        f"Cc: {ALICE}\r\nReply-To: {BOB}\r\n",  # Reply-To names no recipient
        f"To: {ALICE}\r\nList-Unsubscribe: <mailto:leave@lists.example>\r\n",
    ],
)
def test_mail_that_does_not_name_bob_gets_no_away_reply(
    bob_away: InboundServer, runtime: Runtime, header: str
) -> None:
    send(bob_away, header)
    assert answered(runtime) == []


@pytest.mark.parametrize(
    "header",
    [
        f"To: {BOB}\r\n",
        "To: Bob <BOB@Example.Test>\r\n",
        f"To: {ALICE}\r\nCc: x@y.example, Bob <{BOB}>\r\n",
        f"Bcc: {BOB}\r\n",
        f"To: {ALICE}\r\nResent-To: {BOB}\r\n",
        f"Resent-Cc: {BOB}\r\n",
        f"Resent-Bcc: {BOB}\r\n",
        f"To: friends: {ALICE}, {BOB};\r\n",  # a group
        "To: bobby@example.test\r\n",  # an alias of the address
        "To: robert@example.test\r\n",  # another address of the account
        "Cc: rob@example.test\r\n",  # an alias of another address of the account
        f"To: {ALICE},\r\n {BOB}\r\n",  # folded
        f"To : {BOB}\r\n",  # obsolete syntax, read as a lenient reader reads it
    ],
)
def test_mail_that_names_bob_is_answered(
    bob_away: InboundServer, runtime: Runtime, header: str
) -> None:
    send(bob_away, header)
    assert answered(runtime) == [SENDER]
    assert relayed(runtime) == [SENDER]


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted : auto-replied\r\n",
        "Auto-Submitted\t: auto-replied\r\n",
        "auto-submitted   :auto-generated\r\n",
        "Precedence : bulk\r\n",
        "List-Id : <team.lists.example>\r\n",
        "Auto-Submitted: no\r\nAuto-Submitted: auto-replied\r\n",  # every field counts
        "Precedence: bulk (newsletter)\r\n",
        "X-Auto-Response-Suppress: OOF, AutoReply\r\n",  # Exchange's own signal
        "X-Auto-Response-Suppress: All\r\n",
        "List-Post: <mailto:team@lists.example>\r\n",
        "List-Help: <mailto:team-help@lists.example>\r\n",
    ],
)
def test_automatic_and_list_mail_in_any_spelling_gets_no_away_reply(
    bob_away: InboundServer, runtime: Runtime, header: str
) -> None:
    send(bob_away, f"To: {BOB}\r\n{header}")
    assert answered(runtime) == []


@pytest.mark.parametrize("sender", ["MAILER-DAEMON", "robert@example.test", "Rob@example.test"])
def test_machine_senders_and_the_account_itself_get_no_away_reply(
    bob_away: InboundServer, runtime: Runtime, sender: str
) -> None:
    """A sender without a domain is read as its local part (MAILER-DAEMON was answered);
    mail from another address or alias of Bob's own account is Bob's."""
    send(bob_away, f"To: {BOB}\r\n", sender=sender)
    assert answered(runtime) == []
