"""Public keys of addresses hosted elsewhere: admin imports and Web Key Directory answers.

Only keys that passed `keystore.untrusted.vet_keys` get here, as our own minimal
re-serialisation, so reading them back is parsing data we wrote ourselves. A key is
usable while it is not revoked and not expired at the caller's `now`; a WKD key is
usable only while its last confirmation is younger than the caller's cache TTL.

Revocation sticks: once a key is seen revoked (an admin imports the revocation, WKD
serves the revoked key, or an `Autocrypt:` header carries it), every row with its
fingerprint is marked (a key no row holds gets a revoked row of its own, without key
material), and a later copy of the same key without the revocation is refused.

Every change is reported to a `KeyEventSink` the caller binds to its audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from keystore import pgp
from keystore.models import (
    SOURCE_AUTOCRYPT,
    SOURCE_IMPORT,
    SOURCE_WKD,
    AutocryptPeer,
    ExternalKey,
    WkdMiss,
)
from keystore.store import KeyEventSink, PublicKeyCache, normalize_address

ACTION_ADD = "external-key.add"
ACTION_REPLACE = "external-key.replace"
ACTION_REVOKE = "external-key.revoke"
ACTION_FORGET = "external-key.forget"
MAX_REASON = 200

Source = Literal["import", "wkd"]
# Where a revocation may be seen first: also in an Autocrypt header, whose keys in use
# are peer state (gateway.autocrypt.peers), so only its tombstones are rows here.
SeenSource = Literal["import", "wkd", "autocrypt"]
SaveOutcome = Literal["added", "replaced", "updated", "unchanged", "revoked"]

# Parsed keys by (fingerprint, digest of the stored bytes): a WKD refresh that
# brings a new expiry changes the bytes, so no process keeps the old parse.
parsed_cache = PublicKeyCache()


def parsed(fingerprint: str, data: bytes) -> pgp.PublicKey:
    """A vetted key's bytes, parsed once per process."""
    digest = hashlib.sha256(data).hexdigest()
    cached = parsed_cache.get(fingerprint, digest)
    if cached is None:
        cached = pgp.parse_public_key(data)
        parsed_cache.put(fingerprint, digest, cached)
    return cached


def public_key_of(row: ExternalKey) -> pgp.PublicKey:
    return parsed(row.fingerprint, row.public_key)


def usable(
    session: so.Session,
    address: str,
    source: Source,
    now: dt.datetime,
    *,
    checked_since: dt.datetime | None = None,
) -> ExternalKey | None:
    """The key in use for `address` from `source`, if it is neither revoked nor expired
    (and, with `checked_since`, was confirmed by its source since then)."""
    query = sa.select(ExternalKey).where(
        ExternalKey.address == normalize_address(address),
        ExternalKey.source == source,
        ExternalKey.revoked_at.is_(None),
        sa.or_(ExternalKey.expires_at.is_(None), ExternalKey.expires_at > now),
    )
    if checked_since is not None:
        query = query.where(ExternalKey.last_checked >= checked_since)
    return session.scalar(query)


def is_revoked(session: so.Session, fingerprint: str) -> bool:
    """Whether the key was ever seen revoked, as an import, WKD or Autocrypt key."""
    external = session.scalar(
        sa.select(sa.func.count())
        .select_from(ExternalKey)
        .where(ExternalKey.fingerprint == fingerprint, ExternalKey.revoked_at.is_not(None))
    )
    peers = session.scalar(
        sa.select(sa.func.count())
        .select_from(AutocryptPeer)
        .where(AutocryptPeer.fingerprint == fingerprint, AutocryptPeer.revoked_at.is_not(None))
    )
    return ((external or 0) + (peers or 0)) > 0


def _current(session: so.Session, address: str, source: Source) -> ExternalKey | None:
    return session.scalar(
        sa.select(ExternalKey).where(
            ExternalKey.address == address,
            ExternalKey.source == source,
            ExternalKey.revoked_at.is_(None),
        )
    )


def save(
    session: so.Session,
    vetted: pgp.VettedKey,
    source: Source,
    now: dt.datetime,
    *,
    events: KeyEventSink,
) -> SaveOutcome:
    """Store a vetted key as the one in use for its address and source.

    The same key again refreshes the row (new expiry, new confirmation time); another
    key replaces the previous one. A key already seen revoked is not stored.
    """
    address = normalize_address(vetted.address)
    if is_revoked(session, vetted.fingerprint):
        return "revoked"
    current = _current(session, address, source)
    if current is not None and current.fingerprint == vetted.fingerprint:
        changed = current.public_key != vetted.data or current.expires_at != vetted.expires_at
        current.public_key = vetted.data
        current.subkey_id = vetted.subkey_id
        current.expires_at = vetted.expires_at
        current.last_checked = now
        return "updated" if changed else "unchanged"
    replaced = current.fingerprint if current is not None else None
    row = ExternalKey(
        address=address,
        fingerprint=vetted.fingerprint,
        subkey_id=vetted.subkey_id,
        public_key=vetted.data,
        source=source,
        fetched_at=now,
        last_checked=now,
        expires_at=vetted.expires_at,
        revoked_at=None,
    )
    try:
        with session.begin_nested():
            if current is not None:
                session.delete(current)
                session.flush()
            session.add(row)
    except sqlalchemy.exc.IntegrityError:
        # Another process stored a key for this address and source at the same moment;
        # its answer is as fresh as ours.
        return "unchanged"
    if replaced is None:
        events(session, ACTION_ADD, address, f"{source} key {vetted.fingerprint}")
        return "added"
    events(session, ACTION_REPLACE, address, f"{source} key {replaced} -> {vetted.fingerprint}")
    return "replaced"


