"""Deleting many rows without holding the database's write lock for long.

Every purge (mail log, activity, portal sessions, devices, known mail clients,
lockout records, secure-page history) deletes through `delete_in_batches`: at most
`BATCH_ROWS` rows per transaction, committed before the next batch begins. One
DELETE of a 2M-row mail log held SQLite's only write lock for 37 s, and every SMTP
transaction and portal request that wanted to write waited out its busy timeout;
in batches, other writers take their turn between two commits (`PAUSE_SECONDS`
lets a waiting writer get the lock before the purge takes it again).
On PostgreSQL short transactions keep row locks and the WAL of one statement small.

Batches walk the table's primary key upwards (keyset, not OFFSET), so each batch
reads only where the last ended: the whole purge reads the table once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db

log = logging.getLogger(__name__)

# Rows deleted per transaction: on a 200,000-row mail log (SQLite, synchronous=FULL,
# secure_delete) a batch held the write lock for 0.12 s (median; 0.65 s at most).
BATCH_ROWS = 5000
# Between two batches, with the lock released. Sealgate's own writers wait for it in
# the kernel and take it at once (gateway.db); others (the portal's requests) wait in
# SQLite's busy handler, which sleeps up to 100 ms between tries: a gap this long
# lets each of them try once.
PAUSE_SECONDS = 0.1


@dataclass(frozen=True)
class Batches:
    """How a purge deletes: `size` rows per transaction; `progress` is told, after each
    commit and before the next batch begins, how many rows that batch deleted; once
    `stop` answers True (serve is stopping), no further batch begins: the rest waits
    for the next run."""

    size: int = BATCH_ROWS
    progress: Callable[[int], None] | None = None
    pause: float = PAUSE_SECONDS
    stop: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("a batch deletes at least one row")


def delete_in_batches(
    factory: so.sessionmaker[so.Session],
    model: type[Any],
    condition: sa.ColumnElement[bool],
    batches: Batches | None = None,
) -> int:
    """Delete the rows of `model` that match `condition`, `batches.size` per transaction;
    how many went. Each batch re-checks `condition` as it deletes, so a row that stopped
    matching meanwhile (a session used again) stays."""
    plan = batches or Batches()
    keys = tuple(model.__mapper__.primary_key)
    key: sa.ColumnElement[Any] = keys[0] if len(keys) == 1 else sa.tuple_(*keys)
    after: tuple[Any, ...] | None = None
    total = 0
    while True:
        where = condition if after is None else sa.and_(condition, key > _bound(keys, after))
        with db.transaction(factory) as session:
            found = session.execute(
                sa.select(*keys).where(where).order_by(*keys).limit(plan.size)
            ).all()
            if not found:
                return total
            last = tuple(found[-1])
            result = session.execute(
                sa.delete(model)
                .where(where, key <= _bound(keys, last))
                .execution_options(synchronize_session=False)
            )
            deleted = int(getattr(result, "rowcount", 0))
        total += deleted
        if plan.progress is not None:
            plan.progress(deleted)
        if len(found) < plan.size or (plan.stop is not None and plan.stop()):
            return total
        after = last
        if plan.pause > 0:
            time.sleep(plan.pause)


def count(
    factory: so.sessionmaker[so.Session], model: type[Any], condition: sa.ColumnElement[bool]
) -> int:
    """How many rows `delete_in_batches` would delete now (for a dry run)."""
    with db.read_only(factory) as session:
        return int(
            session.scalar(sa.select(sa.func.count()).select_from(model).where(condition)) or 0
        )


def reclaim(factory: so.sessionmaker[so.Session], what: str) -> None:
    """After a purge: truncate SQLite's WAL, so what was deleted leaves the disk
    (`gateway.db.checkpoint`); a checkpoint a reader kept busy is tried after the next."""
    if not db.checkpoint(factory):
        log.info("%s: readers kept the WAL checkpoint from finishing; trying after the next", what)


def _bound(keys: tuple[sa.Column[Any], ...], values: tuple[Any, ...]) -> sa.ColumnElement[Any]:
    """A primary key's value as bound parameters of its columns' types."""
    bound = [
        sa.literal(value, type_=column.type) for column, value in zip(keys, values, strict=True)
    ]
    return bound[0] if len(bound) == 1 else sa.tuple_(*bound)
