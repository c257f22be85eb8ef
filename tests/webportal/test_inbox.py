"""The inbox lists the account's own mail only, newest first, in pages, never cached."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from gateway import accounts, db, mailbox
from gateway.mailbox_queries import list_folder
from gateway.models import Account, Address
from gateway.runtime import Runtime

from .conftest import LoginFn
from .webmail_support import quiet_login_alerts

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def message(subject: str, sender: str = "carol@external.test", body: str = "hello") -> bytes:
    return (
        f"From: {sender}\r\nTo: someone\r\nSubject: {subject}\r\n"
        f"Date: Sat, 01 Mar 2025 12:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def deliver(
    runtime: Runtime,
    address: str,
    raw: bytes,
    *,
    minutes: int = 0,
    folder: str = mailbox.INBOX,
    encrypted: bool = False,
) -> None:
    with db.transaction(runtime.sessions) as session:
        row = session.scalar(sa.select(Address).where(Address.address == address))
        assert row is not None
        mailbox.store(
            session,
            row,
            raw,
            queue_id=f"q{minutes}",
            envelope_from="carol@external.test",
            now=T0 + dt.timedelta(minutes=minutes),
            folder=folder,
            encrypted=encrypted,
        )


def account_id(runtime: Runtime, email: str) -> int:
    with runtime.sessions() as session:
        account = accounts.find_account(session, email)
        assert account is not None
        return account.id


def test_inbox_shows_only_the_accounts_own_mail(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    deliver(runtime, "alice@example.test", message("For Alice, plain"), minutes=1)
    deliver(
        runtime,
        "alice@example.test",
        message("For Alice, sealed", body="x" * 5000),
        minutes=2,
        encrypted=True,
    )
    deliver(runtime, "bob@example.test", message("For Bob only"), minutes=3)
    deliver(runtime, "alice@example.test", message("Alice sent this"), folder=mailbox.SENT)

    login("alice@example.test", "portal-alice-smtp-pw")
    page = client.get("/inbox")
    assert page.status_code == 200
    html = page.text
    assert "For Alice, plain" in html and "For Alice, sealed" in html
    assert "For Bob only" not in html
    assert "Alice sent this" not in html  # another folder
    assert html.index("For Alice, sealed") < html.index("For Alice, plain")  # newest first
    assert html.count('class="badge-lock"') == 1
    assert "carol@external.test" in html and "2025-03-01 12:00" in html
    assert "5 KB" in html
    assert page.headers["Cache-Control"] == "no-store"


def test_header_fields_are_escaped(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    deliver(
        runtime,
        "alice@example.test",
        message("<script>alert(1)</script>", sender='"<img src=x onerror=alert(2)>" <m@x.test>'),
    )
    login("alice@example.test", "portal-alice-smtp-pw")
    html = client.get("/inbox").text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_inbox_pages_through_long_folders(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    for n in range(120):
        deliver(runtime, "alice@example.test", message(f"Message number {n:03d}"), minutes=n)
    quiet_login_alerts(runtime, "alice@example.test")  # else the sign-in alert is message 121
    login("alice@example.test", "portal-alice-smtp-pw")

    first = client.get("/inbox").text
    assert first.count("Message number") == 50
    assert "Message number 119" in first and "Message number 070" in first
    assert "Message number 069" not in first
    assert "Page 1 of 3" in first and 'href="/inbox?page=2"' in first

    last = client.get("/inbox?page=3").text
    assert last.count("Message number") == 20 and "Message number 000" in last
    assert 'href="/inbox?page=2"' in last and "page=4" not in last

    assert "Page 3 of 3" in client.get("/inbox?page=999").text
    assert "Page 1 of 3" in client.get("/inbox?page=-4").text
    assert "Page 1 of 3" in client.get("/inbox?page=abc").text


def test_empty_inbox(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    quiet_login_alerts(runtime, "bob@example.test")  # else the sign-in alert is in it
    login("bob@example.test", "portal-bob-smtp-pw")
    page = client.get("/inbox")
    assert page.status_code == 200 and "No messages." in page.text


def test_list_folder_covers_every_address_of_the_account(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = session.scalar(sa.select(Account).where(Account.email == "alice@example.test"))
        assert alice is not None
        accounts.add_address(
            session, runtime.hasher, "alice.work@example.test", alice, "pw", actor="test"
        )
    deliver(runtime, "alice@example.test", message("to the first address"), minutes=1)
    deliver(runtime, "alice.work@example.test", message("to the second address"), minutes=2)
    deliver(runtime, "bob@example.test", message("to bob"), minutes=3)

    with runtime.sessions() as session:
        page = list_folder(session, account_id(runtime, "alice@example.test"), "INBOX", 1, 10)
    assert [m.subject for m in page.items] == ["to the second address", "to the first address"]
    assert [m.address for m in page.items] == ["alice.work@example.test", "alice@example.test"]
    assert (page.total, page.pages, page.has_newer, page.has_older) == (2, 1, False, False)


@pytest.mark.parametrize(("per_page", "expected"), [(0, 1), (10_000, 200)])
def test_list_folder_bounds_the_page_size(
    runtime: Runtime, mail_users: dict[str, str], per_page: int, expected: int
) -> None:
    with runtime.sessions() as session:
        page = list_folder(session, account_id(runtime, "bob@example.test"), "INBOX", 1, per_page)
    assert page.per_page == expected and page.items == [] and page.pages == 1
