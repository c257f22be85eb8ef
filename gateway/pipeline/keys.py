"""Step `resolve-keys`: the sender's signing key and a key for every recipient that has one.

Hosted addresses get their key made on first use. External recipients' keys come
from the key directory (admin imports, Web Key Directory); looking them up may
go to the network, so it happens before any database transaction is opened.
Which key is an address's current one is a cached lookup (gateway.lookups); the
sender's secret key is unwrapped and parsed after the read, outside any
transaction, so no writer waits on it, and stays parsed for the lookups' lifetime
(keystore.unlocked).
"""

from __future__ import annotations

import sqlalchemy.orm as so

from gateway import audit, db, lookups
from gateway.lookups import Reader
from gateway.pipeline.context import Submission
from gateway.pipeline.encrypt import RecipientKey, SenderKeys
from gateway.runtime import Runtime
from keystore import store
from keystore.messages import SigningKey
from keystore.models import StoredKey

KEY_ACTOR = "gateway"


def trigger_inputs(known: Reader, account_id: int) -> tuple[bool, frozenset[str]]:
    """(the account's "always encrypt" setting, the admin's always-encrypt domains)."""
    return known.sender(account_id).always_encrypt, known.rule_domains()


def resolve_keys(
    runtime: Runtime, submission: Submission, external: dict[str, RecipientKey]
) -> tuple[dict[str, RecipientKey], SenderKeys]:
    """Keys for the hosted recipients (made on first use) and the sender, plus `external`."""
    sender = store.normalize_address(submission.sender.address)
    wanted = [sender] + [store.normalize_address(r) for r in submission.hosted]
    rows = current_keys(runtime.sessions, wanted)
    missing = [a for a in dict.fromkeys(wanted) if a not in rows]
    if missing:
        # First use (addresses normally get their key when they are made): make it in a
        # write transaction, where two processes making the same key meet.
        sink = audit.key_event_sink(KEY_ACTOR)
        with db.transaction(runtime.sessions) as session:
            ring = runtime.ring.get()
            for address in missing:
                rows[address] = store.get_or_create(
                    session, ring, address, submission.received_at, events=sink
                )
    keys: dict[str, RecipientKey] = dict(external)
    for rcpt in submission.hosted:
        row = rows[store.normalize_address(rcpt)]
        keys[rcpt] = RecipientKey(rcpt, store.parsed_public_key(row), "hosted")
    signer = sender_signing_key(runtime, rows[sender])
    return keys, SenderKeys(signer=signer, public=signer.public)


def sender_signing_key(runtime: Runtime, row: StoredKey) -> SigningKey:
    """The sender's key row unlocked, or still unlocked from a message of the last few
    seconds (keystore.unlocked says why that is safe)."""
    cache = lookups.of(runtime.sessions)
    if cache is None:
        return store.row_signing_key(runtime.ring.get(), row)
    return cache.signing_keys.get(
        (row.id, row.fingerprint), lambda: store.row_signing_key(runtime.ring.get(), row)
    )


def current_keys(
    factory: so.sessionmaker[so.Session], addresses: list[str]
) -> dict[str, StoredKey]:
    """The current key row of each address that has one (cached; rows detached, read-only)."""
    cache = lookups.of(factory)
    found: dict[str, StoredKey] = {}
    with lookups.reader(factory) as known:
        for address in dict.fromkeys(addresses):

            def load(address: str = address) -> StoredKey | None:
                row = store.current_key(known.session, address)
                if row is not None:
                    _ = row.wrapped_secret  # deferred: load it while the session is open
                    known.session.expunge(row)
                return row

            row = load() if cache is None else cache.current_keys.get(address, cache.ttl, load)
            if row is not None:
                found[address] = row
    return found
