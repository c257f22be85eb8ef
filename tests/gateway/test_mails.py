"""Gateway-written mails: every template in de/en/fr, text + HTML, and headers that
cannot be injected.

Threat: a value a user controls (a browser string, a name) adding a header or a
body part to a mail the gateway sends in its own name, or script in the HTML part.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import pytest

from gateway import mails

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
CONTEXT = {
    "email": "alice@example.test",
    "when": "2026-11-27 10:00 UTC",
    "ip": "203.0.113.5",
    "browser": "<script>alert(1)</script> Firefox",
    "reason": "password",
    # Failed-login mails name the way in (gateway.login_alerts.describe_protocol).
    "protocol": "portal",
    "via": "the portal (web)",
    "portal_url": "https://portal.example.test",
    "security_url": "https://portal.example.test/account/security",
    "activity_url": "https://portal.example.test/account/activity",
}
SUBJECTS = {
    ("login_new_device", "en"): "New sign-in to your sealgate account",
    ("login_new_device", "de"): "Neue Anmeldung bei Ihrem sealgate-Konto",
    ("login_new_device", "fr"): "Nouvelle connexion à votre compte sealgate",
    ("login_failed", "en"): "Failed sign-in to your sealgate account",
    ("login_failed", "de"): "Fehlgeschlagene Anmeldung bei Ihrem sealgate-Konto",
    ("login_failed", "fr"): "Échec de connexion à votre compte sealgate",
}


def template_names() -> set[str]:
    folder = mails.templates_dir() / "mail"
    return {path.name.split(".")[0] for path in folder.glob("*.*.txt")}


def test_every_mail_exists_in_every_language_as_text_and_html() -> None:
    folder = mails.templates_dir() / "mail"
    names = template_names()
    assert {"login_new_device", "login_failed"} <= names
    for name in names:
        for language in mails.LANGUAGES:
            assert (folder / f"{name}.{language}.txt").is_file(), (name, language)
            assert (folder / f"{name}.{language}.html").is_file(), (name, language)


@pytest.mark.parametrize(("name", "language"), sorted(SUBJECTS))
def test_render_in_each_language(name: str, language: str) -> None:
    rendered = mails.render_mail(name, language, CONTEXT)
    assert rendered.subject == SUBJECTS[(name, language)]
    for part in (rendered.text, rendered.html):
        assert "alice@example.test" in part and "203.0.113.5" in part
        assert "https://portal.example.test/account/activity" in part
    # Text is text; the HTML part escapes what it is given.
    assert "<script>alert(1)</script> Firefox" in rendered.text
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert f'<html lang="{language}">' in rendered.html
    assert "{{" not in rendered.text and "{%" not in rendered.text


def test_failed_login_mail_says_when_the_password_was_right() -> None:
    by_password = mails.render_mail("login_failed", "en", CONTEXT)
    by_code = mails.render_mail("login_failed", "en", {**CONTEXT, "reason": "code"})
    assert "wrong password" in by_password.text
    assert "your password is known to someone else" in by_code.text
    assert "your password is known to someone else" in by_code.html


def test_failed_login_mail_names_the_protocol() -> None:
    by_imap = mails.render_mail(
        "login_failed", "en", {**CONTEXT, "protocol": "IMAP", "via": "a mail program (IMAP)"}
    )
    for part in (by_imap.text, by_imap.html):
        assert "a mail program (IMAP)" in part and "Firefox" not in part
    by_portal = mails.render_mail("login_failed", "en", CONTEXT)
    assert "the portal (web)" in by_portal.text and "Firefox" in by_portal.text


def test_unsupported_language_falls_back_to_english() -> None:
    assert (
        mails.render_mail("login_failed", "it-IT", CONTEXT).subject
        == SUBJECTS[("login_failed", "en")]
    )
    assert mails.mail_language("de-CH") == "de"


def test_missing_context_or_template_is_an_error() -> None:
    with pytest.raises(Exception, match="undefined"):
        mails.render_mail("login_failed", "en", {"email": "x"})
    with pytest.raises(mails.MailTemplateError):
        mails.render_mail("no_such_mail", "en", CONTEXT)
    with pytest.raises(mails.MailTemplateError):
        mails.render_mail("../portal/base", "en", CONTEXT)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_built_message_is_multipart_alternative_with_its_headers() -> None:
    rendered = mails.render_mail("login_new_device", "fr", CONTEXT)
    message = mails.build_message(
        sender="noreply@mail.example.test",
        recipient="alice@example.test",
        mail=rendered,
        now=NOW,
        message_id_domain="mail.example.test",
    )
    raw = mails.to_bytes(message)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = parse(raw)
    assert parsed["Subject"] == "Nouvelle connexion à votre compte sealgate"
    assert parsed["From"] == "noreply@mail.example.test"
    assert parsed["To"] == "alice@example.test"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"] == "Fri, 27 Nov 2026 10:00:00 +0000"
    assert parsed["Message-ID"].endswith("@mail.example.test>")
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert "Adresse IP : 203.0.113.5" in plain.get_content()
    assert "&lt;script&gt;" in html.get_content()


@pytest.mark.parametrize(
    "bad",
    ["x\r\nBcc: victim@example.test", "x\nX-Evil: 1", "x\rX-Evil: 1", "x\x00y"],
)
@pytest.mark.parametrize("field", ["sender", "recipient", "subject", "header"])
def test_header_injection_is_refused(bad: str, field: str) -> None:
    rendered = mails.RenderedMail(subject="Hello", text="body\n", html="<p>body</p>")
    kwargs: dict[str, object] = {
        "sender": "noreply@mail.example.test",
        "recipient": "alice@example.test",
        "mail": rendered,
        "now": NOW,
        "message_id_domain": "mail.example.test",
    }
    if field == "subject":
        kwargs["mail"] = mails.RenderedMail(subject=bad, text="body\n", html="<p>body</p>")
    elif field == "header":
        kwargs["headers"] = [("X-Report", bad)]
    else:
        kwargs[field] = bad
    with pytest.raises(mails.HeaderInjection) as caught:
        mails.build_message(**kwargs)  # type: ignore[arg-type]
    assert "victim" not in str(caught.value) and "Evil" not in str(caught.value)


def test_header_names_are_checked_too() -> None:
    rendered = mails.RenderedMail(subject="Hello", text="body\n", html="<p>body</p>")
    with pytest.raises(mails.HeaderInjection):
        mails.build_message(
            sender="a@example.test",
            recipient="b@example.test",
            mail=rendered,
            now=NOW,
            message_id_domain="example.test",
            headers=[("X-A: b\r\nX-C", "d")],
        )


def test_a_subject_line_from_a_template_cannot_carry_a_line_break() -> None:
    # The context could hold a user's text; a template that puts it in the subject
    # must not turn it into a header.
    with pytest.raises(mails.HeaderInjection):
        mails.check_header("Subject", "Hello\r\nBcc: x@example.test")
