"""Autoresponder pages (issue 7, Must show 3, portal side; the rules themselves are
tested in tests/gateway/test_autoresponder.py).

Shown here: an away message is created with its window, weekdays, reply-from
address and exclusions; bad input comes back with a reason and the fields kept;
activating one message deactivates the other; the reset makes the 7-day rule
answer a sender again, end to end through webmail delivery; one account cannot
touch another's away messages.
"""

from __future__ import annotations

import datetime as dt
import html

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

from gateway import accounts, db
from gateway.mailbox import INBOX
from gateway.models import Address, AutoreplySent, Autoresponder
from gateway.runtime import Runtime

from .webmail_support import ALICE, BOB, Webmail, rows, webmail_app


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


@pytest.fixture
def bob(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(BOB)


@pytest.fixture
def addresses(runtime: Runtime, mail_users: dict[str, str]) -> dict[str, int]:
    """Alice gets a second address (to answer from); ids by address."""
    with db.transaction(runtime.sessions) as session:
        account = accounts.find_account(session, ALICE)
        assert account is not None
        accounts.add_address(
            session, runtime.hasher, "alice.office@example.test", account, "pw", actor="test"
        )
    with db.read_only(runtime.sessions) as session:
        return {a.address: a.id for a in session.scalars(sa.select(Address))}


def responders(runtime: Runtime) -> list[Autoresponder]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(Autoresponder).order_by(Autoresponder.id)))


HOLIDAY = {
    "name": "Urlaub",
    "subject": "Abwesend:",
    "body": "Ich bin bis Montag im Urlaub.",
    "starts_at": "2026-07-01T08:00",
    "ends_at": "2026-07-15T18:00",
    "weekday": ["0", "1", "2", "3", "4"],
    "excluded": "Chefin@Elsewhere.example\n@newsletter.example",
    "activate": "yes",
}


def create(alice: Webmail, address_id: int, **fields: object) -> TestResponse:
    path = f"/autoresponder/new/{address_id}"
    return alice.post(path, {**HOLIDAY, "reply_from": str(address_id), **fields}, page=path)


def test_create_and_edit_an_away_message(
    alice: Webmail, runtime: Runtime, addresses: dict[str, int]
) -> None:
    overview = alice.get("/autoresponder").text
    assert ALICE in overview and "alice.office@example.test" in overview
    assert BOB not in overview

    office = addresses["alice.office@example.test"]
    done = create(alice, addresses[ALICE], reply_from=str(office))
    assert done.status_code == 303
    (saved,) = responders(runtime)
    assert (saved.address_id, saved.name, saved.subject) == (
        addresses[ALICE],
        "Urlaub",
        "Abwesend:",
    )
    assert saved.active and saved.reply_from_id == office
    assert saved.starts_at == dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)
    assert saved.ends_at == dt.datetime(2026, 7, 15, 18, 0, tzinfo=dt.UTC)
    assert saved.weekdays == 0b0011111  # Monday to Friday
    assert saved.excluded == "chefin@elsewhere.example\n@newsletter.example"

    page = html.unescape(alice.get("/autoresponder").text)
    assert "The away message was saved." in page
    assert "from 2026-07-01 08:00" in page and "until 2026-07-15 18:00" in page
    assert "Monday, Tuesday, Wednesday, Thursday, Friday" in page

    form = alice.get(f"/autoresponder/{saved.id}").text
    assert 'value="2026-07-01T08:00"' in form and 'value="Urlaub"' in form
    assert 'name="weekday" value="5">' in form and 'name="weekday" value="4" checked' in form
    assert f'value="{office}" selected' in form

    edited = alice.post(
        f"/autoresponder/{saved.id}",
        {
            **HOLIDAY,
            "subject": "Nicht im Büro:",
            "weekday": ["5", "6"],
            "starts_at": "",
            "ends_at": "",
            "reply_from": str(addresses[ALICE]),
        },
        page=f"/autoresponder/{saved.id}",
    )
    assert edited.status_code == 303
    (changed,) = responders(runtime)
    assert changed.subject == "Nicht im Büro:" and changed.weekdays == 0b1100000
    assert changed.starts_at is None and changed.ends_at is None
    assert "any time" in alice.get("/autoresponder").text


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"ends_at": "2026-06-01T00:00"}, "The end must be after the start."),
        ({"starts_at": "morgen"}, "Enter start and end as date and time."),
        # Dates whose UTC time falls outside years 1 to 9999.
        ({"starts_at": "0001-01-01T00:00+01:00"}, "Enter start and end as date and time."),
        ({"ends_at": "9999-12-31T23:59:59-23:59"}, "Enter start and end as date and time."),
        ({"weekday": []}, "Choose at least one weekday."),
        ({"excluded": "kein Adresse"}, "“kein adresse” is neither an address nor a domain"),
        ({"excluded": "@not_a_domain"}, "is neither an address nor a domain"),
        ({"name": ""}, "Give the message a name."),
        ({"body": "   "}, "Write the message."),
        ({"subject": "x" * 201}, "Subject is too long."),
    ],
)
def test_bad_input_is_refused_with_the_fields_kept(
    alice: Webmail,
    runtime: Runtime,
    addresses: dict[str, int],
    fields: dict[str, object],
    error: str,
) -> None:
    refused = create(alice, addresses[ALICE], **fields)
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    assert error in page
    assert "Ich bin bis Montag im Urlaub." in page or fields.get("body")
    assert responders(runtime) == []


