"""Delete what a secure page no longer needs: `sealgate purge`, and hourly in `serve`.

A message's ciphertext and wrapped key go once none of its links can be opened
any more (each expired or revoked). A locked link keeps them until it expires:
the sender may still set a new password, which unlocks it. The rows themselves
stay for the sender's view (who opened what, when) for `history_days` more,
then go too.

Both steps work in short transactions (a batch of ciphertexts, a batch of
forgotten messages), so other writers take the lock in between (gateway.purging).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, db, outages, purging
from gateway.models import SecureLink, SecureMessage
from gateway.runtime import Runtime
from gateway.settings import SecurePageSettings
from gateway.timeutil import Clock, utcnow

log = logging.getLogger(__name__)

ACTOR = "purge"
ACTION = "securepage.purge"
# Ciphertexts dropped per transaction: fewer than gateway.purging's rows, each is large.
BATCH = 200


@dataclass(frozen=True)
class PurgeResult:
    ciphertexts: int = 0
    forgotten: int = 0


def _still_open(now: dt.datetime) -> sa.Exists:
    return (
        sa.select(SecureLink.id)
        .where(
            SecureLink.message_id == SecureMessage.id,
            SecureLink.revoked_at.is_(None),
            SecureLink.expires_at > now,
        )
        .exists()
    )


def due_for_purge(session: so.Session, now: dt.datetime) -> list[int]:
    """Ids of messages with ciphertext left whose every link is expired or revoked."""
    return list(
        session.scalars(
            sa.select(SecureMessage.id)
            .where(SecureMessage.purged_at.is_(None), ~_still_open(now))
            .order_by(SecureMessage.id)
        )
    )


def purge_messages(
    session: so.Session, ids: list[int], now: dt.datetime, *, actor: str = ACTOR
) -> int:
    """Drop the blobs of these messages (re-checked: a link extended meanwhile keeps them).

    Each batch is audited in its own transaction, as `actor`: the scheduled job's name
    in serve, "cli" (with the OS user) when an admin runs `sealgate purge`.
    """
    if not ids:
        return 0
    result = session.execute(
        sa.update(SecureMessage)
        .where(
            SecureMessage.id.in_(ids),
            SecureMessage.purged_at.is_(None),
            ~_still_open(now),
        )
        .values(ciphertext=None, wrapped_key=None, size=0, purged_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0))
    if count:
        audit.record(session, ACTION, actor=actor, detail=f"{count} ciphertexts deleted")
    return count


def _forgettable(now: dt.datetime, settings: SecurePageSettings) -> sa.ColumnElement[bool]:
    cutoff = now - dt.timedelta(days=settings.history_days)
    return sa.and_(SecureMessage.purged_at.is_not(None), SecureMessage.purged_at < cutoff)


def forget_history(
    factory: so.sessionmaker[so.Session],
    now: dt.datetime,
    settings: SecurePageSettings,
    batches: purging.Batches | None = None,
) -> int:
    """Forget messages purged more than `history_days` ago, in batches; their links go
    with them (ON DELETE CASCADE, migration 0005)."""
    return purging.delete_in_batches(factory, SecureMessage, _forgettable(now, settings), batches)


def purge(
    runtime: Runtime,
    now: dt.datetime,
    *,
    actor: str = ACTOR,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> PurgeResult:
    """Purge in batches, one transaction each, so a large backlog never holds a long lock;
    then truncate SQLite's WAL, so the deleted ciphertexts leave the disk. Once `stop`
    answers True (serve is stopping), no further batch begins."""
    with db.read_only(runtime.sessions) as session:
        ids = due_for_purge(session, now)
    deleted = 0
    for start in range(0, len(ids), BATCH):
        if start:
            if stop is not None and stop():
                break
            time.sleep(purging.PAUSE_SECONDS)  # the lock is free: let a waiting writer in
        batch = ids[start : start + BATCH]
        with db.transaction(runtime.sessions) as session:
            deleted += purge_messages(session, batch, now, actor=actor)
        if progress is not None:
            progress(len(batch))
    forgotten = 0
    if stop is None or not stop():
        batches = purging.Batches(progress=progress, stop=stop)
        forgotten = forget_history(runtime.sessions, now, runtime.settings.securepage, batches)
    purging.reclaim(runtime.sessions, "secure-page purge")
    return PurgeResult(ciphertexts=deleted, forgotten=forgotten)


def pending(runtime: Runtime, now: dt.datetime) -> int:
    """How many messages' ciphertexts are due (what `purge` would drop now)."""
    with db.read_only(runtime.sessions) as session:
        return len(due_for_purge(session, now))


def pending_history(runtime: Runtime, now: dt.datetime) -> int:
    """How many purged messages `purge` would forget now."""
    condition = _forgettable(now, runtime.settings.securepage)
    with db.read_only(runtime.sessions) as session:
        return int(
            session.scalar(sa.select(sa.func.count()).select_from(SecureMessage).where(condition))
            or 0
        )


async def run_purge(runtime: Runtime, stop: asyncio.Event, clock: Clock = utcnow) -> None:
    """Purge now and then every `[securepage] purge_interval` seconds until `stop` is set."""
    interval = runtime.settings.securepage.purge_interval
    while not stop.is_set():
        try:
            result = await asyncio.to_thread(purge, runtime, clock(), stop=stop.is_set)
            if result.ciphertexts or result.forgotten:
                log.info(
                    "secure pages: %d ciphertexts deleted, %d old messages forgotten",
                    result.ciphertexts,
                    result.forgotten,
                )
        except Exception as exc:  # noqa: BLE001  (a failed purge must not stop the server)
            if outages.report(exc) is None:  # an outage is said once, not per attempt
                log.error("secure-page purge failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
