"""Mails the gateway writes itself (alerts, notifications, reports): templates to MIME.

Each mail is a pair of templates per language in `templates/mail/`:
`<name>.<lang>.txt` (its first line is `Subject: …`, then a blank line, then the
body) and `<name>.<lang>.html` (usually extending `layout.html`). Languages are
de, en and fr; any other falls back to English. The HTML part is autoescaped,
the text part is not (it is plain text), and a missing context variable is an
error rather than a silent blank.

`build_message` makes an RFC 5322 message (multipart/alternative, text first)
with `email.message.EmailMessage` under the default policy. Header values with
CR, LF or NUL are refused outright: a user-controlled value (a name, a subject
taken from a message) must never be able to add a header or a body.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import importlib.util
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

from gateway import mimepolicy
from gateway.mimepolicy import HeaderInjection as HeaderInjection  # raised by check_header

LANGUAGES = ("de", "en", "fr")
DEFAULT_LANGUAGE = "en"
SUBJECT_PREFIX = "Subject: "
# Marks a directory as sealgate's template tree (and not some other "templates").
TEMPLATE_MARKER = Path("mail") / "layout.html"
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\x00")


class MailTemplateError(RuntimeError):
    """A mail template is missing or malformed (a bug in the templates, not user input)."""


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def templates_dir() -> Path:
    """templates/ from an installed wheel (`sealgate/templates`) or from the source tree."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("sealgate")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "templates")
    candidates.append(Path(__file__).resolve().parent.parent / "templates")
    for candidate in candidates:
        if (candidate / TEMPLATE_MARKER).is_file():
            return candidate
    raise MailTemplateError("sealgate's mail templates are missing; reinstall the package")


_env: jinja2.Environment | None = None
_env_guard = threading.Lock()


def environment() -> jinja2.Environment:
    global _env
    with _env_guard:
        if _env is None:
            _env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(templates_dir() / "mail"),
                autoescape=jinja2.select_autoescape(
                    enabled_extensions=("html",), default_for_string=False
                ),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                trim_blocks=True,
                lstrip_blocks=True,
            )
        return _env


def mail_language(language: str | None) -> str:
    primary = (language or "").split("-", 1)[0].split("_", 1)[0].strip().lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def render_mail(template_name: str, language: str, context: Mapping[str, Any]) -> RenderedMail:
    """Subject, text and HTML of mail `template_name` in `language` (English if unsupported)."""
    if not template_name.replace("_", "").isalnum():
        raise MailTemplateError(f"not a mail template name: {template_name!r}")
    lang = mail_language(language)
    env = environment()
    values = {**context, "language": lang}
    try:
        text = env.get_template(f"{template_name}.{lang}.txt").render(values)
        html = env.get_template(f"{template_name}.{lang}.html").render(values)
    except jinja2.TemplateNotFound as exc:
        raise MailTemplateError(f"mail template {exc.name} is missing") from None
    first, _, body = text.partition("\n")
    if not first.startswith(SUBJECT_PREFIX) or not body.startswith("\n"):
        raise MailTemplateError(
            f"{template_name}.{lang}.txt must start with 'Subject: …' and a blank line"
        )
    subject = first[len(SUBJECT_PREFIX) :].strip()
    check_header("Subject", subject)
    return RenderedMail(subject=subject, text=body[1:], html=html)


def check_header(name: str, value: str) -> str:
    if any(c in value for c in FORBIDDEN_IN_HEADERS):
        raise HeaderInjection(f"the {name} header contains a line break or NUL")
    return value


def build_message(
    *,
    sender: str,
    recipient: str,
    mail: RenderedMail,
    now: dt.datetime,
    message_id_domain: str,
    headers: Iterable[tuple[str, str]] = (),
) -> EmailMessage:
    """A text + HTML message, marked as machine-made (`Auto-Submitted`, RFC 3834)."""
    message = EmailMessage(policy=mimepolicy.DEFAULT)
    check_header("Message-ID domain", message_id_domain)
    fields = [
        ("From", sender),
        ("To", recipient),
        ("Subject", mail.subject),
        ("Date", email.utils.format_datetime(now.astimezone(dt.UTC))),
        ("Message-ID", f"<{secrets.token_hex(16)}@{message_id_domain}>"),
        ("Auto-Submitted", "auto-generated"),
        *headers,
    ]
    for name, value in fields:
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise HeaderInjection("a header name must be letters, digits and dashes")
        message[name] = check_header(name, value)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    """The wire form: CRLF line ends, as SMTP carries it."""
    return message.as_bytes(policy=mimepolicy.SMTP)
