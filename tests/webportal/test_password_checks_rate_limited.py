"""Every form that checks the account password or a code is limited per client, as the
sign-in form is.

Threat: a stolen session cookie used as a password oracle. The confirmation page, the
password change, turning 2FA off, the address-password change and the secret-key
download each verify the account password (or a code) and count failures towards the
account's lockout, but answered as fast as they were sent: a stolen cookie could run
the lockout's whole allowance at once (and lock the owner out), and the rule "every
login is rate-limited" did not hold for them.
"""

from __future__ import annotations

import pytest

from gateway.runtime import Runtime
from webportal import create_app
from webportal.clock import set_clock

from .account_support import Browser, FakeClock, enable_2fa

LIMIT = 3
FORMS = {
    "/account/confirm": {"password": "guess"},
    "/account/password": {"current": "guess", "new": "n" * 12, "repeat": "n" * 12},
    "/account/2fa/disable": {"password": "guess", "code": "000000"},
    "/account/address-password": {"current": "guess", "new": "n" * 12, "repeat": "n" * 12},
    "/account/secret-key": {
        "passphrase": "a long passphrase here",
        "repeat": "a long passphrase here",
        "code": "000000",
    },
}
# Where the wrong code is all that is checked (with 2FA on), and the answer to it.
NEEDS_2FA = {"/account/2fa/disable", "/account/secret-key"}
WRONG = {"/account/secret-key": 400}


@pytest.mark.parametrize("path", sorted(FORMS))
def test_password_checks_are_rate_limited_per_client(
    runtime: Runtime, mail_users: dict[str, str], path: str
) -> None:
    limited = Runtime.open(
        runtime.settings.replace(
            portal={"login_rate_limit": f"{LIMIT}/minute"}, security={"lockout_threshold": 100}
        )
    )
    try:
        app = create_app(limited, testing=True)
        clock = FakeClock()
        set_clock(app, clock)
        owner = Browser(app.test_client(), ip="192.0.2.20")
        assert owner.login().status_code == 302
        if path in NEEDS_2FA:
            enable_2fa(owner, clock)
        answers = [owner.post(path, FORMS[path]).status_code for _ in range(LIMIT + 1)]
        assert answers[:LIMIT] == [WRONG.get(path, 200)] * LIMIT, answers
        assert answers[LIMIT] == 429, answers
        # Showing the form is not an attempt.
        assert owner.get(path).status_code == 200
    finally:
        limited.close()
