"""Address keys: made on first use, rotated and revoked by admins, unlocked per request.

These are the functions the gateway calls. Each takes the caller's session (the
caller owns the transaction and commits it with whatever the key serves) and, when
it touches secret material, the master-key ring. Key events are reported to a
`KeyEventSink` that the caller binds to its audit log, because the keystore knows
nothing of the gateway's tables.

Parsed public keys are cached in-process by (fingerprint, status): a lookup costs
one indexed query for the current fingerprint, and the pgpy parse (about a
millisecond) happens once per key and process. Rotation in any process changes the
current fingerprint, and revocation changes the status, so no process serves a stale
key from its cache.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from keystore import messages, packets, pgp, ringcheck, untrusted, wrap
from keystore.masterkey import MasterKeyError, MasterKeyRing
from keystore.models import (
    STATUS_ACTIVE,
    STATUS_RETIRED,
    STATUS_REVOKED,
    VERSION_ACTIVE,
    VERSION_RETIRED,
    MasterKeyVersion,
    StoredKey,
)
from keystore.wkd import address_hash

MAX_REASON_LENGTH = 200
ACTION_CREATE = "key.create"
ACTION_ROTATE = "key.rotate"
ACTION_REVOKE = "key.revoke"


class KeyEventSink(Protocol):
    """Receives every key event inside the transaction that makes it (for the audit log)."""

    def __call__(self, session: so.Session, action: str, target: str, detail: str) -> None: ...


class KeystoreError(ValueError):
    """A request about keys that cannot be carried out; the text is safe to show."""


class NoKeyError(KeystoreError):
    pass


def normalize_address(address: str) -> str:
    """Lower-case and sanity-check; the gateway validates syntax before it gets here."""
    value = address.strip().lower()
    local, at, domain = value.rpartition("@")
    if not (at and local and domain) or len(value) > 320 or not value.isprintable() or " " in value:
        raise KeystoreError(f"not a valid mail address: {address!r}")
    return value


def _normalize_key_id(key_id: str) -> str:
    value = key_id.strip().upper().removeprefix("0X")
    if len(value) != 16 or any(c not in "0123456789ABCDEF" for c in value):
        raise KeystoreError(f"not an OpenPGP key id: {key_id!r}")
    return value


# --- public keys and the cache -------------------------------------------------------


class PublicKeyCache:
    """A bounded, thread-safe LRU of parsed public keys keyed by (fingerprint, status)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], pgp.PublicKey] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, fingerprint: str, status: str) -> pgp.PublicKey | None:
        with self._lock:
            key = self._items.get((fingerprint, status))
            if key is None:
                self.misses += 1
                return None
            self._items.move_to_end((fingerprint, status))
            self.hits += 1
            return key

    def put(self, fingerprint: str, status: str, key: pgp.PublicKey) -> None:
        with self._lock:
            self._items[(fingerprint, status)] = key
            self._items.move_to_end((fingerprint, status))
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def discard(self, fingerprint: str) -> None:
        with self._lock:
            for item in [k for k in self._items if k[0] == fingerprint]:
                del self._items[item]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


public_key_cache = PublicKeyCache()


def current_key(session: so.Session, address: str) -> StoredKey | None:
    return session.scalar(
        sa.select(StoredKey).where(
            StoredKey.address == normalize_address(address), StoredKey.status == STATUS_ACTIVE
        )
    )


def parsed_public_key(row: StoredKey) -> pgp.PublicKey:
    """The row's public key, parsed once per process."""
    cached = public_key_cache.get(row.fingerprint, row.status)
    if cached is not None:
        return cached
    key = pgp.parse_public_key(row.public_key)
    public_key_cache.put(row.fingerprint, row.status, key)
    return key