def test_reply_from_must_be_one_of_the_accounts_addresses(
    alice: Webmail, runtime: Runtime, addresses: dict[str, int]
) -> None:
    refused = create(alice, addresses[ALICE], reply_from=str(addresses[BOB]))
    assert refused.status_code == 400
    assert "Choose one of your addresses to answer from." in refused.text
    assert responders(runtime) == []


def test_activating_one_message_deactivates_the_other(
    alice: Webmail, runtime: Runtime, addresses: dict[str, int]
) -> None:
    create(alice, addresses[ALICE])
    create(alice, addresses[ALICE], name="Krank", activate="")
    create(alice, addresses["alice.office@example.test"], name="Büro")
    holiday, sick, office = responders(runtime)
    assert (holiday.active, sick.active, office.active) == (True, False, True)

    done = alice.post(f"/autoresponder/{sick.id}/activate", {}, page="/autoresponder")
    assert done.status_code == 303
    holiday, sick, office = responders(runtime)
    assert (holiday.active, sick.active, office.active) == (False, True, True)
    page = html.unescape(alice.get("/autoresponder").text)
    assert f"“Krank” is now the active away message for {ALICE}." in page

    # Saving the other one as active switches this one off again.
    alice.post(
        f"/autoresponder/{holiday.id}",
        {**HOLIDAY, "reply_from": str(addresses[ALICE])},
        page=f"/autoresponder/{holiday.id}",
    )
    holiday, sick, office = responders(runtime)
    assert (holiday.active, sick.active, office.active) == (True, False, True)

    alice.post(f"/autoresponder/{holiday.id}/deactivate", {}, page="/autoresponder")
    assert [r.active for r in responders(runtime)] == [False, False, True]
    alice.post(f"/autoresponder/{sick.id}/delete", {}, page="/autoresponder")
    assert [r.name for r in responders(runtime)] == ["Urlaub", "Büro"]


def test_reset_makes_the_seven_day_rule_answer_again(
    alice: Webmail, bob: Webmail, runtime: Runtime, addresses: dict[str, int]
) -> None:
    create(alice, addresses[ALICE], starts_at="", ends_at="", weekday=[str(d) for d in range(7)])

    def bob_writes(subject: str) -> None:
        sent = bob.compose(**{"from": BOB, "to": ALICE, "subject": subject, "text": "Hallo"})
        assert sent.status_code == 303

    def auto_replies() -> list[str]:
        return [r.subject for r in rows(runtime, BOB, INBOX)]

    bob_writes("Frage 1")
    assert auto_replies() == ["Abwesend: Frage 1"]
    assert "1 sender(s) answered in the last 7 days." in alice.get("/autoresponder").text
    bob_writes("Frage 2")
    assert auto_replies() == ["Abwesend: Frage 1"]  # once per 7 days

    reset = alice.post(f"/autoresponder/reset/{addresses[ALICE]}", {}, page="/autoresponder")
    assert reset.status_code == 303
    page = alice.get("/autoresponder").text
    assert "Forgotten: 1 sender(s) get the away message again." in page
    assert "0 sender(s) answered in the last 7 days." in page
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AutoreplySent)) == 0

    bob_writes("Frage 3")
    assert auto_replies() == ["Abwesend: Frage 1", "Abwesend: Frage 3"]


def test_another_accounts_away_messages_are_out_of_reach(
    alice: Webmail, bob: Webmail, runtime: Runtime, addresses: dict[str, int]
) -> None:
    create(alice, addresses[ALICE])
    (theirs,) = responders(runtime)
    assert bob.get(f"/autoresponder/{theirs.id}").status_code == 404
    assert bob.get(f"/autoresponder/new/{addresses[ALICE]}").status_code == 404
    for action in ("activate", "deactivate", "delete"):
        answer = bob.post(f"/autoresponder/{theirs.id}/{action}", {}, page="/autoresponder")
        assert answer.status_code == 404, action
    assert (
        bob.post(f"/autoresponder/reset/{addresses[ALICE]}", {}, page="/autoresponder").status_code
        == 404
    )
    (unchanged,) = responders(runtime)
    assert unchanged.active and unchanged.name == "Urlaub"
    assert ALICE not in bob.get("/autoresponder").text
