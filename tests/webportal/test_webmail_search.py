"""Search in the webmail (issue 7, Must show 2, at the portal level).

An encrypted message is found by its subject only: a word only in its body
finds nothing, the same word in its subject finds it, and the page says so.
Plain messages are found by their text too; sender, recipient, date and folder
narrow the search; another account's mail is never found.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from email.message import EmailMessage

import pytest
from flask import Flask

from gateway.mailbox import INBOX
from gateway.runtime import Runtime

from .webmail_support import ALICE, BOB, Webmail, deliver, rows, webmail_app

WORD = "Zebrafink"
SCOPE_NOTE = "Encrypted messages match on their subject only"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


@pytest.fixture
def bob(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(BOB)


def found(page: str) -> list[str]:
    """Subjects in the result table, in order."""
    return [
        html.unescape(s)
        for s in re.findall(r'<td class="subject"><a href="/mail/\d+">([^<]*)</a>', page)
    ]


def plain(subject: str, body: str, sender: str = "carol@elsewhere.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ALICE
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def test_encrypted_mail_matches_on_its_subject_only(
    alice: Webmail, bob: Webmail, runtime: Runtime
) -> None:
    sent = bob.compose(
        **{
            "from": BOB,
            "to": ALICE,
            "subject": "Quartalsbericht",
            "text": f"Der {WORD} sitzt im Anhang.",
            "encrypt": "yes",
        }
    )
    assert sent.status_code == 303
    (stored,) = rows(runtime, ALICE, INBOX)
    assert stored.encrypted and stored.search_text is None

    nothing = alice.get(f"/search?q={WORD}")
    assert nothing.status_code == 200
    assert found(nothing.text) == []
    assert "0 message(s) found" in nothing.text
    assert SCOPE_NOTE in nothing.text

    bob.compose(
        **{
            "from": BOB,
            "to": ALICE,
            "subject": f"{WORD} im Betreff",
            "text": "nichts weiter",
            "encrypt": "yes",
        }
    )
    hit = alice.get(f"/search?q={WORD.lower()}").text
    assert found(hit) == [f"{WORD} im Betreff"]
    assert hit.count('class="badge-lock"') == 1

    # A plain message is found by its text as well.
    deliver(runtime, ALICE, plain("Vogelkunde", f"Heute ein {WORD} am Fenster."))
    assert found(alice.get(f"/search?q={WORD}").text) == ["Vogelkunde", f"{WORD} im Betreff"]

    # Bob's own copies (his Sent folder) are his, not Alice's; and the other way round.
    assert found(bob.get(f"/search?q={WORD}").text) == [f"{WORD} im Betreff"]
    assert found(bob.get("/search?q=Vogelkunde").text) == []


def test_sender_recipient_date_and_folder_narrow_the_search(
    alice: Webmail, runtime: Runtime
) -> None:
    march = dt.datetime(2025, 3, 10, 9, 0, tzinfo=dt.UTC)
    deliver(runtime, ALICE, plain("Termin A", "Treffen", "dora@elsewhere.example"), when=march)
    deliver(
        runtime,
        ALICE,
        plain("Termin B", "Treffen", "emil@elsewhere.example"),
        when=march + dt.timedelta(days=5),
    )
    deliver(
        runtime,
        ALICE,
        plain("Termin C", "Treffen"),
        when=march + dt.timedelta(days=40),
        folder="Trash",
    )

    assert found(alice.get("/search?q=Treffen").text) == ["Termin C", "Termin B", "Termin A"]
    assert found(alice.get("/search?sender=dora").text) == ["Termin A"]
    assert found(alice.get("/search?recipient=alice@example&q=Termin B").text) == ["Termin B"]
    assert found(alice.get("/search?q=Treffen&since=2025-03-11").text) == ["Termin C", "Termin B"]
    assert found(alice.get("/search?q=Treffen&until=2025-03-10").text) == ["Termin A"]
    assert found(alice.get("/search?q=Treffen&folder=trash").text) == ["Termin C"]
    assert found(alice.get("/search?q=Treffen&folder=inbox").text) == ["Termin B", "Termin A"]
    # A literal % is a character, not a wildcard.
    assert found(alice.get("/search?q=%25").text) == []

    bad = alice.get("/search?q=Treffen&since=10.03.2025")
    assert bad.status_code == 400
    assert "Enter dates as YYYY-MM-DD." in bad.text
    assert "Traceback" not in bad.text


def test_search_results_page_through(alice: Webmail, runtime: Runtime) -> None:
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for n in range(55):
        deliver(
            runtime,
            ALICE,
            plain(f"Rundbrief {n:02d}", "Hallo"),
            when=base + dt.timedelta(minutes=n),
        )
    first = alice.get("/search?q=Rundbrief").text
    assert len(found(first)) == 50 and "55 message(s) found" in first
    assert "Page 1 of 2" in first
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = alice.get(html.unescape(older.group(1))).text
    assert found(second) == [
        "Rundbrief 04",
        "Rundbrief 03",
        "Rundbrief 02",
        "Rundbrief 01",
        "Rundbrief 00",
    ]


def test_the_last_and_first_days_of_the_calendar_are_dates(
    alice: Webmail, runtime: Runtime
) -> None:
    """`until=9999-12-31` searched up to the end of that day: the day after overflowed
    datetime and the page was a 500 (found by probing a running serve)."""
    deliver(runtime, ALICE, plain("Termin A", "Treffen"))
    assert found(alice.get("/search?q=Treffen&until=9999-12-31").text) == ["Termin A"]
    assert found(alice.get("/search?q=Treffen&since=0001-01-01").text) == ["Termin A"]
    assert found(alice.get("/search?q=Treffen&since=9999-12-31").text) == []
