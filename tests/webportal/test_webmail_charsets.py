"""Webmail: a body part whose charset label is no usable charset still shows its text.

The label is the sender's: `idna` (which refuses the "replace" handler), `undefined`
(which fails on every input), a word that names no codec, a NUL. The webmail read such
a part as empty, so an HTML-only mail showed nothing and a reply quoted nothing; it
now decodes as `gateway.charsets.decode_text` does (the label's codec, else UTF-8,
bad bytes replaced), as the inbound store and the secure page already did.
"""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.runtime import Runtime

from .webmail_support import ALICE, Webmail, deliver, textarea, webmail_app

ODD_LABELS = ["idna", "punycode", "undefined", "no-such-charset", "x\x00y", "rot13", "base64", ""]
MARKER = "Hallo Welt"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


def mail(subtype: str, label: str, body: bytes, *, alternative: bool = False) -> bytes:
    quoted = label.replace("\\", "\\\\").replace('"', '\\"')
    part = (
        (
            f'Content-Type: text/{subtype}; charset="{quoted}"\r\n'
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode("utf-8", "surrogateescape")
        + body
        + b"\r\n"
    )
    head = f"From: mallory@elsewhere.example\r\nTo: {ALICE}\r\nSubject: odd charset\r\n".encode()
    if not alternative:
        return head + part
    return (
        head
        + b"Content-Type: multipart/alternative; boundary=b0undary\r\n\r\n--b0undary\r\n"
        + part
        + b"--b0undary--\r\n"
    )


def shown_body(page: str) -> str:
    """The message body as the page shows it, tags and entities gone."""
    found = re.search(
        r'<div class="html-body">(.*?)</div>|<pre class="text-body">(.*?)</pre>', page, re.S
    )
    assert found, "the page shows no body"
    return html.unescape(re.sub(r"<[^>]*>", "", found.group(1) or found.group(2) or "")).strip()


@pytest.mark.parametrize("label", ODD_LABELS)
@pytest.mark.parametrize("subtype", ["html", "plain"])
def test_a_part_with_an_odd_charset_label_shows_its_text(
    alice: Webmail, runtime: Runtime, label: str, subtype: str
) -> None:
    body = f"<p>{MARKER} \u00e4</p>" if subtype == "html" else f"{MARKER} \u00e4"
    message_id = deliver(runtime, ALICE, mail(subtype, label, body.encode()))
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200
    assert f"{MARKER} \u00e4" in shown_body(page.text)
    reply = alice.get(f"/compose?reply={message_id}")
    assert reply.status_code == 200 and f"&gt; {MARKER} \u00e4" in reply.text
    forward = alice.get(f"/compose?forward={message_id}")
    assert forward.status_code == 200 and MARKER in textarea(forward.text, "text")


LABELS = st.one_of(
    st.sampled_from([*ODD_LABELS, "utf-8", "latin-1", "utf-16", "utf-32", "punycode", "cp037"]),
    st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=20),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    label=LABELS,
    tail=st.binary(max_size=40),
    subtype=st.sampled_from(["html", "plain"]),
    alternative=st.booleans(),
)
def test_any_label_over_any_bytes_shows_text_never_nothing_never_a_500(
    alice: Webmail,
    runtime: Runtime,
    label: str,
    tail: bytes,
    subtype: str,
    alternative: bool,
) -> None:
    """Invariant: a non-empty body is shown non-empty (decoded in the label's codec, or
    as UTF-8, bad bytes replaced), and its reply page quotes it; nothing answers 500."""
    body = MARKER.encode() + tail.replace(b"<", b"(").replace(b"&", b"+")
    if subtype == "html":
        body = b"<p>" + body + b"</p>"
    message_id = deliver(runtime, ALICE, mail(subtype, label, body, alternative=alternative))
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200
    assert shown_body(page.text)
    reply = alice.get(f"/compose?reply={message_id}")
    assert reply.status_code == 200 and "&gt; " in reply.text
