"""Threat: an encrypted message whose decrypted MIME would make the portal's parser recurse
or crawl at every view.

The SMTP servers measure nesting and parts before any parser runs (`check-structure`,
`[smtp] max_mime_depth` and `max_mime_parts`), but of an encrypted message they see only
the two parts around the ciphertext. The shape that once broke it: a PGP/MIME message
to a hosted user whose encrypted entity is multiparts nested 600 deep (the page was a
500: RecursionError in Python's parser) or 20,000 empty parts in 2 MB (20 s of the
portal's CPU at every view; 1001 parts, over the bound, were shown). Now the decrypted
entity is held to the same bounds before it is parsed, and the page says the message
cannot be shown (422), for reading, replying and forwarding alike.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import db, mailbox
from gateway.models import Address
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from keystore import store
from tests.openpgp import encrypt
from tests.webportal.webmail_support import BOB, Webmail, webmail_app
from webportal.i18n import translate
from webportal.mail import CANNOT_SHOW

MALLORY = "mallory@elsewhere.example"


def nested(depth: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--n%d--" % i for i in reversed(range(depth)))
    return opening + b"Content-Type: text/plain\r\n\r\nthe bottom" + closing + b"\r\n"


def wide(parts: int) -> bytes:
    part = b"--w\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n' + part * parts + b"--w--\r\n"


def store_encrypted(runtime: Runtime, entity: bytes) -> int:
    """Bob's inbox gets `entity` encrypted to his key, as PGP/MIME from outside."""
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        key = store.get_or_create(session, runtime.ring.get(), BOB, now, events=lambda *_args: None)
        ciphertext = encrypt(entity, [store.parsed_public_key(key)], armor=False)
        outer = f"From: {MALLORY}\r\nTo: {BOB}\r\nSubject: shapes\r\n\r\n".encode()
        address = session.scalar(sa.select(Address).where(Address.address == BOB))
        assert address is not None
        row = mailbox.store(
            session,
            address,
            pgpmime.build_encrypted(outer, ciphertext),
            queue_id="shapes",
            envelope_from=MALLORY,
            now=now,
            encrypted=True,
        )
        session.flush()
        return row.id


@pytest.mark.parametrize(
    "entity", [nested(600), nested(33), wide(1001)], ids=["600 deep", "33 deep", "1001 parts"]
)
def test_decrypted_mime_beyond_the_bounds_cannot_be_shown(
    runtime: Runtime, mail_users: dict[str, str], entity: bytes
) -> None:
    message_id = store_encrypted(runtime, entity)
    bob = Webmail(webmail_app(runtime).test_client()).login(BOB)
    for path in (f"/mail/{message_id}", f"/compose?reply={message_id}"):
        page = bob.get(path)
        assert page.status_code == 422, path
        assert translate("en", CANNOT_SHOW) in page.text
    forwarded = bob.get(f"/compose?forward={message_id}")
    assert forwarded.status_code == 422


def test_decrypted_mime_within_the_bounds_is_shown(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    bob = Webmail(webmail_app(runtime).test_client()).login(BOB)
    for entity in (nested(31), wide(999)):
        page = bob.get(f"/mail/{store_encrypted(runtime, entity)}")
        assert page.status_code == 200
        assert "Encrypted" in page.text
    assert "the bottom" in bob.get(f"/mail/{store_encrypted(runtime, nested(31))}").text