def mark_revoked(
    session: so.Session,
    fingerprint: str,
    now: dt.datetime,
    *,
    events: KeyEventSink,
    seen_for: tuple[str, SeenSource] | None = None,
) -> list[str]:
    """Stop using every stored copy of the key; returns the addresses that lose it.

    With `seen_for` (the address and source whose answer showed the revocation), a key
    no row remembers yet (never stored, or replaced before it was revoked) gets a
    revoked row of its own, a tombstone without key material, so that a later copy
    without the revocation is refused as `is_revoked` promises.
    """
    if seen_for is not None and not is_revoked(session, fingerprint):
        address, source = normalize_address(seen_for[0]), seen_for[1]
        known = session.scalar(
            sa.select(sa.func.count())
            .select_from(ExternalKey)
            .where(ExternalKey.fingerprint == fingerprint, ExternalKey.revoked_at.is_(None))
        )
        if not known:
            session.add(
                ExternalKey(
                    address=address,
                    fingerprint=fingerprint,
                    subkey_id="",
                    public_key=b"",
                    source=source,
                    fetched_at=now,
                    last_checked=now,
                    expires_at=None,
                    revoked_at=now,
                )
            )
            events(session, ACTION_REVOKE, address, f"{source} key {fingerprint} seen revoked")
    rows = session.scalars(
        sa.select(ExternalKey).where(
            ExternalKey.fingerprint == fingerprint, ExternalKey.revoked_at.is_(None)
        )
    ).all()
    for row in rows:
        row.revoked_at = now
        events(session, ACTION_REVOKE, row.address, f"{row.source} key {fingerprint} revoked")
    peers = session.scalars(
        sa.select(AutocryptPeer).where(
            AutocryptPeer.fingerprint == fingerprint, AutocryptPeer.revoked_at.is_(None)
        )
    ).all()
    for peer in peers:
        peer.revoked_at = now
        events(session, ACTION_REVOKE, peer.address, f"autocrypt key {fingerprint} revoked")
    return sorted({row.address for row in rows} | {peer.address for peer in peers})


def forget(
    session: so.Session, address: str, source: Source, *, events: KeyEventSink
) -> ExternalKey | None:
    """Drop the key in use for `address` from `source` (a WKD answer that no longer has
    it). Reported like every other change of the keys mail is encrypted to: a message to
    that address goes as a secure page from now on, and the admin can see why."""
    row = _current(session, normalize_address(address), source)
    if row is not None:
        session.delete(row)
        events(
            session,
            ACTION_FORGET,
            row.address,
            f"{source} key {row.fingerprint} no longer served; not used any more",
        )
    return row


def active_miss(session: so.Session, address: str, now: dt.datetime) -> WkdMiss | None:
    """A recent WKD lookup for `address` that found nothing, if it is still remembered."""
    return session.scalar(
        sa.select(WkdMiss).where(
            WkdMiss.address == normalize_address(address), WkdMiss.retry_after > now
        )
    )


def record_miss(
    session: so.Session, address: str, reason: str, now: dt.datetime, retry_after: dt.datetime
) -> None:
    address = normalize_address(address)
    row = session.get(WkdMiss, address)
    if row is None:
        row = WkdMiss(address=address)
        session.add(row)
    row.failed_at = now
    row.retry_after = retry_after
    row.reason = reason[:MAX_REASON]


def clear_miss(session: so.Session, address: str) -> None:
    session.execute(sa.delete(WkdMiss).where(WkdMiss.address == normalize_address(address)))


def list_keys(session: so.Session, address: str | None = None) -> list[ExternalKey]:
    query = sa.select(ExternalKey).order_by(ExternalKey.address, ExternalKey.source, ExternalKey.id)
    if address is not None:
        query = query.where(ExternalKey.address == normalize_address(address))
    return list(session.scalars(query))


__all__: Sequence[str] = (
    "SOURCE_AUTOCRYPT",
    "SOURCE_IMPORT",
    "SOURCE_WKD",
    "active_miss",
    "clear_miss",
    "forget",
    "is_revoked",
    "list_keys",
    "mark_revoked",
    "parsed",
    "public_key_of",
    "record_miss",
    "save",
    "usable",
)
