"""A logged-in IMAP connection ends once its login no longer holds.

Threat: LOGIN was checked once per connection. A mail program (or whoever stole its
password) that kept a connection open went on reading, copying and deleting the
account's mail after the account was disabled, its address password changed, its app
password revoked or its address deleted. Found by probing a running `serve`
(2026-12-06): after `sealgate user disable`, the open connection's FETCH and LIST
answered OK.

Defence: before each command of a logged-in connection, `gateway.logins.still_valid`
(as SMTP asks at each MAIL FROM); when the login no longer holds, the command is
refused with an untagged BYE and the connection closed.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from gateway import app_passwords, db
from gateway.imap.server import ImapServer
from gateway.models import Account
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE, deliver, plain
from tests.gateway.test_smtp_2fa import enable_2fa, new_app_password
from tests.gateway.test_smtp_session_revalidation import CHANGES as SMTP_CHANGES


@pytest.fixture(autouse=True)
def _recheck_at_every_command(test_env: dict[str, str]) -> None:
    """Every command asks again (the default waits a few seconds between two checks)."""
    test_env["SEALGATE_SECURITY_SESSION_RECHECK_SECONDS"] = "0"


# The changes SMTP's sessions are tested against (the same ALICE), the ones that
# concern a mailbox: reading needs no domain rule of its own.
CHANGES: dict[str, Callable[[Runtime], None]] = {
    name: SMTP_CHANGES[name]
    for name in ("account disabled", "address password changed", "address deleted")
}


def _client(server: ImapServer, ctx: ssl.SSLContext, password: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=ctx)
    client.login(ALICE, password)
    return client


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_open_connection_ends_when_its_login_no_longer_holds(
    change: str,
    imap_server: ImapServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    deliver(runtime, ALICE, plain("kept"))
    client = _client(imap_server, client_ssl_context, mail_users[ALICE])
    try:
        assert client.select("INBOX")[0] == "OK"
        assert client.fetch("1", "(FLAGS)")[0] == "OK"
        CHANGES[change](runtime)
        with pytest.raises(imaplib.IMAP4.abort):
            client.fetch("1", "(BODY.PEEK[])")
    finally:
        client.shutdown()


def test_a_revoked_app_password_ends_only_its_connection(
    imap_server: ImapServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    enable_2fa(runtime, ALICE)
    app_id, app_password = new_app_password(runtime, ALICE, "phone")
    _, other_password = new_app_password(runtime, ALICE, "laptop")
    revoked = _client(imap_server, client_ssl_context, app_password)
    kept = _client(imap_server, client_ssl_context, other_password)
    try:
        with db.transaction(runtime.sessions) as session:
            alice = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
            app_passwords.revoke(session, alice, app_id)
        with pytest.raises(imaplib.IMAP4.abort):
            revoked.list()
        assert kept.list()[0] == "OK"
        assert kept.noop()[0] == "OK"
    finally:
        revoked.shutdown()
        kept.logout()
