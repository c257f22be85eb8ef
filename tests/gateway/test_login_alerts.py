"""What counts as a new device, the alert rate limit, and the per-kind switches."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import db, login_alerts
from gateway.models import Account, MailboxMessage, QueueItem
from gateway.runtime import Runtime

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
EDGE = CHROME + " Edg/131.0.0.0"
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " HeadlessChrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("agent", "family", "described"),
    [
        (FIREFOX, "Firefox", "Firefox on Linux"),
        (CHROME, "Chrome", "Chrome on Windows"),
        (EDGE, "Edge", "Edge on Windows"),
        (SAFARI_IOS, "Safari", "Safari on iOS"),
        (HEADLESS, "Chrome", "Chrome on Linux"),
        ("curl/8.5.0", "other", "unknown browser"),
        ("", "other", "unknown browser"),
    ],
)
def test_browser_family(agent: str, family: str, described: str) -> None:
    assert login_alerts.browser_family(agent) == family
    assert login_alerts.describe_agent(agent) == described


def test_descriptions_are_translated() -> None:
    assert login_alerts.describe_agent(FIREFOX, "de") == "Firefox unter Linux"
    assert login_alerts.describe_agent(FIREFOX, "fr") == "Firefox sur Linux"
    assert login_alerts.describe_agent("curl/8", "fr") == "navigateur inconnu"


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("unknown", "unknown"),
        ("", "unknown"),
    ],
)
def test_network_prefix(ip: str, prefix: str) -> None:
    assert login_alerts.network_prefix(ip) == prefix


def alice_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalars(
            sa.select(Account.id).where(Account.email == "alice@example.test")
        ).one()


def test_a_device_is_the_network_prefix_and_the_browser(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    account_id = alice_id(runtime)

    def seen(ip: str, agent: str) -> bool:
        with db.transaction(runtime.sessions) as session:
            return login_alerts.remember_device(session, account_id, ip, agent, T0)

    assert seen("203.0.113.5", FIREFOX) is True
    assert seen("203.0.113.200", FIREFOX) is False  # same /24, same browser
    assert seen("203.0.113.5", FIREFOX.replace("128.0", "129.0")) is False  # an update
    assert seen("203.0.114.5", FIREFOX) is True  # another network
    assert seen("203.0.113.5", CHROME) is True  # another browser


def test_one_alert_per_kind_per_interval(runtime: Runtime, mail_users: dict[str, str]) -> None:
    account_id = alice_id(runtime)
    interval = dt.timedelta(minutes=15)

    def claim(kind: login_alerts.AlertKind, at: dt.datetime) -> bool:
        with db.transaction(runtime.sessions) as session:
            return login_alerts.claim_slot(session, account_id, kind, at, interval)

    assert claim("new_device", T0) is True
    assert claim("new_device", T0 + dt.timedelta(minutes=14)) is False
    assert claim("failed_login", T0 + dt.timedelta(minutes=14)) is True  # another kind
    assert claim("new_device", T0 + dt.timedelta(minutes=15)) is True
    assert claim("new_device", T0 + dt.timedelta(minutes=16)) is False


def test_switched_off_kinds_send_nothing(runtime: Runtime, mail_users: dict[str, str]) -> None:
    login = login_alerts.LoginContext(ip="203.0.113.5", user_agent=FIREFOX, at=T0)
    with db.transaction(runtime.sessions) as session:
        alice = session.scalars(
            sa.select(Account).where(Account.email == "alice@example.test")
        ).one()
        login_alerts.set_preferences(session, alice.id, new_device=False, failed_login=True)
        assert not login_alerts.queue_alert(session, runtime.settings, alice, "new_device", login)
        assert login_alerts.queue_alert(session, runtime.settings, alice, "failed_login", login)
    with runtime.sessions() as session:
        # alice@example.test is hosted: the alert is in her mailbox, not queued for the relay.
        assert session.scalars(sa.select(QueueItem)).all() == []
        [item] = session.scalars(sa.select(MailboxMessage)).all()
        assert item.address.address == "alice@example.test" and item.folder == "INBOX"
    assert item.envelope_from == "noreply@localhost"
    assert b"Subject: Failed sign-in to your sealgate account" in item.raw
