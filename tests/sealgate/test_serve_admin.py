"""`sealgate serve` runs the console's background work: the mail-log purge and master-key rotations.

The real server process, on the test's database: an entry older than
`[admin] mail_log_days` disappears, a fresh one stays, and a master-key
rotation requested as the console requests it runs to its end.
"""

from __future__ import annotations

import datetime as dt
import signal
import time

import sqlalchemy as sa

from gateway import db
from gateway.admin import Actor, maillog
from gateway.admin import keys as admin_keys
from gateway.models import MailLogEntry
from gateway.runtime import Runtime
from keystore import store
from keystore.masterkey import load_ring
from keystore.models import StoredKey

from .test_serve import running


def log_entry(recipient: str, at: dt.datetime) -> MailLogEntry:
    return MailLogEntry(
        queue_id="Q" + recipient[:6], message_id="", sender="alice@example.test",
        recipient=recipient, handling="plain", status=maillog.SENT, last_reply="250 2.0.0 Ok",
        created_at=at, updated_at=at,
    )  # fmt: skip


def test_serve_purges_the_mail_log_and_runs_a_requested_rotation(
    test_env: dict[str, str], runtime: Runtime, mail_users: dict[str, str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    old_version = load_ring(runtime.settings.data_dir).primary
    with db.transaction(runtime.sessions) as session:
        session.add(log_entry("old@x.test", now - dt.timedelta(days=21)))
        session.add(log_entry("new@x.test", now - dt.timedelta(days=1)))
        for address in mail_users:
            store.get_or_create(session, runtime.ring.get(), address, now, events=lambda *a: None)
        job_id = admin_keys.request_master_rotation(
            session, actor=Actor("root@example.test", ip="192.0.2.1"), now=now
        ).id
    env = {**test_env, "SEALGATE_ADMIN_ROTATION_POLL_INTERVAL": "0.2"}
    with running(env) as server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.read_only(runtime.sessions) as session:
                left = list(session.scalars(sa.select(MailLogEntry.recipient)))
                state = admin_keys.progress(session, job_id).state
            if left == ["new@x.test"] and state == admin_keys.DONE:
                break
            time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0, "".join(server.output)
    assert left == ["new@x.test"]
    assert state == admin_keys.DONE
    ring = load_ring(runtime.settings.data_dir)
    assert ring.primary != old_version
    with db.read_only(runtime.sessions) as session:
        assert set(session.scalars(sa.select(StoredKey.master_version))) == {ring.primary}
    assert any("purged 1 mail log entries" in line for line in server.output), server.output
