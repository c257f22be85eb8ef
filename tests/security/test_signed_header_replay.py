"""Threat: a hosted user's signed part passed on under new header fields and shown as signed.

The probe's shape: hosted Alice writes, signed and encrypted, to outsider Dave. Dave
decrypts it, keeps the signed part as it is (`gpg --unwrap`: the one-pass signature,
the literal data and the signature packets), encrypts that again to hosted Bob and
mails it over the MX with new outer fields: another Subject and To, and From Alice
or himself. The signature verifies, and the webmail showed it as Alice's valid
signature over Dave's Subject. Now the signed entity carries Alice's own From, To,
Subject and Date (RFC 9788): Bob's webmail shows those, and says that the message
arrived with other fields, or "signed by Alice, but sent as Dave". A signed part
that protects no header field (older mail, other programs) reads as valid for the
text only.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import pytest

from gateway import db
from gateway.inbound import InboundServer
from gateway.mailbox import SENT
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from keystore import packets, pgp, store
from tests.gnupg import GnuPG
from tests.openpgp import encrypt
from tests.security.bombs import sealed_packets
from tests.security.test_inbound_pgp_mail import mx, pgp_mime, text_of
from tests.webportal.webmail_support import (
    ALICE,
    BOB,
    DAVE,
    Webmail,
    import_key,
    queued,
    rows,
    webmail_app,
)
from webportal.i18n import translate
from webportal.mail import SIGNATURES

SUBJECT = "Angebot für Dave: 100 EUR"
TEXT = "I offer you 100 EUR for the bicycle. Alice"
NEW_SUBJECT = "Re: your invoice, please pay now"


def status(name: str, **fields: str) -> str:
    return translate("en", SIGNATURES[name], **fields)


def h1(page: str) -> str:
    found = re.search(r'<h1 class="subject">(.*?)</h1>', page, re.S)
    assert found
    return html.unescape(found.group(1)).strip()


@pytest.fixture
def bob_public(runtime: Runtime, mail_users: dict[str, str]) -> pgp.PublicKey:
    with db.transaction(runtime.sessions) as session:
        row = store.get_or_create(
            session, runtime.ring.get(), BOB, dt.datetime.now(dt.UTC), events=lambda *_a: None
        )
        return store.parsed_public_key(row)


@pytest.fixture
def signed_part(runtime: Runtime, mail_users: dict[str, str], tmp_path: Path) -> bytes:
    """What Dave keeps of Alice's mail to him: the signed part, the encryption removed."""
    home = tmp_path / "dave"
    import_key(runtime, DAVE, home)
    alice = Webmail(webmail_app(runtime).test_client()).login(ALICE)
    sent = alice.compose(
        **{"from": ALICE, "to": DAVE, "subject": SUBJECT, "text": TEXT, "encrypt": "yes"}
    )
    assert sent.status_code == 303, sent.text
    # Alice's own Sent copy: her signature, over the fields it was sent with.
    (copy,) = rows(runtime, ALICE, SENT)
    page = alice.get(f"/mail/{copy.id}").text
    assert status("valid") in text_of(page) and h1(page) == SUBJECT
    (to_dave,) = (item for item in queued(runtime) if item.rcpt_to == DAVE)
    armored = pgpmime.encrypted_payload(to_dave.raw)
    assert armored is not None
    return GnuPG(home).run("--unwrap", input=armored).stdout


def replay(inbound: InboundServer, bob_public: pgp.PublicKey, part: bytes, sender: str) -> int:
    """Dave mails `part`, encrypted again to Bob, with new outer fields; Bob's message id."""
    armored = packets.armor(sealed_packets(bob_public, part))
    return mx(inbound, sender, pgp_mime(sender, NEW_SUBJECT, armored))


@pytest.fixture
def bob(runtime: Runtime, mail_users: dict[str, str]) -> Webmail:
    return Webmail(webmail_app(runtime).test_client()).login(BOB)


def test_a_replayed_part_under_alices_name_shows_what_she_signed_and_says_so(
    inbound: InboundServer, bob_public: pgp.PublicKey, signed_part: bytes, bob: Webmail
) -> None:
    page = bob.get(f"/mail/{replay(inbound, bob_public, signed_part, ALICE)}").text
    shown = text_of(page)
    assert TEXT in shown
    assert status("valid") not in shown
    assert status("valid-headers-differ") in shown
    assert "signature-valid-headers-differ" in page
    # The signed fields are shown, Dave's never: Alice wrote to Dave, about her offer.
    assert h1(page) == SUBJECT
    assert NEW_SUBJECT not in html.unescape(page)
    assert re.search(rf"<dt>To</dt><dd>{re.escape(DAVE)}</dd>", page)
    # A reply goes to Alice under her subject, not to the fields Dave chose.
    reply = html.unescape(bob.get(f"/compose?reply={rows(inbound.runtime, BOB)[-1].id}").text)
    assert f"Re: {SUBJECT}" in reply and NEW_SUBJECT not in reply


