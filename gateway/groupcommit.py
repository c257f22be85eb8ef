"""Group commit: messages that finish together share one transaction and one fsync.

The group's messages are stored one after the other in one transaction, without a
savepoint each (a savepoint costs every message two statements and a flush while
the writer's turn is held). Should any of them fail (an address deleted meanwhile,
a constraint, a PostgreSQL deadlock, a full disk), the transaction is rolled back,
nothing of the group is on disk, and each message is stored again on its own: a
fault of one never turns into a failure of all, and the others lose only time.
A caller learns its outcome only after the one commit that made its rows durable,
so its client's `250` still means "on disk" (DESIGN.md, message flow 4).

Two ways in, one implementation (`store_group`):

- `commit(runtime, submission)`, for threads of one process (the webmail, and
  SMTP when the pipeline runs in process): the first caller to find no commit
  under way leads; it stores everything that is ready, commits, and wakes the
  others. While it commits, the next ones gather, and the next leader takes them
  all: no thread sleeps on a timer, and a lone message commits at once.
- a worker process (gateway.workers) receives the messages that were waiting
  together as one batch and hands the prepared ones to `store_group` directly.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db, outages
from gateway.pipeline.context import Submission
from gateway.pipeline.deliver import store_all
from gateway.runtime import Runtime

log = logging.getLogger(__name__)


def store_group(
    sessions: so.sessionmaker[so.Session], group: Sequence[Submission]
) -> list[BaseException | None]:
    """Store every submission in one transaction; per submission, None or what failed it."""
    if not group:
        return []
    if len(group) == 1:
        return [_store_alone(sessions, group[0])]
    try:
        with db.transaction(sessions) as session:
            store_all(session, group)
    except Exception as exc:  # noqa: BLE001  (each message is stored again, alone)
        if outages.classify(exc) is not None:
            # The database or the disk is away, not one message at fault: storing each
            # alone would only meet it again, once per message.
            return [exc] * len(group)
        log.info(
            "a group of %d messages did not commit together (%s); storing each alone",
            len(group),
            _reason(exc),
        )
        return [_store_alone(sessions, submission) for submission in group]
    return [None] * len(group)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return type(exc.orig).__name__
    return type(exc).__name__


# PostgreSQL's deadlock_detected and serialization_failure: the database chose this
# transaction to give way, and the same work done again succeeds.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
STORE_ATTEMPTS = 3


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    """Two groups can take folder rows in crossing orders (message 1 of one group and
    message 2 of the other share folders): PostgreSQL then aborts one of them."""
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _store_alone(
    sessions: so.sessionmaker[so.Session], submission: Submission
) -> BaseException | None:
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            with db.transaction(sessions) as session:
                store_all(session, [submission])
        except sa.exc.DBAPIError as exc:
            if attempt == STORE_ATTEMPTS or not _retryable(exc):
                return exc
            log.info("storing %s gave way to another writer; again", submission.queue_id)
        except Exception as exc:  # noqa: BLE001  (handed to this message's caller)
            return exc
        else:
            return None
    raise AssertionError("unreachable")


@dataclass(eq=False)
class _Ticket:
    submission: Submission
    done: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """The meeting point of one process's threads that have a message ready to store.

    It keeps no reference to the session factory it is filed under (the leader stores
    with its own, the same one), so the factory's end also ends the committer.
    """

    def __init__(self, max_group: int) -> None:
        self._max_group = max_group
        self._ready = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._leading = False

    def commit(self, sessions: so.sessionmaker[so.Session], submission: Submission) -> None:
        """Return once `submission`'s rows are committed; raise what failed it."""
        ticket = _Ticket(submission)
        with self._ready:
            self._waiting.append(ticket)
            while not ticket.done:
                if self._leading:
                    self._ready.wait()
                    continue
                self._leading = True
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                self._ready.release()
                try:
                    outcomes = self._store(sessions, group)
                finally:
                    self._ready.acquire()
                for member, outcome in zip(group, outcomes, strict=True):
                    member.done, member.error = True, outcome
                self._leading = False
                self._ready.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def _store(
        self, sessions: so.sessionmaker[so.Session], group: list[_Ticket]
    ) -> list[BaseException | None]:
        try:
            return store_group(sessions, [t.submission for t in group])
        except Exception as exc:  # noqa: BLE001  (every member gets it)
            return [exc] * len(group)


_committers: weakref.WeakKeyDictionary[so.sessionmaker[so.Session], GroupCommitter] = (
    weakref.WeakKeyDictionary()
)
_committers_guard = threading.Lock()


def committer(runtime: Runtime) -> GroupCommitter:
    """The committer of `runtime`'s database in this process (one per session factory)."""
    with _committers_guard:
        found = _committers.get(runtime.sessions)
        if found is None:
            found = GroupCommitter(runtime.settings.workers.max_group)
            _committers[runtime.sessions] = found
        return found


def commit(runtime: Runtime, submission: Submission) -> None:
    """Store `submission` in the next group commit of this process; return once durable."""
    committer(runtime).commit(runtime.sessions, submission)
