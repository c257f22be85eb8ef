"""Every hosted address has a key from the minute it exists.

`accounts.add_address` makes the key in the transaction that creates the
address, so `keys export`, `keys list`, WKD and the first encrypted message all
find it; `backfill` gives one to addresses made before that (older installs,
rows restored from a backup), and runs right after the schema upgrade in
`sealgate init` and at `serve` start.

Making a key needs the master-key ring, which lives outside the database (the
data dir or the environment). The runtime's session factory carries its
`RingFile` (`db.session_factory(engine, ring=...)`), so code that holds only a
session, as `add_address` does, still reaches the ring of the process it runs in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, db
from gateway.models import Address

if TYPE_CHECKING:  # pgpy loads only when a key is really made (keeps the CLI quick)
    from keystore.masterkey import MasterKeyRing

BACKFILL_ACTOR = "backfill"
BACKFILL_BATCH = 50


class NoRingError(RuntimeError):
    """A key must be made, but this session has no master-key ring bound to it."""


def ring_of(session: so.Session) -> MasterKeyRing:
    ring_file = db.session_ring_file(session)
    if ring_file is None:
        raise NoRingError("no master key ring is bound to this database session")
    ring: MasterKeyRing = ring_file.get()
    return ring


def make_key(
    session: so.Session,
    address: str,
    now: dt.datetime,
    *,
    actor: str,
    ring: MasterKeyRing | None = None,
) -> str:
    """The address's current key (made now when it has none); returns its fingerprint."""
    from gateway import master_records
    from keystore import store

    ring = ring or ring_of(session)
    if store.current_key(session, address) is None:
        # keystore checks the ring against the address keys; a database that holds only
        # DKIM keys or two-factor secrets so far is checked against those here.
        master_records.check_ring(session, ring)
    row = store.get_or_create(session, ring, address, now, events=audit.key_event_sink(actor))
    return row.fingerprint


def addresses_without_key(session: so.Session, limit: int | None = None) -> list[str]:
    from keystore.models import STATUS_ACTIVE, StoredKey

    has_key = (
        sa.select(StoredKey.id)
        .where(StoredKey.address == Address.address, StoredKey.status == STATUS_ACTIVE)
        .exists()
    )
    query = sa.select(Address.address).where(~has_key).order_by(Address.address)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_without_key(session: so.Session) -> int:
    from keystore.models import STATUS_ACTIVE, StoredKey

    has_key = (
        sa.select(StoredKey.id)
        .where(StoredKey.address == Address.address, StoredKey.status == STATUS_ACTIVE)
        .exists()
    )
    return int(session.scalar(sa.select(sa.func.count()).select_from(Address).where(~has_key)) or 0)


def backfill(
    sessions: so.sessionmaker[so.Session],
    ring: MasterKeyRing,
    now: Callable[[], dt.datetime],
    *,
    batch_size: int = BACKFILL_BATCH,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Make a key for every address that has none; returns how many were made.

    Idempotent and safe to interrupt or run in two processes at once: each batch
    commits on its own, and `get_or_create` lets one of two racing inserts win.
    Costs one query when nothing is missing.
    """
    with db.read_only(sessions) as session:
        total = count_without_key(session)
    if not total:
        return 0
    if on_start is not None:
        on_start(total)
    made = 0
    while True:
        with db.transaction(sessions) as session:
            batch = addresses_without_key(session, batch_size)
            for address in batch:
                make_key(session, address, now(), actor=BACKFILL_ACTOR, ring=ring)
        made += len(batch)
        if on_batch is not None and batch:
            on_batch(len(batch))
        if len(batch) < batch_size:
            return made