def test_a_replayed_part_under_another_sender_says_who_signed_and_who_sent(
    inbound: InboundServer, bob_public: pgp.PublicKey, signed_part: bytes, bob: Webmail
) -> None:
    page = bob.get(f"/mail/{replay(inbound, bob_public, signed_part, DAVE)}").text
    shown = text_of(page)
    assert TEXT in shown
    assert status("valid") not in shown
    assert status("valid-other-sender", signer=ALICE, sender=DAVE) in html.unescape(shown)
    assert "signature-valid-other-sender" in page
    assert h1(page) == SUBJECT and NEW_SUBJECT not in html.unescape(page)


def test_a_signed_part_that_protects_no_field_is_valid_for_its_text_only(
    inbound: InboundServer, runtime: Runtime, bob_public: pgp.PublicKey, bob: Webmail
) -> None:
    """Mail signed before header protection, or by programs without it: the signature
    is Alice's, the Subject, Date and To beside it are nobody's."""
    with db.transaction(runtime.sessions) as session:
        signer = store.signing_key(
            session, runtime.ring.get(), ALICE, dt.datetime.now(dt.UTC), events=lambda *_a: None
        )
    entity = pgpmime.inner_entity(f"Subject: {SUBJECT}\r\n\r\n{TEXT}\r\n".encode())
    raw = pgp_mime(ALICE, NEW_SUBJECT, encrypt(entity, [bob_public], signer))
    page = bob.get(f"/mail/{mx(inbound, ALICE, raw)}").text
    shown = text_of(page)
    assert TEXT in shown
    assert status("valid") not in shown
    assert status("valid-text-only") in shown
    assert h1(page) == NEW_SUBJECT  # the outer one: nothing else is there to show


def listed(page: str) -> list[tuple[str, str]]:
    """Each row of a message list: (its class, its subject), as the page shows them."""
    found = re.findall(r'<tr class="([^"]*)">.*?<td class="subject"><a [^>]*>(.*?)</a>', page, re.S)
    return [(cls, html.unescape(subject)) for cls, subject in found]


def test_the_list_and_search_show_the_signed_subject_once_the_reader_verified_it(
    inbound: InboundServer, bob_public: pgp.PublicKey, signed_part: bytes, bob: Webmail
) -> None:
    """The page showed Alice's signed Subject, the inbox and search Dave's outer one:
    the list rows follow what the reader has verified, and say that it arrived otherwise."""
    message_id = replay(inbound, bob_public, signed_part, ALICE)
    # Unopened, nothing is verified yet (the list decrypts nothing): the outer fields.
    ((cls, subject),) = listed(bob.get("/inbox").text)
    assert subject == NEW_SUBJECT and "signed-fields-differ" not in cls
    assert h1(bob.get(f"/mail/{message_id}").text) == SUBJECT
    ((cls, subject),) = listed(bob.get("/inbox").text)
    assert subject == SUBJECT
    assert "signed-fields-differ" in cls
    inbox = bob.get("/inbox").text
    assert NEW_SUBJECT not in html.unescape(inbox)
    assert "Signed, but it arrived with other header fields" in text_of(inbox)
    # Search matches what the page shows: Alice's subject, not Dave's.
    found = bob.get("/search?q=Angebot").text
    assert [s for _c, s in listed(found)] == [SUBJECT]
    assert "signed-fields-differ" in listed(found)[0][0]
    assert listed(bob.get("/search?q=invoice").text) == []
    # The recipient search too: Alice wrote to Dave, Dave's outer To named Bob.
    found = bob.get("/search?recipient=dave%40").text
    assert [s for _c, s in listed(found)] == [SUBJECT]


def test_a_message_that_arrived_as_signed_is_listed_unmarked(
    runtime: Runtime, mail_users: dict[str, str], bob: Webmail
) -> None:
    alice = Webmail(webmail_app(runtime).test_client()).login(ALICE)
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": SUBJECT, "text": TEXT, "encrypt": "yes"}
    )
    assert sent.status_code == 303, sent.text
    (row,) = rows(runtime, BOB)
    page = bob.get(f"/mail/{row.id}").text
    assert status("valid") in text_of(page)
    ((cls, subject),) = listed(bob.get("/inbox").text)
    assert subject == SUBJECT and "signed-fields-differ" not in cls
    (again,) = rows(runtime, BOB)
    assert again.signed_fields == "signed"


def test_a_part_that_protects_no_field_keeps_its_outer_subject_in_the_list(
    inbound: InboundServer, runtime: Runtime, bob_public: pgp.PublicKey, bob: Webmail
) -> None:
    with db.transaction(runtime.sessions) as session:
        signer = store.signing_key(
            session, runtime.ring.get(), ALICE, dt.datetime.now(dt.UTC), events=lambda *_a: None
        )
    entity = pgpmime.inner_entity(f"Subject: {SUBJECT}\r\n\r\n{TEXT}\r\n".encode())
    raw = pgp_mime(ALICE, NEW_SUBJECT, encrypt(entity, [bob_public], signer))
    message_id = mx(inbound, ALICE, raw)
    assert status("valid-text-only") in text_of(bob.get(f"/mail/{message_id}").text)
    ((cls, subject),) = listed(bob.get("/inbox").text)
    assert subject == NEW_SUBJECT and "signed-fields-differ" not in cls
