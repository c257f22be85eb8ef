"""Generative: with the lock on, nothing of the message is in clear anywhere at rest.

Threat: some shape of input (a text that looks like a header, an armor block or a
MIME boundary, a recipient mix of hosted, external and Bcc, a draft saved first,
an attachment named after the secret) taking a path where the text is stored,
queued or logged in clear. Each example writes a fresh marker into the text and
an attachment (name and content), and the data directory (the SQLite files
included) and the log must not hold it afterwards.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.runtime import Runtime

from .webmail_support import ALICE, BOB, CAROL, Webmail, webmail_app

PASSWORD = "Tulpen-und-Regen-42"

TEXT_SHAPES = st.sampled_from(
    [
        "{m}",
        "Bcc: eve@evil.example\n\n{m}",
        "-----BEGIN PGP MESSAGE-----\n{m}\n-----END PGP MESSAGE-----",
        "--===============0001==\nContent-Type: text/plain\n\n{m}\n--===============0001==--",
        "Grüße ✓\r\n{m}\r\n\u2028\x85",
        "\n\n> quoted\n> {m}\n",
        "{m}" + " lang" * 3000,
    ]
)
RECIPIENTS = st.sampled_from(
    [
        {"to": BOB},
        {"to": f"Bob <{BOB}>", "cc": CAROL},
        {"to": CAROL, "bcc": BOB},
        {"to": "undisclosed-recipients:;", "bcc": f"{BOB}, {CAROL}"},
        {"to": ALICE, "bcc": CAROL},
    ]
)


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


def at_rest(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=TEXT_SHAPES,
    recipients=RECIPIENTS,
    draft_first=st.booleans(),
    attach=st.booleans(),
)
def test_with_the_lock_on_nothing_is_in_clear(
    app: Flask,
    runtime: Runtime,
    mail_users: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    shape: str,
    recipients: dict[str, str],
    draft_first: bool,
    attach: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = Webmail(app.test_client()).login(ALICE)
    marker = f"Okapi-{secrets.token_hex(6)}-Quetzal"
    fields: dict[str, object] = {
        "from": ALICE,
        "subject": "Vertrag",
        "text": shape.format(m=marker),
        "encrypt": "yes",
        "password": PASSWORD,
        **recipients,
    }
    files = [(f"{marker} inside".encode(), f"{marker}.txt", "text/plain")] if attach else []
    page = "/compose"
    if draft_first:
        saved = alice.compose(action="draft", files=files, **fields)
        assert saved.status_code == 303, saved.text
        page = saved.headers["Location"]
        fields["draft_id"] = page.rsplit("=", 1)[1]
        files = []  # carried over from the draft
        if attach:
            fields["carry_from"] = fields["draft_id"]
            fields["carry"] = "0"
    sent = alice.compose(page=page, files=files, **fields)
    assert sent.status_code == 303, sent.text
    stored = at_rest(runtime.settings.data_dir)
    assert marker.encode() not in stored
    assert marker not in caplog.text
