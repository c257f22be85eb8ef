"""Mail logins do not tell who has two-factor login: the "use an app password" reply only
for the right address password, after the same one Argon2 run as any other login.

Threat: anyone who can reach SMTP AUTH or IMAP LOGIN sends any password for a list of
addresses and learns, from the hint in the reply, which accounts have 2FA on (and that
they exist), with no password check and so no Argon2 cost and no lockout count.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import Account, LoginLockout
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.gateway.imap.test_imap_login import imap_login
from tests.gateway.test_smtp_2fa import HINT, auth, enable_2fa, starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
INVALID = "5.7.8 Authentication credentials invalid"
THRESHOLD = 3


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """Lock after three failures; the per-client limits out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD}, smtp={"max_auth_failures_per_client": 100}
        )
    )
    yield rt
    rt.close()


class CountingVerify:
    """Notes each Argon2 verify the runtime's hasher runs (the real one runs)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.runs = 0
        self._real = runtime.hasher.verify

    def __call__(self, stored_hash: str | None, password: str) -> bool:
        self.runs += 1
        return self._real(stored_hash, password)

    def __enter__(self) -> CountingVerify:
        self.runtime.hasher.verify = self  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        del self.runtime.hasher.verify


@pytest.fixture
def servers(
    strict: Runtime, loop_thread: LoopThread
) -> Iterator[tuple[SubmissionServer, ImapServer]]:
    smtp = SubmissionServer(strict)
    imap = ImapServer(strict, Notifier())
    loop_thread.run(smtp.start())
    loop_thread.run(imap.start())
    yield smtp, imap
    loop_thread.run(imap.stop())
    loop_thread.run(smtp.stop(grace=1))


def alice_lock(rt: Runtime) -> LoginLockout | None:
    with db.read_only(rt.sessions) as session:
        alice = session.scalars(sa.select(Account.id).where(Account.email == ALICE)).one()
        return session.get(LoginLockout, f"account:{alice}")


def test_smtp_hint_only_for_the_right_password_and_wrong_ones_count(
    servers: tuple[SubmissionServer, ImapServer],
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    smtp, _ = servers
    enable_2fa(strict, ALICE)
    with CountingVerify(strict) as argon2, starttls_client(smtp, client_ssl_context) as client:
        # A wrong password: the same reply as for an account without 2FA, one Argon2 each.
        assert auth(client, ALICE, "guess-1") == (535, INVALID)
        assert argon2.runs == 1
        assert auth(client, BOB, "guess-1") == (535, INVALID)
        assert argon2.runs == 2
        # The right address password: checked, and only then the hint.
        assert auth(client, ALICE, mail_users[ALICE]) == (535, HINT)
        assert argon2.runs == 3
    row = alice_lock(strict)
    # Both of Alice's refusals counted (the hint is no login either).
    assert row is not None and row.failures == 2 and row.locked_until is None
    with starttls_client(smtp, client_ssl_context) as client:
        assert auth(client, ALICE, "guess-2") == (535, INVALID)
        # Now locked, like any account after enough failures.
        code, reply = auth(client, ALICE, mail_users[ALICE])
        assert code == 454 and reply.startswith("4.7.0 Too many failed logins")
    row = alice_lock(strict)
    assert row is not None and row.locked_until is not None


def test_imap_hint_only_for_the_right_password(
    servers: tuple[SubmissionServer, ImapServer],
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    _, imap = servers
    enable_2fa(strict, ALICE)
    with CountingVerify(strict) as argon2:
        wrong = imap_login(imap, client_ssl_context, ALICE, "guess-1")
        assert argon2.runs == 1
        no_2fa = imap_login(imap, client_ssl_context, BOB, "guess-1")
        right = imap_login(imap, client_ssl_context, ALICE, mail_users[ALICE])
        assert argon2.runs == 3
    assert "AUTHENTICATIONFAILED" in wrong and "two-factor" not in wrong
    assert wrong == no_2fa
    assert "two-factor login: use an app password" in right
    row = alice_lock(strict)
    assert row is not None and row.failures == 2