def public_key(session: so.Session, address: str) -> pgp.PublicKey | None:
    """The address's current public key, or None when it has none yet."""
    found = session.execute(
        sa.select(StoredKey.id, StoredKey.fingerprint).where(
            StoredKey.address == normalize_address(address), StoredKey.status == STATUS_ACTIVE
        )
    ).first()
    if found is None:
        return None
    cached = public_key_cache.get(found.fingerprint, STATUS_ACTIVE)
    if cached is not None:
        return cached
    data = session.scalar(sa.select(StoredKey.public_key).where(StoredKey.id == found.id))
    if data is None:  # rotated away between the two queries
        return public_key(session, address)
    key = pgp.parse_public_key(data)
    public_key_cache.put(found.fingerprint, STATUS_ACTIVE, key)
    return key


# --- making keys ----------------------------------------------------------------------


def ensure_master_version_usable(session: so.Session, version: int, now: dt.datetime) -> None:
    """Refuse to wrap under a version the master-key rotation has retired.

    A process that still holds an old ring would otherwise write a blob under a
    version whose key is about to be forgotten. On PostgreSQL the shared row lock
    taken here and the exclusive one the rotation takes before its final count
    order the two: either this blob commits first and the rotation sees it, or the
    rotation commits first and this check sees the retirement.
    """
    query = (
        sa.select(MasterKeyVersion)
        .where(MasterKeyVersion.version == version)
        .with_for_update(read=True)
    )
    row = session.scalar(query)
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    MasterKeyVersion(version=version, state=VERSION_ACTIVE, first_seen_at=now)
                )
        except sqlalchemy.exc.IntegrityError:
            pass
        row = session.scalar(query)
    if row is None or row.state == VERSION_RETIRED:
        raise MasterKeyError(f"master-key version {version} is retired; reload the master key ring")


def _new_row(
    session: so.Session, ring: MasterKeyRing, address: str, now: dt.datetime
) -> tuple[StoredKey, pgp.SecretKey]:
    # A ring of another installation has the same version numbers: refuse it before
    # it wraps a key that the installation's own ring can never open.
    ringcheck.check_ring_opens_keys(session, ring)
    secret = pgp.generate(address, now)
    ensure_master_version_usable(session, ring.primary, now)
    subkey_id = secret.subkey_ids[0]
    row = StoredKey(
        address=address,
        wkd_hash=address_hash(address),
        fingerprint=secret.fingerprint,
        key_id=secret.key_id,
        subkey_id=subkey_id,
        public_key=secret.public.to_bytes(),
        wrapped_secret=wrap.wrap(
            ring,
            pgp.secret_key_bytes(secret),
            address=address,
            fingerprint=secret.fingerprint,
        ),
        master_version=ring.primary,
        status=STATUS_ACTIVE,
        created_at=now,
        revocation_reason="",
    )
    return row, secret


def get_or_create(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    now: dt.datetime,
    *,
    events: KeyEventSink,
) -> StoredKey:
    """The address's current key, made now if it has none.

    When two processes make a first key at once, the partial unique index lets one
    insert win; the other rolls back to its savepoint and returns the winner's key,
    so the caller's transaction stays usable.
    """
    address = normalize_address(address)
    existing = current_key(session, address)
    if existing is not None:
        return existing
    row, _secret = _new_row(session, ring, address, now)
    try:
        with session.begin_nested():
            session.add(row)
    except sqlalchemy.exc.IntegrityError:
        winner = current_key(session, address)
        if winner is None:
            raise
        return winner
    events(session, ACTION_CREATE, address, f"fingerprint {row.fingerprint}")
    return row


# --- secret keys ----------------------------------------------------------------------


def unlock_row(ring: MasterKeyRing, row: StoredKey) -> pgp.SecretKey:
    """Unwrap and parse a row's secret key. Raises `wrap.DecryptionError` on any failure."""
    secret_bytes = wrap.unwrap(
        ring, row.wrapped_secret, address=row.address, fingerprint=row.fingerprint
    )
    try:
        secret = pgp.parse_secret_key(secret_bytes)
    except pgp.PgpError:
        raise wrap.DecryptionError() from None
    finally:
        del secret_bytes
    if secret.fingerprint != row.fingerprint:
        raise wrap.DecryptionError()
    return secret


