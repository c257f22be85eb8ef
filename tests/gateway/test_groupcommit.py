"""Group commit: a transaction PostgreSQL aborted as a deadlock victim is stored again;
a runtime that is closed takes its committer with it.

Two worker processes' groups once took the same folder rows in crossing orders on
PostgreSQL; the victim's single message got a 451 instead of being stored again.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import groupcommit
from gateway.pipeline.context import Submission
from gateway.runtime import Runtime


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _failing_then_storing(sqlstate: str, failures: int, calls: list[str]) -> Any:
    def store(session: so.Session, submissions: Sequence[Submission]) -> None:
        calls.extend(s.queue_id for s in submissions)
        if len(calls) <= failures:
            raise sa.exc.OperationalError("UPDATE mail_folders", {}, _Orig(sqlstate))

    return store


def _submission() -> Submission:
    return Submission.__new__(Submission)  # only queue_id is read on this path


@pytest.fixture
def submission() -> Submission:
    s = _submission()
    s.queue_id = "Q1"
    return s


def test_a_deadlock_victim_is_stored_again(
    monkeypatch: pytest.MonkeyPatch, runtime: Any, submission: Submission
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(groupcommit, "store_all", _failing_then_storing("40P01", 1, calls))
    assert groupcommit.store_group(runtime.sessions, [submission]) == [None]
    assert calls == ["Q1", "Q1"]


def test_other_database_errors_are_not_retried(
    monkeypatch: pytest.MonkeyPatch, runtime: Any, submission: Submission
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(groupcommit, "store_all", _failing_then_storing("23505", 5, calls))
    [outcome] = groupcommit.store_group(runtime.sessions, [submission])
    assert isinstance(outcome, sa.exc.OperationalError)
    assert calls == ["Q1"]


def test_retries_are_bounded(
    monkeypatch: pytest.MonkeyPatch, runtime: Any, submission: Submission
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(groupcommit, "store_all", _failing_then_storing("40P01", 99, calls))
    [outcome] = groupcommit.store_group(runtime.sessions, [submission])
    assert isinstance(outcome, sa.exc.OperationalError)
    assert len(calls) == groupcommit.STORE_ATTEMPTS  # a message alone: no group try first


def test_a_closed_runtime_leaves_no_committer_behind(
    monkeypatch: pytest.MonkeyPatch, runtime: Runtime, submission: Submission
) -> None:
    """The committers are filed by session factory in a weak mapping; a committer that
    held its own factory kept it (and its engine and caches) alive for good."""
    monkeypatch.setattr(groupcommit, "store_all", lambda session, submissions: None)
    other = Runtime.open(runtime.settings)
    groupcommit.commit(other, submission)
    factory = weakref.ref(other.sessions)
    engine = weakref.ref(other.engine)
    assert groupcommit.committer(other) is groupcommit.committer(other)
    other.close()
    del other
    gc.collect()
    assert factory() is None and engine() is None
