"""Online master-key rotation: add a primary version, re-wrap every blob, retire the old.

The steps follow Tink's and Fernet's rotation (add, promote, re-wrap, retire) and
are each safe to interrupt:

1. A new version is added to the ring file and made primary (`save_ring` replaces
   the file atomically). From now on every process that reads the ring wraps under
   it; processes still holding the old ring keep working, since the old version
   stays active.
2. Blobs under other versions are re-wrapped in batches, one transaction per batch.
   A kill loses at most the batch in flight, which was rolled back.
3. An old version is retired once no blob names it (checked under a lock that
   orders the check against concurrent key creation, see
   `store.ensure_master_version_usable`). The ring file keeps its key,
   decrypt-only, so a database backup taken before the rotation still opens;
   `destroy` (a separate, confirmed command) forgets it for good.

Running it again after an interruption sees an active non-primary version in the
ring and finishes that rotation instead of starting a new one.

A record under a version destroyed earlier (`sealgate keys destroy-master` run while
something still used it) can never be opened again. It is left as it is and named in
the result (`RotationPlan.left`, a `LeftBehind` each): failing on it would stop this
and every later rotation, for a record that is lost either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from keystore import wrap
from keystore.leftbehind import LeftBehind, Rewrapped, why_unopenable
from keystore.masterkey import MasterKeyError, MasterKeyRing, load_ring, ring_path, save_ring
from keystore.models import STATUS_ACTIVE, VERSION_RETIRED, MasterKeyVersion, StoredKey
from keystore.store import KeyEventSink, ensure_master_version_usable

ACTION_MASTER_ROTATE = "master.rotate"
ACTION_MASTER_RESUME = "master.resume"
ACTION_MASTER_RETIRE = "master.retire"
ACTION_MASTER_DESTROY = "master.destroy"
ACTION_MASTER_DESTROY_FAILED = "master.destroy_failed"
TARGET = "master-key"
DEFAULT_BATCH_SIZE = 100
# Each pass re-wraps what appeared since the last; keys made meanwhile by processes
# with a stale ring are few, so a rotation that keeps finding work is a problem.
MAX_PASSES = 20


class RotationError(RuntimeError):
    """The rotation cannot finish; the text is safe to show and names no secret."""


@dataclass(frozen=True)
class RotationPlan:
    ring: MasterKeyRing
    old_versions: tuple[int, ...]
    resumed: bool
    # Records that could not be re-wrapped and were left as they are (a finished rotation).
    left: tuple[LeftBehind, ...] = ()


def plan(data_dir: Path, env: dict[str, str] | None = None) -> RotationPlan:
    """Add and promote a new version, or pick up the unfinished rotation."""
    ring = load_ring(data_dir, env if env is not None else {})
    pending = tuple(v for v in ring.active_versions if v != ring.primary)
    if pending:
        return RotationPlan(ring=ring, old_versions=pending, resumed=True)
    rotated = ring.with_new_primary()
    save_ring(data_dir, rotated)
    return RotationPlan(ring=rotated, old_versions=(ring.primary,), resumed=False)


def record_start(
    session: so.Session, rotation: RotationPlan, now: dt.datetime, events: KeyEventSink
) -> None:
    ensure_master_version_usable(session, rotation.ring.primary, now)
    old = ", ".join(str(v) for v in rotation.old_versions)
    if rotation.resumed:
        detail = f"resuming: re-wrapping from version {old} to {rotation.ring.primary}"
        events(session, ACTION_MASTER_RESUME, TARGET, detail)
    else:
        detail = f"version {rotation.ring.primary} added as primary; re-wrapping from {old}"
        events(session, ACTION_MASTER_ROTATE, TARGET, detail)


def _movable(ring: MasterKeyRing) -> sa.ColumnElement[bool]:
    """Keys to re-wrap: under another version than the primary, and not a destroyed one."""
    return sa.and_(
        StoredKey.master_version != ring.primary,
        StoredKey.master_version.not_in(ring.destroyed_versions),
    )


def count_pending(session: so.Session, ring: MasterKeyRing) -> int:
    return int(
        session.scalar(sa.select(sa.func.count()).select_from(StoredKey).where(_movable(ring))) or 0
    )


def lost_keys(session: so.Session, ring: MasterKeyRing) -> list[LeftBehind]:
    """The secret keys under a destroyed version: no rotation can move them."""
    rows = session.scalars(
        sa.select(StoredKey)
        .where(StoredKey.master_version.in_(ring.destroyed_versions))
        .order_by(StoredKey.address, StoredKey.id)
    )
    return [
        LeftBehind(
            f"the secret key {row.fingerprint} of {row.address}",
            why_unopenable(ring, row.master_version),
            "what was encrypted to it stays unreadable"
            + (
                f"; `sealgate keys rotate {row.address}` gives the address a new key"
                if row.status == STATUS_ACTIVE
                else ""
            ),
            console="what was encrypted to it stays unreadable"
            + (
                f"; rotating the key of {row.address} on the Keys page gives it a new one"
                if row.status == STATUS_ACTIVE
                else ""
            ),
        )
        for row in rows
    ]


def rewrap_batch(
    session: so.Session, ring: MasterKeyRing, batch_size: int, now: dt.datetime
) -> int:
    """Re-wrap up to `batch_size` blobs under the primary version; returns how many."""
    ensure_master_version_usable(session, ring.primary, now)
    rows = session.scalars(
        sa.select(StoredKey)
        .where(_movable(ring))
        .order_by(StoredKey.id)
        .limit(batch_size)
        .options(so.undefer(StoredKey.wrapped_secret))
        .with_for_update()
    ).all()
    for row in rows:
        try:
            secret = wrap.unwrap(
                ring, row.wrapped_secret, address=row.address, fingerprint=row.fingerprint
            )
        except wrap.DecryptionError:
            raise RotationError(
                f"the secret key {row.fingerprint} of {row.address} (master-key version"
                f" {row.master_version}) cannot be opened with this ring; nothing retired"
            ) from None
        row.wrapped_secret = wrap.wrap(
            ring, secret, address=row.address, fingerprint=row.fingerprint
        )
        row.master_version = ring.primary
        del secret
    session.flush()
    return len(rows)


class _StillInUse(Exception):
    pass


def try_retire(
    sessions: so.sessionmaker[so.Session],
    version: int,
    now: dt.datetime,
    events: KeyEventSink,
) -> bool:
    """Mark `version` retired if no blob names it; False (nothing changed) otherwise."""
    try:
        with sessions.begin() as session:
            row = session.get(MasterKeyVersion, version, with_for_update=True)
            if row is None:
                row = MasterKeyVersion(version=version, first_seen_at=now)
                session.add(row)
            already = row.state == VERSION_RETIRED
            row.state = VERSION_RETIRED
            row.retired_at = row.retired_at or now
            session.flush()
            left = session.scalar(
                sa.select(sa.func.count())
                .select_from(StoredKey)
                .where(StoredKey.master_version == version)
            )
            if left:
                raise _StillInUse
            if not already:
                events(session, ACTION_MASTER_RETIRE, TARGET, f"version {version} retired")
    except _StillInUse:
        return False
    return True


def rotate_master(
    data_dir: Path,
    sessions: so.sessionmaker[so.Session],
    now: dt.datetime,
    *,
    events: KeyEventSink,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_start: Callable[[RotationPlan, int], None] = lambda plan, total: None,
    on_batch: Callable[[int], None] = lambda done: None,
    other_blobs: Callable[[so.Session, MasterKeyRing], Rewrapped] = lambda s, r: Rewrapped(),
) -> RotationPlan:
    """Run (or finish) a master-key rotation; returns the plan with the final ring.

    `other_blobs` re-wraps what other parts of the system keep under the ring (the
    gateway's TOTP secrets); it runs before each attempt to retire a version. What
    it could not open, and the address keys under a destroyed version, are in the
    result's `left`.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rotation = plan(data_dir)
    with sessions.begin() as session:
        record_start(session, rotation, now, events)
        total = count_pending(session, rotation.ring)
    on_start(rotation, total)
    ring = rotation.ring
    others = Rewrapped()
    for _ in range(MAX_PASSES):
        while True:
            with sessions.begin() as session:
                done = rewrap_batch(session, ring, batch_size, now)
            if not done:
                break
            on_batch(done)
        with sessions.begin() as session:
            others = other_blobs(session, ring)
        if all(try_retire(sessions, v, now, events) for v in rotation.old_versions):
            break
    else:
        raise RotationError(
            "keys keep appearing under an old master-key version; restart every sealgate"
            " process so it reads the new ring, then run this again"
        )
    for version in rotation.old_versions:
        ring = ring.with_retired(version)
    save_ring(data_dir, ring)
    with sessions() as session:
        lost = lost_keys(session, ring)
    return RotationPlan(
        ring=ring,
        old_versions=rotation.old_versions,
        resumed=rotation.resumed,
        left=(*lost, *others.left),
    )


def keys_under(session: so.Session, version: int) -> list[str]:
    """The addresses whose secret keys are still wrapped under `version` (they die
    with it), one entry per key."""
    return list(
        session.scalars(
            sa.select(StoredKey.address)
            .where(StoredKey.master_version == version)
            .order_by(StoredKey.address, StoredKey.id)
        )
    )


def retired_at(session: so.Session, version: int) -> dt.datetime | None:
    row = session.get(MasterKeyVersion, version)
    return row.retired_at if row is not None else None


def destroy(
    data_dir: Path, sessions: so.sessionmaker[so.Session], version: int, events: KeyEventSink
) -> MasterKeyRing:
    """Forget a retired version's key in the ring file; nothing wrapped under it opens again.

    The caller has shown the admin what that makes unreadable and had it confirmed.
    The audit entry is committed before the ring file is rewritten, so no kill leaves
    a destroyed key without one: a kill between the two leaves the entry and the key
    (running the command again destroys it, with an entry of its own). A rewrite that
    fails is recorded as well (`master.destroy_failed`) and raises MasterKeyError.
    """
    ring = load_ring(data_dir, {})
    destroyed = ring.with_destroyed(version)
    with sessions.begin() as session:
        events(
            session,
            ACTION_MASTER_DESTROY,
            TARGET,
            f"version {version} destroyed (its key is removed from the ring file next)",
        )
    try:
        save_ring(data_dir, destroyed)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        with sessions.begin() as session:
            events(
                session,
                ACTION_MASTER_DESTROY_FAILED,
                TARGET,
                f"version {version} not destroyed: the ring file could not be rewritten"
                f" ({reason}); its key is still in the ring",
            )
        raise MasterKeyError(
            f"master-key version {version} was not destroyed: {ring_path(data_dir)} could"
            f" not be rewritten ({reason}); its key is still in the ring"
        ) from None
    return destroyed
