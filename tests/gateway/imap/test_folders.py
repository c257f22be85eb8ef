"""Folder UIDs: every session factory hands them out, however many factories came and
went (one that silently lacked the listener stored messages no IMAP program could
see), and a message whose bytes are rewritten gets a new one."""

from __future__ import annotations

import gc
import imaplib
import ssl

import sqlalchemy as sa

from gateway import accounts, db, mailbox
from gateway.imap import folders
from gateway.imap.server import ImapServer
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from tests.gateway.imap.conftest import ALICE, BOB, deliver, plain


def test_a_factory_made_after_others_were_collected_still_allocates_uids(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    uids = []
    for n in range(12):
        factory = db.session_factory(runtime.engine)
        with db.transaction(factory) as session:
            row = accounts.find_address(session, ALICE)
            assert row is not None
            message = mailbox.store(
                session, row, plain(f"m{n}"), queue_id="T", envelope_from=BOB, now=utcnow()
            )
            session.flush()
            uids.append(message.uid)
        # The old factory is gone before the next is made: the next may get its id().
        del factory, session, message, row
        gc.collect()
    assert uids == list(range(1, 13))
    with db.read_only(runtime.sessions) as session:
        stored = session.scalars(sa.select(MailboxMessage.uid).order_by(MailboxMessage.uid))
        assert list(stored) == uids


def test_a_rewritten_message_reaches_a_selected_client_under_a_new_uid(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    runtime = imap_server.runtime
    old_uid = deliver(runtime, ALICE, plain("Figures", "first wording"), folder="Sent")
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    try:
        assert client.login(ALICE, mail_users[ALICE])[0] == "OK"
        assert client.select("Sent") == ("OK", [b"1"])
        assert client.uid("FETCH", str(old_uid), "(BODY.PEEK[])")[1][0][1] == plain(
            "Figures", "first wording"
        )

        with db.transaction(runtime.sessions) as session:
            (row,) = session.scalars(sa.select(MailboxMessage).where(MailboxMessage.uid == old_uid))
            row.raw = plain("Figures", "second wording")
            folders.renumber(session, row)
        client.noop()
        assert client.response("EXPUNGE")[1] == [b"1"]

        typ, data = client.uid("SEARCH", "ALL")
        (new_uid,) = (int(u) for u in data[0].split())
        assert typ == "OK" and new_uid > old_uid
        fetched = client.uid("FETCH", str(new_uid), "(BODY.PEEK[])")[1]
        bodies = [part[1] for part in fetched if isinstance(part, tuple)]
        assert bodies == [plain("Figures", "second wording")]
        assert client.uid("FETCH", str(old_uid), "(BODY.PEEK[])")[1] == [None]
    finally:
        client.logout()
