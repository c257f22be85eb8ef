"""Autocrypt peer state: the spec's update rules, and which peer key may encrypt.

The rules (Level 1, "Updating Autocrypt Peer State"), for a message from an
external address with effective date D:

1. D older than the peer's `autocrypt_timestamp`: nothing changes (an old message
   arriving late never undoes a newer one).
2. D newer than `last_seen`: `last_seen` becomes D.
3. No valid header: nothing more. Otherwise `autocrypt_timestamp` becomes D and
   the header's key and prefer-encrypt value replace the stored ones.

Two rules of this gateway come first: a key an admin imported for the address is
never displaced (a header carrying another key changes nothing at all), and a
key seen revoked is never taken again. A message without a header from an
address never seen with one creates no row. A header's key is learnt even where
the peer's domain serves another key by WKD, but the domain's key is the one used
(gateway.pipeline.external_keys): anyone can send a header.

A peer whose `autocrypt_timestamp` is more than 35 days older than `last_seen`
has been writing without Autocrypt for a while (a new mail program, a lost
device): the spec then discourages encrypting to the old key ("reset"). Its key
is kept but not used, so the message goes by WKD or as a secure page, which the
recipient can read whatever program they now use.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway.autocrypt.header import PreferEncrypt
from keystore import directory, pgp
from keystore.models import SOURCE_IMPORT, AutocryptPeer
from keystore.store import KeyEventSink

RESET_AFTER = dt.timedelta(days=35)
ACTION_KEY = "autocrypt.key"

Outcome = Literal[
    "older", "no-peer", "seen", "unchanged", "imported-key-kept", "revoked", "added", "replaced"
]


def peer(session: so.Session, address: str) -> AutocryptPeer | None:
    return session.get(AutocryptPeer, address.lower())


def list_peers(session: so.Session, address: str | None = None) -> list[AutocryptPeer]:
    """Peers with a key (of `address`, or all), by address."""
    query = sa.select(AutocryptPeer).where(AutocryptPeer.fingerprint.is_not(None))
    if address is not None:
        query = query.where(AutocryptPeer.address == address.strip().lower())
    return list(session.scalars(query.order_by(AutocryptPeer.address)))


def is_reset(row: AutocryptPeer) -> bool:
    """The spec's "discourage": no header for more than 35 days of mail from the peer."""
    return row.autocrypt_timestamp is None or row.last_seen - row.autocrypt_timestamp > RESET_AFTER


def update(
    session: so.Session,
    address: str,
    effective: dt.datetime,
    vetted: pgp.VettedKey | None,
    prefer_encrypt: PreferEncrypt,
    now: dt.datetime,
    *,
    events: KeyEventSink,
) -> Outcome:
    """Apply one message's evidence (`vetted` None: no usable header) to the peer state."""
    address = address.lower()
    row = session.scalar(
        sa.select(AutocryptPeer).where(AutocryptPeer.address == address).with_for_update()
    )
    if row is not None and row.autocrypt_timestamp and effective < row.autocrypt_timestamp:
        return "older"
    if vetted is not None:
        imported = directory.usable(session, address, SOURCE_IMPORT, now)
        if imported is not None and imported.fingerprint != vetted.fingerprint:
            return "imported-key-kept"
        if directory.is_revoked(session, vetted.fingerprint):
            vetted = None  # as if the header were not there
    if vetted is None:
        if row is None:
            return "no-peer"
        if effective > row.last_seen:
            row.last_seen = effective
            return "seen"
        return "unchanged"
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    _with_key(
                        AutocryptPeer(address=address, last_seen=effective),
                        vetted,
                        effective,
                        prefer_encrypt,
                    )
                )
        except sqlalchemy.exc.IntegrityError:
            # Another message from this peer made its row at the same moment: apply
            # the rules to that row instead.
            return update(session, address, effective, vetted, prefer_encrypt, now, events=events)
        events(session, ACTION_KEY, address, f"key {vetted.fingerprint}")
        return "added"
    previous = row.fingerprint
    _with_key(row, vetted, effective, prefer_encrypt)
    if previous == vetted.fingerprint:
        return "unchanged"
    detail = f"{previous} -> {vetted.fingerprint}" if previous else f"key {vetted.fingerprint}"
    events(session, ACTION_KEY, address, detail)
    return "replaced" if previous else "added"


def _with_key(
    row: AutocryptPeer,
    vetted: pgp.VettedKey,
    effective: dt.datetime,
    prefer_encrypt: PreferEncrypt,
) -> AutocryptPeer:
    row.last_seen = max(row.last_seen, effective)
    row.autocrypt_timestamp = effective
    row.fingerprint = vetted.fingerprint
    row.public_key = vetted.data
    row.expires_at = vetted.expires_at
    row.revoked_at = None
    row.prefer_encrypt = prefer_encrypt
    return row


def usable_key(session: so.Session, address: str, now: dt.datetime) -> AutocryptPeer | None:
    """The peer's Autocrypt key if it may encrypt now: present, not revoked, not
    expired, and the peer not in the "reset" state."""
    row = peer(session, address)
    if row is None or row.public_key is None or row.fingerprint is None:
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if is_reset(row) or directory.is_revoked(session, row.fingerprint):
        return None
    return row


def public_key_of(row: AutocryptPeer) -> pgp.PublicKey:
    assert row.fingerprint is not None and row.public_key is not None
    return directory.parsed(row.fingerprint, row.public_key)
