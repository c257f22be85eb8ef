"""Master-key rotations started from the console run in the background and resume.

Threat: a rotation that dies half-way leaves keys under a version that is about
to be retired; the job must be picked up again and finish, never lose a key.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.admin import Actor, AdminError, keys
from gateway.models import AuditEvent, MasterRotationJob
from gateway.runtime import Runtime
from keystore import rotation, store
from keystore.masterkey import load_ring
from keystore.models import StoredKey

ADMIN = Actor("root@example.test", ip="192.0.2.7", user_agent="test")
ADDRESSES = [f"user{i}@example.test" for i in range(5)]


def make_keys(runtime: Runtime, now: dt.datetime) -> None:
    with db.transaction(runtime.sessions) as session:
        for address in ADDRESSES:
            store.get_or_create(session, runtime.ring.get(), address, now, events=lambda *a: None)


def versions(runtime: Runtime) -> set[int]:
    with db.read_only(runtime.sessions) as session:
        return set(session.scalars(sa.select(StoredKey.master_version)))


def test_a_requested_rotation_runs_with_progress_and_is_audited(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    make_keys(runtime, now)
    old = load_ring(runtime.settings.data_dir).primary
    with db.transaction(runtime.sessions) as session:
        job = keys.request_master_rotation(session, actor=ADMIN, now=now)
        job_id = job.id
        # A second request while one is open returns the same job.
        assert keys.request_master_rotation(session, actor=ADMIN, now=now).id == job_id
    assert keys.claim_job(runtime.sessions, now, 120) == job_id
    assert keys.claim_job(runtime.sessions, now, 120) is None  # fresh heartbeat: not twice
    progress = keys.run_job(runtime, job_id)
    assert progress.state == keys.DONE and progress.error == ""
    assert (progress.total, progress.done, progress.percent) == (5, 5, 100)
    new = load_ring(runtime.settings.data_dir)
    assert new.primary != old and progress.primary_version == new.primary
    assert old not in new.active_versions
    assert versions(runtime) == {new.primary}
    with db.read_only(runtime.sessions) as session:
        events = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
        requested = [e for e in events if e.action == "master.rotate_requested"]
        assert [(e.actor, e.ip) for e in requested] == [("root@example.test", "192.0.2.7")]
        assert {rotation.ACTION_MASTER_ROTATE, rotation.ACTION_MASTER_RETIRE} <= {
            e.action for e in events if e.actor == keys.ROTATION_ACTOR
        }


def test_a_rotation_whose_process_died_is_resumed(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    make_keys(runtime, now)
    old = load_ring(runtime.settings.data_dir).primary
    with db.transaction(runtime.sessions) as session:
        job_id = keys.request_master_rotation(session, actor=ADMIN, now=now).id
    assert keys.claim_job(runtime.sessions, now, 120) == job_id
    # The process promoted a new version and re-wrapped two keys, then died.
    plan = rotation.plan(runtime.settings.data_dir)
    with runtime.sessions.begin() as session:
        assert rotation.rewrap_batch(session, plan.ring, 2, now) == 2
    assert versions(runtime) == {old, plan.ring.primary}

    later = now + dt.timedelta(seconds=60)
    assert keys.claim_job(runtime.sessions, later, 120) is None  # still within its heartbeat
    much_later = now + dt.timedelta(seconds=600)
    assert keys.claim_job(runtime.sessions, much_later, 120) == job_id
    progress = keys.run_job(runtime, job_id)
    assert progress.state == keys.DONE
    assert versions(runtime) == {plan.ring.primary}
    with db.read_only(runtime.sessions) as session:
        actions = set(session.scalars(sa.select(AuditEvent.action)))
    assert rotation.ACTION_MASTER_RESUME in actions


def test_serve_task_runs_a_requested_rotation(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    make_keys(runtime, now)
    fast = runtime.settings.replace(admin={"rotation_poll_interval": 0.05})
    rt = Runtime(fast, runtime.engine, runtime.sessions, runtime.hasher, runtime.ring)

    async def scenario() -> str:
        stop = asyncio.Event()
        task = asyncio.create_task(keys.run_rotations(rt, stop))
        with db.transaction(rt.sessions) as session:
            job_id = keys.request_master_rotation(session, actor=ADMIN, now=now).id
        for _ in range(400):
            with db.read_only(rt.sessions) as session:
                state = keys.progress(session, job_id).state
            if state in (keys.DONE, keys.FAILED):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return state

    assert asyncio.run(scenario()) == keys.DONE
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(MasterRotationJob.state)) == keys.DONE


def test_a_stopping_server_pauses_the_job_and_the_next_one_resumes_it(runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC)
    make_keys(runtime, now)
    small = runtime.settings.replace(admin={"rotation_batch_size": 2})
    rt = Runtime(small, runtime.engine, runtime.sessions, runtime.hasher, runtime.ring)
    with db.transaction(rt.sessions) as session:
        job_id = keys.request_master_rotation(session, actor=ADMIN, now=now).id
    assert keys.claim_job(rt.sessions, now, 120) == job_id
    paused = keys.run_job(rt, job_id, should_stop=lambda: True)  # stop after the first batch
    assert (paused.state, paused.done, paused.total) == (keys.RUNNING, 2, 5)
    assert len(versions(rt)) == 2  # half-way: old and new version both in use
    assert keys.claim_job(rt.sessions, now, 120) == job_id  # no heartbeat: taken at once
    finished = keys.run_job(rt, job_id)
    assert finished.state == keys.DONE
    assert versions(rt) == {load_ring(rt.settings.data_dir).primary}


def test_rotating_the_key_of_no_hosted_address_says_so(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The console's form takes any text: for a typo it answered "has no key yet (one is
    made when the address first sends or receives encrypted mail)", which is neither
    true (every address gets its key when made) nor the problem."""
    now = dt.datetime.now(dt.UTC)
    ring = runtime.ring.get()
    for act in (
        lambda s, a: keys.rotate_address_key(s, ring, a, actor=ADMIN, now=now),
        lambda s, a: keys.revoke_address_key(s, ring, a, "lost", actor=ADMIN, now=now),
    ):
        expected = r"^no hosted address nobody@example\.test$"
        with db.transaction(runtime.sessions) as session, pytest.raises(AdminError, match=expected):
            act(session, "nobody@example.test")
    with db.transaction(runtime.sessions) as session:  # an address from before keys at birth
        session.execute(sa.delete(StoredKey).where(StoredKey.address == "alice@example.test"))
    # No command named: the console's admin does not type one (the gateway fills it in).
    expected = r"^alice@example\.test has no key yet; every address without one gets it when the"
    with db.transaction(runtime.sessions) as session, pytest.raises(AdminError, match=expected):
        keys.rotate_address_key(session, ring, "alice@example.test", actor=ADMIN, now=now)
