"""What the gateway keeps sealed under the master key besides address keys.

TOTP secrets, queued secure-page notifications and DKIM private keys: a master-key
rotation re-wraps them with the address keys (`rewrap`), destroying a retired
version first names what would become unreadable (`owners_under`), and `check_ring`
refuses another installation's ring before anything is sealed under it, also in a
database that holds none of these records' address keys yet. One list, so a new kind
of sealed record is added in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import queue, totp
from gateway.dkim import keys as dkim_keys
from gateway.models import Account, AccountSecurity, DkimKey, Domain, QueueItem
from keystore import ringcheck, seal
from keystore.leftbehind import Rewrapped
from keystore.masterkey import MasterKeyRing

# Rows read to find a few two-factor secrets or queued notifications per version (their
# version is inside the blob, not in a column of its own).
TRIAL_SCAN = 200


def rewrap(session: so.Session, ring: MasterKeyRing) -> Rewrapped:
    """Move every gateway record to the ring's primary version: how many moved, and
    the records that do not open (left as they are, each named for the admin)."""
    return (
        totp.rewrap_secrets(session, ring)
        + queue.rewrap_sealed(session, ring)
        + dkim_keys.rewrap(session, ring)
    )


def _totp_under(session: so.Session, version: int) -> list[str]:
    owners = []
    rows = session.execute(
        sa.select(Account.email, AccountSecurity.totp_secret, AccountSecurity.totp_pending)
        .join(Account, Account.id == AccountSecurity.account_id)
        .order_by(Account.email)
    )
    for email, secret, pending in rows:
        for blob in (secret, pending):
            if blob is None:
                continue
            try:
                if totp.blob_version(blob) == version:
                    owners.append(email)
            except totp.SecretUnavailable:
                continue
    return owners


def _queue_under(session: so.Session, version: int) -> list[str]:
    owners = []
    rows = session.execute(
        sa.select(QueueItem.queue_id, QueueItem.rcpt_to, QueueItem.raw)
        .where(QueueItem.sealed.is_(True))
        .order_by(QueueItem.id)
    )
    for queue_id, rcpt_to, blob in rows:
        try:
            if seal.blob_version(blob) == version:
                owners.append(f"{queue_id} to {rcpt_to}")
        except seal.SealedRecordError:
            continue
    return owners


def _dkim_under(session: so.Session, version: int) -> list[str]:
    rows = session.execute(
        sa.select(DkimKey.selector, Domain.name)
        .join(Domain, Domain.id == DkimKey.domain_id)
        .where(DkimKey.master_version == version)
        .order_by(Domain.name, DkimKey.selector)
    )
    return [f"{selector} of {domain}" for selector, domain in rows]


def owners_under(session: so.Session, version: int) -> dict[str, list[str]]:
    """Records sealed under `version`, by kind, each named by whom it belongs to (never
    a secret): what destroying the version makes unreadable, for the admin to judge."""
    return {
        "TOTP secrets": _totp_under(session, version),
        "queued secure-page notifications": _queue_under(session, version),
        "DKIM private keys": _dkim_under(session, version),
    }


def _tables_with(session: so.Session, wanted: dict[str, tuple[str, ...]]) -> set[str]:
    """Which of the `wanted` tables exist with all of their listed columns."""
    inspector = sa.inspect(session.connection())
    tables = set(inspector.get_table_names())
    return {
        table
        for table, columns in wanted.items()
        if table in tables
        and set(columns) <= {column["name"] for column in inspector.get_columns(table)}
    }


def versions_in_use(session: so.Session) -> set[int]:
    """Every master-key version some record (an address key or a gateway record) is under.

    A backup notes them, so a restore can refuse a ring that would not open it. The
    database may be at an older schema than this release's (a backup taken after an
    upgrade is installed and before `sealgate init` migrates, or init's own check for
    a lost ring): a kind of record whose table or column is not there yet has none.
    """
    from keystore.models import StoredKey

    present = _tables_with(
        session,
        {
            StoredKey.__tablename__: ("master_version",),
            DkimKey.__tablename__: ("master_version",),
            AccountSecurity.__tablename__: ("totp_secret", "totp_pending"),
            QueueItem.__tablename__: ("raw", "sealed"),
        },
    )
    versions: set[int] = set()
    for model in (StoredKey, DkimKey):
        if model.__tablename__ in present:
            versions |= set(session.scalars(sa.select(model.master_version).distinct()))
    if AccountSecurity.__tablename__ in present:
        rows = session.execute(sa.select(AccountSecurity.totp_secret, AccountSecurity.totp_pending))
        for blob in (blob for row in rows for blob in row):
            if blob is not None:
                try:
                    versions.add(totp.blob_version(blob))
                except totp.SecretUnavailable:
                    continue
    if QueueItem.__tablename__ in present:
        for blob in session.scalars(sa.select(QueueItem.raw).where(QueueItem.sealed.is_(True))):
            try:
                versions.add(seal.blob_version(blob))
            except seal.SealedRecordError:
                continue
    return versions


def check_ring(
    session: so.Session, ring: MasterKeyRing, *, source: str = ringcheck.DEFAULT_SOURCE
) -> None:
    """Refuse a ring that is not this installation's (keystore.ringcheck): one that
    holds none of the versions any record is under, or that opens none of the sampled
    records, address keys and the gateway's own, under one of its versions."""
    ringcheck.check_ring_shares_versions(ring, versions_in_use(session), source=source)
    address_keys = ringcheck.key_trials(ringcheck.sample_keys(session, ring.keys))
    ringcheck.check_trials(
        ring, ringcheck.merge_trials(address_keys, trials(session, ring.keys)), source=source
    )


