"""`sealgate user unlock` and `sealgate user passwd` against a real database."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway import db, lockout, sessions
from gateway.models import Account, AuditEvent, PortalSession
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from sealgate.cli import cli

ALICE = "alice@example.test"


def run(test_env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=test_env, input=stdin)


def alice(runtime: Runtime) -> Account:
    with runtime.sessions() as session:
        return session.scalars(sa.select(Account).where(Account.email == ALICE)).one()


def test_unlock_lifts_the_account_lock(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    account = alice(runtime)
    now = utcnow()
    with db.transaction(runtime.sessions) as session:
        counters = lockout.store_for(session, runtime.settings.security)
        for _ in range(runtime.settings.security.lockout_threshold):
            counters.record_failure(lockout.account_key(account.id), now)
    with db.transaction(runtime.sessions) as session:
        counters = lockout.store_for(session, runtime.settings.security)
        assert counters.locked_until(lockout.account_key(account.id), now) is not None

    result = run(test_env, "user", "unlock", "Alice@Example.test")
    assert result.exit_code == 0, result.output
    assert result.output == f"sign-in for {ALICE} unlocked\n"
    with db.transaction(runtime.sessions) as session:
        counters = lockout.store_for(session, runtime.settings.security)
        assert counters.locked_until(lockout.account_key(account.id), now) is None
        event = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "account.unlock")
        ).one()
        assert (event.actor, event.account_id) == ("cli", account.id)

    missing = run(test_env, "user", "unlock", "nobody@example.test")
    assert missing.exit_code == 1 and "no account nobody@example.test" in missing.output


def test_passwd_sets_the_password_and_ends_sessions(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    account = alice(runtime)
    with db.transaction(runtime.sessions) as session:
        for _ in range(2):
            sessions.create(
                session, account.id, sessions.new_nonce(), ip="", user_agent="", now=utcnow()
            )

    result = run(test_env, "user", "passwd", ALICE, "--password-stdin", stdin="a new long one\n")
    assert result.exit_code == 0, result.output
    assert result.output == f"password of {ALICE} changed; 2 portal session(s) ended\n"
    assert "a new long one" not in result.output
    with runtime.sessions() as session:
        row = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        assert runtime.hasher.verify(row.password_hash, "a new long one")
        ended = session.scalars(sa.select(PortalSession.end_reason)).all()
        assert ended == [sessions.END_BY_ADMIN] * 2

    generated = run(test_env, "user", "passwd", ALICE)
    assert generated.exit_code == 0
    password = generated.output.splitlines()[1].split()[1]
    assert len(password) == 20
    with runtime.sessions() as session:
        row = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        assert runtime.hasher.verify(row.password_hash, password)

    missing = run(
        test_env,
        "user",
        "passwd",
        "nobody@example.test",
        "--password-stdin",
        stdin="long enough 1\n",
    )
    assert missing.exit_code == 1 and "no account" in missing.output
