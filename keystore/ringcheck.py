"""Whether a master key ring is this installation's: does it open the keys the database holds?

A ring of another installation (or the one a fresh `sealgate init` writes before a
backup made `--without-master-keys` is restored) has the same version numbers as
the right one, so comparing versions proves nothing. Only unwrapping tells: for
each version the ring holds, a few of the oldest address keys wrapped under it are
tried, and when none of them opens, the ring is refused. Nothing that runs with a
wrong ring is harmless: it answers encrypted mail with errors, and, worse, wraps
new keys under a ring the right one can never open.

A few rows per version keep the check cheap (it runs before every new key is
wrapped) and keep one blob written under a wrong ring, by a command run with the
wrong master.keys before this check existed, from blocking the right ring: the
oldest rows come first. A version no row is wrapped under, and so a database
without keys, passes; but a ring that holds none of the versions the database's
keys are under is refused too: another installation's ring after its rotations
(versions 3 and 4) against a fresh one (version 1) shares no version to try.

The gateway seals records of its own under the same ring (DKIM keys, two-factor
secrets, queued notifications: gateway.master_records); it passes its own trials
to `check_trials`, so a database holding only those is checked as well.

Light on purpose (SQLAlchemy, the models and the AES-GCM unwrap, no OpenPGP), so
`serve` and `restore` can call it without loading pgpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm as so

from keystore import wrap
from keystore.masterkey import MASTER_KEYS_ENV, MASTER_KEYS_FILE, MasterKeyError, MasterKeyRing
from keystore.models import StoredKey

# Rows tried per master-key version.
RING_CHECK_SAMPLE = 3

DEFAULT_SOURCE = f"{MASTER_KEYS_FILE} in the data dir, or ${MASTER_KEYS_ENV}"
DEFAULT_HOLDER = "the database"
DEFAULT_REMEDY = f"restore the right {MASTER_KEYS_FILE}; nothing was changed"


class WrappedKey(NamedTuple):
    """What unwrapping one stored key needs."""

    address: str
    fingerprint: str
    blob: bytes


# master-key version -> a few keys wrapped under it, oldest first
KeySample = Mapping[int, Sequence[WrappedKey]]

# Whether the ring opens one stored record; master-key version -> a few of them
Trial = Callable[[MasterKeyRing], bool]
Trials = Mapping[int, Sequence[Trial]]


class WrongRingError(MasterKeyError):
    """The ring opens none of the sampled keys wrapped under one of its versions."""

    def __init__(
        self,
        version: int,
        *,
        source: str = DEFAULT_SOURCE,
        holder: str = DEFAULT_HOLDER,
        remedy: str = DEFAULT_REMEDY,
    ) -> None:
        self.version = version
        super().__init__(
            f"the master key ring ({source}) does not open the keys {holder} holds under"
            f" its version {version}: it is not this installation's ring ({remedy})"
        )


class ForeignVersionsError(MasterKeyError):
    """The ring holds none of the versions the database's records are under."""

    def __init__(
        self,
        held: Iterable[int],
        in_use: Iterable[int],
        *,
        source: str = DEFAULT_SOURCE,
        holder: str = DEFAULT_HOLDER,
        remedy: str = DEFAULT_REMEDY,
    ) -> None:
        super().__init__(
            f"the master key ring ({source}) holds {_versions(held)}, but {holder} holds"
            f" its keys under {_versions(in_use)} only: it is not this installation's"
            f" ring ({remedy})"
        )


def _versions(versions: Iterable[int]) -> str:
    ordered = sorted(set(versions))
    word = "version" if len(ordered) == 1 else "versions"
    return f"{word} {', '.join(map(str, ordered))}"


