"""Every session factory hands out folder UIDs, however many factories came and went.

A process makes factories over its life (each Runtime, each worker, each test); one
that silently lacked the UID listener stored messages no IMAP program could see.
"""

from __future__ import annotations

import gc

import sqlalchemy as sa

from gateway import accounts, db, mailbox
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from tests.gateway.imap.conftest import ALICE, BOB, plain


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
