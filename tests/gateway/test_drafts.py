"""Drafts are stored encrypted to their author and open again for the author only."""

from __future__ import annotations

import pytest

from gateway import accounts, db, drafts, reading
from gateway.runtime import Runtime
from gateway.timeutil import utcnow

ALICE, BOB = "alice@example.test", "bob@example.test"
DRAFT = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: half-written\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe secret plan is marzipan.\r\n"
)


def test_draft_is_encrypted_at_rest_and_reopens(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    ring = runtime.ring.get()
    with db.transaction(runtime.sessions) as session:
        alice = accounts.find_address(session, ALICE)
        assert alice is not None
        row = drafts.save(session, ring, alice, DRAFT, now=utcnow())
        draft_id, account_id = row.id, alice.account_id
        assert row.encrypted and row.folder == "Drafts" and row.subject == "half-written"
        assert b"marzipan" not in row.raw and row.search_text is None
    with db.transaction(runtime.sessions) as session:
        assert b"The secret plan is marzipan." in drafts.load(session, ring, account_id, draft_id)
        # Saving again replaces the draft instead of piling up copies.
        alice = accounts.find_address(session, ALICE)
        assert alice is not None
        newer = drafts.save(
            session,
            ring,
            alice,
            DRAFT.replace(b"marzipan", b"nougat"),
            now=utcnow(),
            replaces=draft_id,
        )
        newer_id = newer.id
    with db.transaction(runtime.sessions) as session:
        with pytest.raises(reading.MessageNotFound):
            reading.owned_message(session, account_id, draft_id)
        assert b"nougat" in drafts.load(session, ring, account_id, newer_id)
        bob = accounts.find_account(session, BOB)
        assert bob is not None
        with pytest.raises(reading.MessageNotFound):
            drafts.load(session, ring, bob.id, newer_id)
