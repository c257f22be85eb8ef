"""A two-factor set-up whose secret no longer opens starts over, with no error page.

Threat (availability): the master-key version the unconfirmed set-up was sealed under
is destroyed (`keys destroy-master` after a rotation that named it) while the owner
has the set-up page open. Typing the code from their app ended in a 500, and the dead
set-up stayed in the database, naming the destroyed version in every rotation and
backup. It is dropped instead, and the page shows a new secret to scan.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import totp
from gateway.models import Account, AccountSecurity
from gateway.runtime import Runtime
from keystore.masterkey import load_ring, save_ring
from webportal.clock import set_clock

from .account_support import ALICE, Browser, FakeClock, codes_from, secret_from, text_of


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


def _reseal_pending_under_a_destroyed_version(runtime: Runtime, secret: str) -> None:
    base = load_ring(runtime.settings.data_dir)
    doomed = base.with_new_primary()
    with runtime.sessions() as session, session.begin():
        account_id = session.scalars(sa.select(Account.id).where(Account.email == ALICE)).one()
        row = session.get(AccountSecurity, account_id)
        assert row is not None and row.totp_pending is not None
        row.totp_pending = totp.seal_secret(doomed, secret, account_id)
    rest = doomed.with_new_primary().with_retired(doomed.primary)
    save_ring(runtime.settings.data_dir, rest.with_destroyed(doomed.primary))


def test_confirming_a_set_up_whose_version_was_destroyed_starts_it_over(
    app: Flask, runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> None:
    owner = Browser(app.test_client())
    assert owner.login().status_code == 302
    shown = secret_from(owner.get("/account/2fa/enable").text)
    _reseal_pending_under_a_destroyed_version(runtime, shown)

    # The form still open in the browser: its token, not a reload of the set-up page.
    typed = owner.post("/account/2fa/enable", {"code": clock.code(shown)}, page="/account/security")
    assert typed.status_code == 302
    assert typed.headers["Location"] == "/account/2fa/enable"
    with runtime.sessions() as session:
        row = session.scalars(sa.select(AccountSecurity)).one()
        assert (row.totp_pending, row.totp_secret) == (None, None)

    again = owner.get("/account/2fa/enable")
    assert again.status_code == 200
    assert "Your two-factor set-up had expired." in text_of(again.text)
    fresh = secret_from(again.text)
    assert fresh != shown
    done = owner.post("/account/2fa/enable", {"code": clock.code(fresh)}, page="/account/security")
    assert done.status_code == 200
    assert len(codes_from(done.text)) == 10
