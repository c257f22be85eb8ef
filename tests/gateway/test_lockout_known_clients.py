"""The known-client lockout rule as an invariant: failures from clients other than C never
lock out a known client C (gateway.lockout, gateway.known_clients).

Threat: a guesser who keeps an account locked for ever, and with it its owner's mail
programs and browser, by sending a few wrong passwords per lock period from anywhere:
one address, many, IPv6 neighbours outside the owner's /64, other accounts' device
cookies, over SMTP, IMAP and the portal, interleaved with time passing and with the
owner's own logins. Distributed guessing must still lock the account for everyone
unknown.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import db, logins
from gateway.logins import Attempt
from gateway.models import Account, LoginLockout
from gateway.runtime import Runtime
from gateway.timeutil import utcnow

ALICE, BOB = "alice@example.test", "bob@example.test"
KNOWN_MAIL = "2001:db8:5:5::10"  # C: the owner's mail program, known by its /64
OTHER_KNOWN_MAIL = "192.0.2.11"  # another known mail program of the owner's
OTHERS_IPS = ("203.0.113.1", "203.0.113.2", "2001:db8:5:6::10", "192.0.2.12", OTHER_KNOWN_MAIL)
STRANGERS = (f"2001:db8:77:{n:x}::1" for n in itertools.count())  # one /64 per example
DEVICE = "device-of-c"  # C': the owner's browser with its device cookie
BROWSER_IP = "198.51.100.1"

# One attempt by someone other than C or C': (who, protocol, right password?, seconds later).
others = st.tuples(
    st.one_of(
        st.tuples(st.just("ip"), st.sampled_from(OTHERS_IPS)),
        st.tuples(st.just("device"), st.sampled_from(("another-device", "bobs-device", ""))),
    ),
    st.sampled_from(("SMTP", "IMAP", "portal")),
    st.booleans(),
    st.integers(min_value=0, max_value=400),
)
THRESHOLD = 3


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """Lock after three failures (so short interleavings lock), first lock 300 s."""
    rt = Runtime.open(runtime.settings.replace(security={"lockout_threshold": THRESHOLD}))
    yield rt
    rt.close()


def check(rt: Runtime, attempt: Attempt, now: dt.datetime) -> logins.LoginResult:
    return logins.check(rt.sessions, rt.hasher, rt.credentials, rt.settings, attempt, now=now)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(others, min_size=1, max_size=14), c_logs_in_between=st.booleans())
def test_failures_of_other_clients_never_lock_out_a_known_client(
    strict: Runtime,
    mail_users: dict[str, str],
    steps: list[tuple[tuple[str, str], str, bool, int]],
    c_logs_in_between: bool,
) -> None:
    rt = strict
    with db.transaction(rt.sessions) as session:
        session.execute(sa.delete(LoginLockout))
        alice = session.scalars(sa.select(Account.id).where(Account.email == ALICE)).one()
        bob = session.scalars(sa.select(Account.id).where(Account.email == BOB)).one()
    mail_pw, portal_pw = mail_users[ALICE], "portal-" + mail_users[ALICE]
    devices = {"another-device": (alice, "another-device"), "bobs-device": (bob, DEVICE)}
    now = utcnow()
    # C's mail program and the other known one have logged in before.
    for ip in (KNOWN_MAIL, OTHER_KNOWN_MAIL):
        assert check(rt, Attempt("SMTP", ALICE, mail_pw, ip), now).ok

    def c_mail() -> logins.LoginResult:
        # Another address in C's /64: the same client (privacy addresses rotate).
        return check(rt, Attempt("IMAP", ALICE, mail_pw, "2001:db8:5:5::99"), now)

    def c_browser() -> logins.LoginResult:
        attempt = Attempt(
            "portal", ALICE, portal_pw, BROWSER_IP, devices=frozenset({(alice, DEVICE)})
        )
        return check(rt, attempt, now)

    for (kind, who), protocol, right, later in steps:
        now += dt.timedelta(seconds=later)
        if kind == "ip":
            attempt = Attempt(protocol, ALICE, mail_pw if right else "guess", who)  # type: ignore[arg-type]
            if protocol == "portal":
                attempt = Attempt("portal", ALICE, portal_pw if right else "guess", who)
        else:
            chosen = frozenset({devices[who]}) if who else frozenset()
            attempt = Attempt(
                "portal", ALICE, portal_pw if right else "guess", BROWSER_IP, devices=chosen
            )
        check(rt, attempt, now)
        if c_logs_in_between:
            assert c_mail().ok and c_browser().ok
    mail, browser = c_mail(), c_browser()
    assert mail.ok, mail
    assert browser.ok, browser
    # The rule switched nothing else off: while the account is locked, an unknown
    # client is refused even with the right password.
    with db.read_only(rt.sessions) as session:
        until = session.scalar(
            sa.select(LoginLockout.locked_until).where(LoginLockout.key == f"account:{alice}")
        )
    stranger = check(rt, Attempt("SMTP", ALICE, mail_pw, next(STRANGERS)), now)
    assert (stranger.refusal == "locked") == (until is not None and until > now), stranger


def test_distributed_guessing_still_locks_the_account_for_unknown_clients(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Guesses spread over many unknown addresses count together, as before."""
    rt = runtime
    now = utcnow()
    threshold = rt.settings.security.lockout_threshold
    assert check(rt, Attempt("SMTP", ALICE, mail_users[ALICE], "192.0.2.10"), now).ok
    for n in range(threshold):
        result = check(rt, Attempt("SMTP", ALICE, "guess", f"203.0.113.{n + 1}"), now)
        assert result.refusal == "wrong"
    right = Attempt("SMTP", ALICE, mail_users[ALICE], "203.0.113.200")
    assert check(rt, right, now).refusal == "locked"
    assert check(rt, Attempt("IMAP", ALICE, mail_users[ALICE], "192.0.2.10"), now).ok
