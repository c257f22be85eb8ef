"""The per-link try counter holds across processes: parallel guesses stop at the limit.

Threat: an attacker spreading password guesses over many connections and portal
processes at once, to get more than `max_failures` tries at a link before it
locks. Each try is counted by one conditional UPDATE before the password is
checked, so every process sees every other's tries.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from gateway import db
from gateway.models import MailboxMessage, SecureLink
from gateway.runtime import Runtime
from gateway.securepage import links
from gateway.securepage import store as pages
from gateway.timeutil import utcnow
from tests.webportal.test_secure import compose, send

WORKERS = 24
PROCESSES = 4


def test_parallel_guesses_from_several_processes_stop_at_the_limit(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), ["carol@elsewhere.example"])["carol@elsewhere.example"]
    # One engine and session factory each, as separate portal processes have.
    portals = [Runtime.open(runtime.settings) for _ in range(PROCESSES)]
    barrier = threading.Barrier(WORKERS)
    limit = runtime.settings.securepage.max_failures

    def guess(n: int) -> tuple[bool, bool]:
        rt = portals[n % PROCESSES]
        barrier.wait()
        with db.transaction(rt.sessions) as session:
            attempt = pages.reserve_attempt(session, token, utcnow(), rt.settings.securepage)
        if attempt is None:
            return False, False
        assert pages.try_password(attempt, f"guess {n}", rt.settings.securepage) is None
        with db.transaction(rt.sessions) as session:
            locked = pages.record_failure(session, attempt, utcnow(), rt.settings)
        return True, locked

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(guess, range(WORKERS)))
    finally:
        for rt in portals:
            rt.close()

    assert sum(counted for counted, _ in outcomes) == limit
    assert sum(locked for _, locked in outcomes) == 1  # one lock, one mail to the sender
    with db.read_only(runtime.sessions) as session:
        link = session.scalar(
            sa.select(SecureLink).where(SecureLink.token_digest == links.digest(token))
        )
        assert link is not None and link.failures == limit and link.locked_at is not None
        notices = session.scalars(
            sa.select(MailboxMessage).where(MailboxMessage.envelope_from == "")
        ).all()
    assert len(notices) == 1