def unlock(session: so.Session, ring: MasterKeyRing, address: str, key_id: str) -> pgp.SecretKey:
    """The address's secret key whose primary or subkey has `key_id` (any status)."""
    key_id = _normalize_key_id(key_id)
    row = session.scalar(
        sa.select(StoredKey).where(
            StoredKey.address == normalize_address(address),
            sa.or_(StoredKey.key_id == key_id, StoredKey.subkey_id == key_id),
        )
    )
    if row is None:
        raise NoKeyError(f"{address} has no key {key_id}")
    return unlock_row(ring, row)


def signing_key(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    now: dt.datetime,
    *,
    events: KeyEventSink,
) -> messages.SigningKey:
    """The current secret key of the address (made on first use), for signing one message.

    Parsed by Sequoia from the unwrapped bytes for this message only; its public key
    comes from the cache.
    """
    return row_signing_key(ring, get_or_create(session, ring, address, now, events=events))


def row_signing_key(ring: MasterKeyRing, row: StoredKey) -> messages.SigningKey:
    """The secret key of a key row, for signing one message (no transaction needed)."""
    secret = _unwrapped(ring, row)
    try:
        return messages.signing_key(secret, parsed_public_key(row))
    except pgp.PgpError:
        raise wrap.DecryptionError() from None
    finally:
        del secret


def _unwrapped(ring: MasterKeyRing, row: StoredKey) -> bytes:
    return wrap.unwrap(ring, row.wrapped_secret, address=row.address, fingerprint=row.fingerprint)


def keys_of(session: so.Session, address: str) -> list[StoredKey]:
    """Every key of the address, the current one first, then newest to oldest."""
    return list(
        session.scalars(
            sa.select(StoredKey)
            .where(StoredKey.address == normalize_address(address))
            .order_by((StoredKey.status == STATUS_ACTIVE).desc(), StoredKey.id.desc())
        )
    )


def secret_keys_for_decryption(
    session: so.Session, ring: MasterKeyRing, address: str
) -> list[pgp.SecretKey]:
    """Every secret key of the address, current first: old mail stays readable."""
    return [unlock_row(ring, row) for row in keys_of(session, address)]


def decrypt_for(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    message: bytes | str,
    budget: untrusted.Budget = untrusted.STORED_MESSAGE_BUDGET,
    *,
    max_output: int = untrusted.STORED_MESSAGE_MAX_OUTPUT,
    senders: Sequence[pgp.PublicKey] = (),
) -> messages.Decrypted:
    """Decrypt a stored message sent to `address`, unlocking only the key it names, and
    say whether it carries a valid signature by one of the `senders` keys.

    A stored message came from outside, so it is decrypted only in the sandbox,
    under `budget`, inflating at most `max_output` bytes: the server reads just the
    session-key packets (`keystore.packets`) to pick the address's keys the message
    names, and hands their unwrapped bytes to the child with the message. A message
    whose recipients are hidden (wildcard key ids) is tried with every key of the
    address. Raises `pgp.PgpError` for data that is no message to the address,
    `untrusted.UntrustedDataError` for one the keys do not open ("invalid") or
    beyond the bounds.
    """
    raw = message.encode("ascii", "replace") if isinstance(message, str) else message
    try:
        binary = packets.dearmor(raw)
        found = packets.session_key_packets(binary)
    except packets.PacketError as exc:
        raise pgp.PgpError(str(exc)) from None
    if not packets.is_encrypted_message(binary):
        raise pgp.PgpError("not an encrypted OpenPGP message")
    wanted = {p.key_id for p in found}
    rows = [r for r in keys_of(session, address) if r.key_id in wanted or r.subkey_id in wanted]
    if not rows:
        if packets.WILDCARD_KEY_ID not in wanted:
            raise pgp.PgpError(f"the message is not encrypted to a key of {address}")
        rows = keys_of(session, address)
    secrets = [_unwrapped(ring, r) for r in rows]
    try:
        opened = untrusted.decrypt_message(
            binary,
            secrets,
            [key.to_bytes() for key in senders],
            budget,
            max_output=max_output,
        )
    finally:
        del secrets
    return messages.signature_status(opened, senders)


# --- rotation and revocation ----------------------------------------------------------