def check_ring_shares_versions(
    ring: MasterKeyRing,
    in_use: Iterable[int],
    *,
    source: str = DEFAULT_SOURCE,
    holder: str = DEFAULT_HOLDER,
    remedy: str = DEFAULT_REMEDY,
) -> None:
    """Refuse a ring that holds none of `in_use` (the versions some record is under).

    Holding some but not all passes: a version destroyed on purpose leaves its records
    unreadable, and that is `keys rotate-master`'s business, not a wrong ring."""
    used = set(in_use)
    if used and not used & set(ring.keys):
        raise ForeignVersionsError(ring.keys, used, source=source, holder=holder, remedy=remedy)


def sample_keys(
    session: so.Session, versions: Iterable[int], limit: int = RING_CHECK_SAMPLE
) -> dict[int, list[WrappedKey]]:
    """Up to `limit` of the oldest keys wrapped under each of `versions` (one query each,
    on the indexed `master_version`)."""
    sample: dict[int, list[WrappedKey]] = {}
    for version in sorted(set(versions)):
        rows = session.execute(
            sa.select(StoredKey.address, StoredKey.fingerprint, StoredKey.wrapped_secret)
            .where(StoredKey.master_version == version)
            .order_by(StoredKey.id)
            .limit(limit)
        ).all()
        sample[version] = [WrappedKey(a, f, bytes(b)) for a, f, b in rows]
    return sample


def check_ring_opens(
    ring: MasterKeyRing,
    sample: KeySample,
    *,
    source: str = DEFAULT_SOURCE,
    holder: str = DEFAULT_HOLDER,
    remedy: str = DEFAULT_REMEDY,
) -> None:
    """Raise `WrongRingError` for the first version of `ring` whose sampled keys all fail
    to open. Versions with no sampled key, and versions the ring does not hold, pass."""
    check_trials(ring, key_trials(sample), source=source, holder=holder, remedy=remedy)


def key_trials(sample: KeySample) -> dict[int, list[Trial]]:
    """The sampled address keys as trials, per version."""
    return {version: [_opens(row) for row in rows] for version, rows in sample.items()}


def _opens(row: WrappedKey) -> Trial:
    def trial(ring: MasterKeyRing) -> bool:
        try:
            wrap.unwrap(ring, row.blob, address=row.address, fingerprint=row.fingerprint)
        except wrap.DecryptionError:
            return False
        return True

    return trial


def check_trials(
    ring: MasterKeyRing,
    trials: Trials,
    *,
    source: str = DEFAULT_SOURCE,
    holder: str = DEFAULT_HOLDER,
    remedy: str = DEFAULT_REMEDY,
) -> None:
    """Raise `WrongRingError` for the first version of `ring` none of whose trials opens
    (each version passes at its first record that opens). Versions with no trial pass."""
    for version in sorted(ring.keys):
        tries = trials.get(version, ())
        if tries and not any(trial(ring) for trial in tries):
            raise WrongRingError(version, source=source, holder=holder, remedy=remedy)


def merge_trials(*parts: Trials) -> dict[int, list[Trial]]:
    """Several kinds of records' trials as one mapping, each version's in the given order."""
    merged: dict[int, list[Trial]] = {}
    for part in parts:
        for version, tries in part.items():
            merged.setdefault(version, []).extend(tries)
    return merged


def check_ring_opens_keys(
    session: so.Session,
    ring: MasterKeyRing,
    *,
    source: str = DEFAULT_SOURCE,
    holder: str = DEFAULT_HOLDER,
    remedy: str = DEFAULT_REMEDY,
) -> None:
    """Refuse (`WrongRingError`) a ring that opens none of the keys the database behind
    `session` holds under one of its versions, and (`ForeignVersionsError`) one that
    holds none of the versions its keys are under; a database without keys passes."""
    check_ring_shares_versions(
        ring, key_versions(session), source=source, holder=holder, remedy=remedy
    )
    check_ring_opens(
        ring, sample_keys(session, ring.keys), source=source, holder=holder, remedy=remedy
    )


def key_versions(session: so.Session) -> set[int]:
    """The versions some address key is wrapped under."""
    return set(session.scalars(sa.select(StoredKey.master_version).distinct()))
