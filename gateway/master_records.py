"""What the gateway keeps sealed under the master key besides address keys.

TOTP secrets, queued secure-page notifications and DKIM private keys: a master-key
rotation re-wraps them with the address keys (`rewrap`), and destroying a retired
version first counts what would become unreadable (`count_under`). One list, so a
new kind of sealed record is added in one place.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import queue, totp
from gateway.dkim import keys as dkim_keys
from gateway.models import AccountSecurity, DkimKey, QueueItem
from keystore import seal
from keystore.masterkey import MasterKeyRing


def rewrap(session: so.Session, ring: MasterKeyRing) -> int:
    """Move every gateway record to the ring's primary version; how many moved."""
    return (
        totp.rewrap_secrets(session, ring)
        + queue.rewrap_sealed(session, ring)
        + dkim_keys.rewrap(session, ring)
    )


def _totp_under(session: so.Session, version: int) -> int:
    count = 0
    for row in session.scalars(sa.select(AccountSecurity)):
        for blob in (row.totp_secret, row.totp_pending):
            if blob is None:
                continue
            try:
                count += totp.blob_version(blob) == version
            except totp.SecretUnavailable:
                continue
    return count


def _queue_under(session: so.Session, version: int) -> int:
    count = 0
    for blob in session.scalars(sa.select(QueueItem.raw).where(QueueItem.sealed.is_(True))):
        try:
            count += seal.blob_version(blob) == version
        except seal.SealedRecordError:
            continue
    return count


def count_under(session: so.Session, version: int) -> dict[str, int]:
    """Records sealed under `version`, by kind (what destroying it makes unreadable)."""
    return {
        "TOTP secrets": _totp_under(session, version),
        "queued secure-page notifications": _queue_under(session, version),
        "DKIM private keys": dkim_keys.count_under(session, version),
    }


def versions_in_use(session: so.Session) -> set[int]:
    """Every master-key version some record (an address key or a gateway record) is under.

    A backup notes them, so a restore can refuse a ring that would not open it.
    """
    from keystore.models import StoredKey

    versions = set(session.scalars(sa.select(StoredKey.master_version).distinct()))
    versions |= set(session.scalars(sa.select(DkimKey.master_version).distinct()))
    for row in session.scalars(sa.select(AccountSecurity)):
        for blob in (row.totp_secret, row.totp_pending):
            if blob is not None:
                try:
                    versions.add(totp.blob_version(blob))
                except totp.SecretUnavailable:
                    continue
    for blob in session.scalars(sa.select(QueueItem.raw).where(QueueItem.sealed.is_(True))):
        try:
            versions.add(seal.blob_version(blob))
        except seal.SealedRecordError:
            continue
    return versions