def _lock_current(session: so.Session, address: str) -> StoredKey:
    row = session.scalar(
        sa.select(StoredKey)
        .where(StoredKey.address == address, StoredKey.status == STATUS_ACTIVE)
        .with_for_update()
    )
    if row is None:
        raise NoKeyError(f"{address} has no key")
    return row


def _replace_current(
    session: so.Session, ring: MasterKeyRing, old: StoredKey, status: str, now: dt.datetime
) -> StoredKey:
    old.status = status
    old.status_changed_at = now
    session.flush()  # frees the address's slot in the one-current-key index
    new, _secret = _new_row(session, ring, old.address, now)
    session.add(new)
    session.flush()
    public_key_cache.discard(old.fingerprint)
    return new


def rotate(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    now: dt.datetime,
    *,
    events: KeyEventSink,
) -> StoredKey:
    """Make a new current key; the old one stays for decryption only."""
    address = normalize_address(address)
    old = _lock_current(session, address)
    new = _replace_current(session, ring, old, STATUS_RETIRED, now)
    events(session, ACTION_ROTATE, address, f"{old.fingerprint} -> {new.fingerprint}")
    return new


def revoke(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    reason: str,
    now: dt.datetime,
    *,
    events: KeyEventSink,
    code: pgp.RevocationCode = "compromised",
) -> StoredKey:
    """Add a revocation signature to the current key and rotate to a new one.

    The revoked key can still open mail already encrypted to it: revocation tells
    correspondents to stop encrypting to it, it does not make old mail unreadable.
    """
    address = normalize_address(address)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
        raise KeystoreError(
            f"the revocation reason must be 1 to {MAX_REASON_LENGTH} printable characters"
        )
    if code not in pgp.REVOCATION_REASONS:
        raise KeystoreError(f"unknown revocation code {code!r}")
    old = _lock_current(session, address)
    ringcheck.check_ring_opens_keys(session, ring)  # says why, where unlock_row would not
    secret = unlock_row(ring, old)
    revoked = pgp.revoke(secret, parsed_public_key(old), code, reason)
    old.public_key = revoked.to_bytes()
    old.revocation_reason = f"{code}: {reason}"
    new = _replace_current(session, ring, old, STATUS_REVOKED, now)
    events(
        session,
        ACTION_REVOKE,
        address,
        f"{old.fingerprint} revoked ({code}: {reason}); new key {new.fingerprint}",
    )
    return new


# --- listing and export ---------------------------------------------------------------


def list_keys(session: so.Session, address: str | None = None) -> list[StoredKey]:
    query = sa.select(StoredKey).order_by(StoredKey.address, StoredKey.id)
    if address is not None:
        query = query.where(StoredKey.address == normalize_address(address))
    return list(session.scalars(query))


def export_public(session: so.Session, address: str) -> str:
    """The armored current key, followed by the address's revoked keys (with their
    revocation signatures), so an importer learns of every revocation."""
    rows = keys_of(session, address)
    current = [r for r in rows if r.status == STATUS_ACTIVE]
    revoked = [r for r in rows if r.status == STATUS_REVOKED]
    if not current and not revoked:
        raise NoKeyError(f"{normalize_address(address)} has no key")
    return pgp.armor_public_keys(parsed_public_key(r) for r in [*current, *revoked])


def lookup_by_wkd_hash(session: so.Session, domain: str, wkd_hash: str) -> StoredKey | None:
    """The current key of the address `<local>@domain` whose WKD hash is `wkd_hash`."""
    return session.scalar(
        sa.select(StoredKey).where(
            StoredKey.wkd_hash == wkd_hash,
            StoredKey.status == STATUS_ACTIVE,
            StoredKey.address.endswith("@" + domain.lower(), autoescape=True),
        )
    )


__all__: Sequence[str] = (
    "KeyEventSink",
    "KeystoreError",
    "NoKeyError",
    "current_key",
    "decrypt_for",
    "export_public",
    "get_or_create",
    "keys_of",
    "list_keys",
    "lookup_by_wkd_hash",
    "public_key",
    "public_key_cache",
    "revoke",
    "rotate",
    "secret_keys_for_decryption",
    "signing_key",
    "unlock",
    "unlock_row",
)
