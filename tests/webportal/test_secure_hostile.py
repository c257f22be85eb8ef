"""The secure page against an outside recipient who is an attacker, or an odd client:
attacks that held when probed (2026-12-06), kept so they go on holding.

Threats: attachment names that lead a browser to save a file elsewhere, under a
misleading extension, or that split the download's header; an answer whose file
names, types and text inject into the message the sender receives; a browser that
opened a link keeping it after the sender revoked it; guessing on one recipient's link
locking out the others.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import io
import re
import unicodedata

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway import db
from gateway.models import SecureLink, SecureMessage
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from keystore import store as keystore
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import (
    ALICE,
    CAROL,
    DAN,
    MARKER,
    PASSWORD,
    compose,
    inbox,
    link_row,
    send,
    unlock,
)
from webportal import create_app

PAYLOAD = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
# What a Content-Disposition of a download may look like: one line, a plain ASCII
# name in quotes, the UTF-8 name percent-encoded (RFC 6266, RFC 8187).
SAFE_DISPOSITION = re.compile(
    r"attachment; filename=\"[\x20\x21\x23-\x5b\x5d-\x7e]+\"; filename\*=UTF-8''[A-Za-z0-9%._~-]+"
)


def with_attachment(disposition_params: str, content_type: str = "application/pdf") -> bytes:
    """A message to Carol, encrypted with PASSWORD, with one attachment named as given."""
    return (
        f"From: Alice <{ALICE}>\r\nTo: {CAROL}\r\nSubject: [encrypt] Files\r\n"
        f"Message-ID: <files-1@example.test>\r\nX-Sealgate-Password: {PASSWORD}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"
        f"--BB\r\nContent-Type: text/plain\r\n\r\n{MARKER}\r\n"
        f"--BB\r\nContent-Type: {content_type}\r\n"
        f"Content-Disposition: attachment; {disposition_params}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.b64encode(PAYLOAD).decode()}\r\n--BB--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("params", "content_type"),
    [
        ("filename*=utf-8''..%2F..%2F.bashrc", "application/pdf"),
        ("filename*=utf-8''%E2%80%AEfdp.exe", "application/pdf"),  # RLO: shows "exe.pdf"
        ("filename*=utf-8''a%0D%0ASet-Cookie%3A%20x%3D1", "application/pdf"),
        ('filename="=?utf-8?b?Li4vLi4vZXRjL3Bhc3N3ZA==?="', "application/pdf"),
        ('filename="page.html"', "text/html"),
        ('filename="a\\";b=c.svg"', "image/svg+xml"),
        ("filename*=utf-8''" + "%41" * 400 + ".pdf", "application/pdf"),
        ('filename=" . . "', "application/pdf"),
    ],
    ids=["path", "rlo", "crlf", "encoded-path", "html", "quote", "long", "dots"],
)
def test_a_hostile_attachment_name_downloads_as_a_plain_file(
    client: FlaskClient,
    runtime: Runtime,
    mail_users: dict[str, str],
    params: str,
    content_type: str,
) -> None:
    """Every download: the very bytes, as application/octet-stream never sniffed, as an
    attachment under a one-line name with no path, no control or direction character."""
    token = send(runtime, with_attachment(params, content_type), [CAROL])[CAROL]
    assert unlock(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    assert MARKER in page.text
    (href,) = re.findall(r'href="(/s/[^"]+/a/\d+)"', page.text)
    download = client.get(href)
    assert download.status_code == 200 and download.data == PAYLOAD
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"] == "no-store"
    disposition = download.headers["Content-Disposition"]
    assert SAFE_DISPOSITION.fullmatch(disposition), disposition
    name = email.message_from_string(
        f"Content-Disposition: {disposition}\n\n", policy=email.policy.default
    ).get_filename()
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert not any(unicodedata.category(c) in {"Cc", "Cf"} for c in name), name


def test_a_hostile_answer_reaches_the_sender_with_its_names_and_types_made_safe(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """File names with paths and direction marks, types that would make a file MIME
    structure or carry parameters, a text with a lone CR and header-like lines: the
    sender gets one encrypted message from Carol, nothing injected into its header.
    (A NUL in a form field is a 400 before any view: webportal.typed_text.)"""
    token = send(runtime, compose(), [CAROL])[CAROL]
    assert unlock(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    files = [
        ("../../etc/passwd", "text/plain"),
        ("\u202efdp.exe", "application/pdf"),
        ("inner.eml", "message/rfc822"),
        ("parts", "multipart/mixed; boundary=x"),
        ("page.html", "text/html; charset=utf-8"),
    ]
    data = {
        "csrf_token": csrf_from(page.text),
        "text": "Hello\rBcc: mallory@evil.example\r\n\r\nSubject: injected\n",
        "files": [
            (io.BytesIO(f"file {i}".encode()), name, ctype) for i, (name, ctype) in enumerate(files)
        ],
    }
    sent = client.post(f"/s/{token}/reply", data=data, content_type="multipart/form-data")
    assert sent.status_code == 303, sent.text[:500]
    (stored,) = inbox(runtime, ALICE)
    outer = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert outer["From"] == CAROL and outer["To"] == ALICE
    assert outer["Bcc"] is None and "injected" not in str(outer["Subject"])
    payload = pgpmime.encrypted_payload(stored.raw)
    assert payload is not None
    with db.read_only(runtime.sessions) as session:
        inner = keystore.decrypt_for(session, runtime.ring.get(), ALICE, payload).data
    answer = email.message_from_bytes(inner, policy=email.policy.default)
    assert answer["Bcc"] is None
    attached = list(answer.iter_attachments())
    assert [a.get_payload(decode=True) for a in attached] == [
        f"file {i}".encode() for i in range(len(files))
    ]
    for part in attached:
        name = part.get_filename()
        assert name and "/" not in name and not any(unicodedata.category(c) == "Cf" for c in name)
        assert part.get_content_maintype() not in ("message", "multipart"), part["Content-Type"]
        assert part.get_param("charset") is None and part.get_param("boundary") is None


def test_a_revoked_link_opens_nothing_in_a_browser_that_had_it_open(
    client: FlaskClient, app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The grant in the cookie outlives the revocation; the page, the download, the
    answer and Close all answer as for an unknown link, and nothing is stored."""
    token = send(runtime, compose(), [CAROL])[CAROL]
    assert unlock(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    assert MARKER in page.text
    csrf = csrf_from(page.text)
    (href,) = re.findall(r'href="(/s/[^"]+/a/\d+)"', page.text)
    with db.transaction(runtime.sessions) as session:
        row = session.scalar(
            sa.select(SecureLink).where(SecureLink.id == link_row(runtime, token).id)
        )
        assert row is not None
        row.revoked_at = utcnow()
    unknown = app.test_client().get("/s/" + "A" * 43)
    answers = [
        client.get(f"/s/{token}"),
        client.get(href),
        client.post(f"/s/{token}/reply", data={"csrf_token": csrf, "text": "late"}),
        client.post(f"/s/{token}/close", data={"csrf_token": csrf}),
        client.post(f"/s/{token}", data={"csrf_token": csrf, "password": PASSWORD}),
    ]
    for answer in answers:
        assert (answer.status_code, answer.data) == (unknown.status_code, unknown.data)
    assert inbox(runtime, ALICE) == []
    assert link_row(runtime, token).open_count == 1


def test_guessing_on_one_link_leaves_the_other_recipients_link_open(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The lock is per link: whoever holds Carol's link can lock it (and the sender is
    told, and a new password unlocks it), but not Dan's."""
    tokens = send(runtime, compose(to=f"{CAROL}, {DAN}"), [CAROL, DAN])
    settings = runtime.settings.replace(securepage={"rate_limit": "1000/minute"})
    app = create_app(dataclasses.replace(runtime, settings=settings), testing=True)
    attacker, dan = app.test_client(), app.test_client()
    for attempt in range(10):
        unlock(attacker, tokens[CAROL], f"guess {attempt}")
    assert link_row(runtime, tokens[CAROL]).locked_at is not None
    assert unlock(dan, tokens[DAN], PASSWORD).status_code == 303
    assert MARKER in dan.get(f"/s/{tokens[DAN]}").text
    with db.read_only(runtime.sessions) as session:
        (message,) = session.scalars(sa.select(SecureMessage)).all()
        assert {link.recipient: link.failures for link in message.links}[DAN] == 0


def test_every_answer_of_a_page_keeps_the_token_to_itself(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The token is in the page's URL: no answer under /s/ may be framed, cached or
    followed by a Referer to a link in the message, whatever state it shows."""
    token = send(runtime, compose(), [CAROL])[CAROL]
    answers = [client.get(f"/s/{token}"), unlock(client, token, "wrong password")]
    assert unlock(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    (href,) = re.findall(r'href="(/s/[^"]+/a/\d+)"', page.text)
    answers += [page, client.get(href), client.get("/s/" + "B" * 43)]
    assert [a.status_code for a in answers] == [200, 403, 200, 200, 404]
    for answer in answers:
        headers = answer.headers
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
