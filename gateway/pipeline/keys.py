"""Step `resolve-keys`: the sender's signing key and a key for every recipient that has one.

Hosted addresses get their key made on first use. External recipients' keys come
from the key directory (admin imports, Web Key Directory); looking them up may
go to the network, so it happens before any database transaction is opened.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, db
from gateway.models import Account, EncryptionRule
from gateway.pipeline.context import Submission
from gateway.pipeline.encrypt import RecipientKey, SenderKeys
from gateway.runtime import Runtime
from keystore import store

KEY_ACTOR = "gateway"


def trigger_inputs(session: so.Session, account_id: int) -> tuple[bool, list[str]]:
    """(the account's "always encrypt" setting, the admin's always-encrypt domains)."""
    always = bool(session.scalar(sa.select(Account.always_encrypt).where(Account.id == account_id)))
    return always, list(session.scalars(sa.select(EncryptionRule.domain)))


def resolve_keys(
    runtime: Runtime, submission: Submission, external: dict[str, RecipientKey]
) -> tuple[dict[str, RecipientKey], SenderKeys]:
    """Keys for the hosted recipients (made on first use) and the sender, plus `external`."""
    sink = audit.key_event_sink(KEY_ACTOR)
    now = submission.received_at
    keys: dict[str, RecipientKey] = dict(external)
    with db.transaction(runtime.sessions) as session:
        ring = runtime.ring.get()
        signer = store.signing_key(session, ring, submission.sender.address, now, events=sink)
        for rcpt in submission.hosted:
            row = store.get_or_create(session, ring, rcpt, now, events=sink)
            keys[rcpt] = RecipientKey(rcpt, store.parsed_public_key(row), "hosted")
    return keys, SenderKeys(signer=signer, public=signer.public)