def trials(
    session: so.Session, versions: Iterable[int], limit: int = ringcheck.RING_CHECK_SAMPLE
) -> dict[int, list[ringcheck.Trial]]:
    """A few of the oldest records of each kind per version, as ring trials."""
    wanted = set(versions)
    found: dict[int, list[ringcheck.Trial]] = {}

    def add(version: int, trial: ringcheck.Trial, kind: dict[int, int]) -> None:
        if version in wanted and kind.get(version, 0) < limit:
            kind[version] = kind.get(version, 0) + 1
            found.setdefault(version, []).append(trial)

    dkim: dict[int, int] = {}
    for version in sorted(wanted):
        rows = session.scalars(
            sa.select(DkimKey)
            .where(DkimKey.master_version == version)
            .options(so.undefer(DkimKey.sealed_private_key), so.joinedload(DkimKey.domain))
            .order_by(DkimKey.id)
            .limit(limit)
        )
        for key in rows:
            add(version, _dkim_trial(key), dkim)
    secrets: dict[int, int] = {}
    for account_id, secret, pending in session.execute(
        sa.select(
            AccountSecurity.account_id, AccountSecurity.totp_secret, AccountSecurity.totp_pending
        )
        .where(
            sa.or_(
                AccountSecurity.totp_secret.is_not(None), AccountSecurity.totp_pending.is_not(None)
            )
        )
        .order_by(AccountSecurity.account_id)
        .limit(TRIAL_SCAN)
    ):
        for blob in (secret, pending):
            if blob is not None:
                try:
                    add(totp.blob_version(blob), _totp_trial(blob, account_id), secrets)
                except totp.SecretUnavailable:
                    continue
    queued: dict[int, int] = {}
    for row in session.scalars(
        sa.select(QueueItem)
        .where(QueueItem.sealed.is_(True))
        .order_by(QueueItem.id)
        .limit(TRIAL_SCAN)
    ):
        try:
            add(seal.blob_version(row.raw), _queue_trial(row), queued)
        except seal.SealedRecordError:
            continue
    return found


def _dkim_trial(row: DkimKey) -> ringcheck.Trial:
    domain = row.domain.name

    def trial(ring: MasterKeyRing) -> bool:
        try:
            dkim_keys.open_key(ring, row, domain)
        except seal.SealedRecordError:
            return False
        return True

    return trial


def _totp_trial(blob: bytes, account_id: int) -> ringcheck.Trial:
    def trial(ring: MasterKeyRing) -> bool:
        try:
            totp.open_secret(ring, blob, account_id)
        except totp.SecretUnavailable:
            return False
        return True

    return trial


def _queue_trial(row: QueueItem) -> ringcheck.Trial:
    def trial(ring: MasterKeyRing) -> bool:
        try:
            queue.open_raw(ring, row)
        except seal.SealedRecordError:
            return False
        return True

    return trial
