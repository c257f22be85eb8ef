"""Keys as an admin sees them: the inventory, address-key rotation and revocation, and
master-key rotations that run in the background of `sealgate serve`.

The console cannot re-wrap thousands of keys inside one web request, so starting
a master-key rotation only writes a job row; `run_rotations` (a task of
`sealgate serve`) claims it and runs keystore.rotation, reporting progress into
the row after each batch, which the console's progress page polls. The rotation
itself is resumable (keystore.rotation), and so is the job: a `running` job
whose heartbeat went stale (its process died) is claimed again and finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, audit, master_records, outages
from gateway.admin import Actor, AdminError, NotFound, ring_problem, valid_id
from gateway.models import MasterRotationJob
from gateway.runtime import Runtime
from gateway.timeutil import Clock, utcnow
from keystore import pgp, rotation, store
from keystore.leftbehind import LeftBehind
from keystore.masterkey import MASTER_KEYS_ENV, MasterKeyError, MasterKeyRing
from keystore.models import StoredKey
from keystore.wrap import DecryptionError

log = logging.getLogger(__name__)

REQUESTED = "requested"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
ROTATION_ACTOR = "master-key rotation"
# Records a finished job names on its page; the log has every one.
MAX_LEFT_NAMED = 3


@dataclass(frozen=True)
class KeyInfo:
    address: str
    fingerprint: str
    created_at: dt.datetime
    status: str
    master_version: int
    age_days: int


def inventory(session: so.Session, now: dt.datetime, address: str | None = None) -> list[KeyInfo]:
    """Every address key (of `address`, or all): current first within each address.
    AdminError when `address` (typed into the console's search) is no mail address."""
    try:
        rows = store.list_keys(session, address.strip().lower() if address else None)
    except store.KeystoreError:
        raise AdminError(f"{address!r} is not a mail address.") from None
    return [
        KeyInfo(
            r.address,
            r.fingerprint,
            r.created_at,
            r.status,
            r.master_version,
            max(0, (now - r.created_at).days),
        )
        for r in rows
    ]


def master_versions(session: so.Session) -> dict[int, int]:
    """How many secret keys each master-key version wraps."""
    query = sa.select(StoredKey.master_version, sa.func.count()).group_by(StoredKey.master_version)
    return {version: int(n) for version, n in session.execute(query)}


def _sink(actor: Actor) -> store.KeyEventSink:
    def sink(session: so.Session, action: str, target: str, detail: str) -> None:
        actor.record(session, action, target=target, detail=detail)

    return sink


def _key_error(session: so.Session, exc: Exception, address: str) -> AdminError:
    if isinstance(exc, store.NoKeyError):
        # Every address gets its key when it is made; none means no such address (the
        # console's form takes any text), or one made before that, which serve fills in.
        if accounts.find_address(session, address.strip().lower()) is None:
            return AdminError(f"no hosted address {address.strip()[:320]}")
        return AdminError(
            f"{address} has no key yet; every address without one gets it when the gateway starts"
        )
    if isinstance(exc, DecryptionError):
        return AdminError(f"the secret key of {address} cannot be opened with the master key ring")
    return AdminError(str(exc))


def rotate_address_key(
    session: so.Session, ring: MasterKeyRing, address: str, *, actor: Actor, now: dt.datetime
) -> StoredKey:
    """A new key for `address`; the old one stays, decrypt-only, so old mail stays readable."""
    try:
        return store.rotate(session, ring, address.strip().lower(), now, events=_sink(actor))
    except (store.KeystoreError, DecryptionError, MasterKeyError) as exc:
        raise _key_error(session, exc, address) from None


def revoke_address_key(
    session: so.Session,
    ring: MasterKeyRing,
    address: str,
    reason: str,
    *,
    actor: Actor,
    now: dt.datetime,
    code: str = "compromised",
) -> StoredKey:
    if code not in pgp.REVOCATION_REASONS:
        raise AdminError(f"reason code must be one of {', '.join(sorted(pgp.REVOCATION_REASONS))}")
    if not reason.strip() or len(reason) > 200 or not reason.isprintable():
        raise AdminError("give a reason (one line, at most 200 characters)")
    try:
        return store.revoke(
            session,
            ring,
            address.strip().lower(),
            reason.strip(),
            now,
            events=_sink(actor),
            code=cast(pgp.RevocationCode, code),
        )
    except (store.KeystoreError, DecryptionError, MasterKeyError) as exc:
        raise _key_error(session, exc, address) from None


# -- master-key rotation jobs -------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    id: int
    state: str
    requested_by: str
    requested_at: dt.datetime
    finished_at: dt.datetime | None
    primary_version: int | None
    total: int
    done: int
    error: str

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        return 0 if self.total <= 0 else min(100, self.done * 100 // self.total)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "primary_version": self.primary_version,
            "total": self.total,
            "done": self.done,
            "percent": self.percent,
            "error": self.error,
        }


def _progress(job: MasterRotationJob) -> JobProgress:
    return JobProgress(
        job.id,
        job.state,
        job.requested_by,
        job.requested_at,
        job.finished_at,
        job.primary_version,
        job.total,
        job.done,
        job.error,
    )


def active_job(session: so.Session) -> MasterRotationJob | None:
    return session.scalar(
        sa.select(MasterRotationJob)
        .where(MasterRotationJob.state.in_((REQUESTED, RUNNING)))
        .order_by(MasterRotationJob.id)
        .limit(1)
    )


def request_master_rotation(
    session: so.Session, *, actor: Actor, now: dt.datetime
) -> MasterRotationJob:
    """Ask `sealgate serve` to rotate the master key; an unfinished job is returned instead."""
    existing = active_job(session)
    if existing is not None:
        return existing
    job = MasterRotationJob(
        state=REQUESTED, requested_by=actor.name, requested_at=now, total=0, done=0, error=""
    )
    session.add(job)
    session.flush()
    actor.record(session, "master.rotate_requested", target=rotation.TARGET, detail=f"job {job.id}")
    return job


def progress(session: so.Session, job_id: int) -> JobProgress:
    job = session.get(MasterRotationJob, job_id) if valid_id(job_id) else None
    if job is None:
        raise NotFound(f"no master-key rotation {job_id}")
    return _progress(job)


def recent_jobs(session: so.Session, limit: int = 10) -> list[JobProgress]:
    rows = session.scalars(
        sa.select(MasterRotationJob).order_by(MasterRotationJob.id.desc()).limit(limit)
    )
    return [_progress(r) for r in rows]


def claim_job(
    sessions: so.sessionmaker[so.Session], now: dt.datetime, stale_seconds: float
) -> int | None:
    """Take a requested job, or a running one whose process stopped reporting; its id."""
    stale = now - dt.timedelta(seconds=stale_seconds)
    with sessions.begin() as session:
        job = session.scalar(
            sa.select(MasterRotationJob)
            .where(
                sa.or_(
                    MasterRotationJob.state == REQUESTED,
                    sa.and_(
                        MasterRotationJob.state == RUNNING,
                        sa.or_(
                            MasterRotationJob.heartbeat_at.is_(None),
                            MasterRotationJob.heartbeat_at < stale,
                        ),
                    ),
                )
            )
            .order_by(MasterRotationJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        job.state = RUNNING
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        return job.id


class _Stopped(Exception):
    """The server is stopping: leave the job to be resumed."""


def run_job(
    runtime: Runtime,
    job_id: int,
    clock: Clock = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobProgress:
    """Run (or resume) one claimed job to its end, reporting progress into its row.

    When `should_stop()` turns true (the server is shutting down) the job stops
    after the batch in hand and stays `running` with no heartbeat, so the next
    `serve` resumes it at once.
    """
    sessions = runtime.sessions

    def update(**values: object) -> None:
        with sessions.begin() as session:
            session.execute(
                sa.update(MasterRotationJob)
                .where(MasterRotationJob.id == job_id)
                .values(heartbeat_at=clock(), **values)
            )

    def on_start(plan: rotation.RotationPlan, total: int) -> None:
        update(primary_version=plan.ring.primary, total=total, done=0)

    def on_batch(done: int) -> None:
        with sessions.begin() as session:
            session.execute(
                sa.update(MasterRotationJob)
                .where(MasterRotationJob.id == job_id)
                .values(done=MasterRotationJob.done + done, heartbeat_at=clock())
            )
        if should_stop():
            raise _Stopped

    def events(session: so.Session, action: str, target: str, detail: str) -> None:
        audit.record(
            session, action, actor=ROTATION_ACTOR, target=target, detail=f"job {job_id}: {detail}"
        )

    try:
        if os.environ.get(MASTER_KEYS_ENV):
            raise rotation.RotationError(
                f"the master key ring comes from {MASTER_KEYS_ENV}; a rotation rewrites the"
                " ring file in the data dir, so this server cannot run it"
            )
        result = rotation.rotate_master(
            runtime.settings.data_dir,
            sessions,
            clock(),
            events=events,
            batch_size=runtime.settings.admin.rotation_batch_size,
            on_start=on_start,
            on_batch=on_batch,
            other_blobs=master_records.rewrap,
        )
    except _Stopped:
        with sessions.begin() as session:
            session.execute(
                sa.update(MasterRotationJob)
                .where(MasterRotationJob.id == job_id)
                .values(heartbeat_at=None)
            )
        log.info("master-key rotation job %d paused for shutdown; it resumes on restart", job_id)
    except (MasterKeyError, rotation.RotationError) as exc:
        # Shown on the console's progress page: a ring problem in the console's terms.
        shown = ring_problem(exc) if isinstance(exc, MasterKeyError) else str(exc)
        update(state=FAILED, error=shown[:1000], finished_at=clock())
        log.error("master-key rotation job %d failed: %s", job_id, exc)
    else:
        for left in result.left:
            log.warning("master-key rotation job %d: skipped: %s", job_id, left)
        # Shown on the console's progress page: the job is done, but not for these.
        note = _left_note(result.left)
        update(state=DONE, finished_at=clock(), error=note[:1000])
        log.info("master-key rotation job %d done", job_id)
    with sessions.begin() as session:
        return progress(session, job_id)


def _left_note(left: tuple[LeftBehind, ...]) -> str:
    """The finished job's note on records it could not re-wrap ("" when there were none)."""
    if not left:
        return ""
    named = "; ".join(item.for_console() for item in left[:MAX_LEFT_NAMED])
    more = (
        f"; and {len(left) - MAX_LEFT_NAMED} more (see the log)"
        if len(left) > MAX_LEFT_NAMED
        else ""
    )
    return f"{len(left)} record(s) cannot be opened and were left as they are: {named}{more}"


async def run_rotations(runtime: Runtime, stop: asyncio.Event, clock: Clock = utcnow) -> None:
    """Run master-key rotation jobs as the console asks for them (a task of `sealgate serve`)."""
    admin = runtime.settings.admin
    while not stop.is_set():
        try:
            job_id = await asyncio.to_thread(
                claim_job, runtime.sessions, clock(), admin.rotation_stale_seconds
            )
            if job_id is not None:
                await asyncio.to_thread(run_job, runtime, job_id, clock, stop.is_set)
                continue
        except Exception as exc:  # noqa: BLE001  (a failed check must not stop the server)
            if outages.report(exc) is None:  # an outage is said once, not per attempt
                log.error("master-key rotation check failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), admin.rotation_poll_interval)
