"""A decrypted message as the secure page shows it: a few headers, bodies, attachments.

HTML goes through nh3 (ammonia) with a short allow-list: no images, no styles,
no forms, no scripts, no meta refresh, no frames; a link stays a link only when it
is absolute http(s) or mailto and leads nowhere on the portal's own host
(gateway.securepage.mail_links), and opens outside the page (`target="_blank"`,
`rel="noopener noreferrer"`). Each HTML part is cleaned on its
own, so markup split across parts (EFAIL's unterminated `<img src="…` in one
part, closed in another) cannot join into one element. The page's CSP refuses
whatever might slip through, as a second wall.

Attachments are served as downloads (`application/octet-stream`), never rendered
on the portal's origin.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Literal

import nh3

from gateway import mimepolicy
from gateway.charsets import decode_text, without_bidi_controls
from gateway.securepage.mail_links import link_filter

MAX_DEPTH = 64
MAX_FILENAME = 150
_NOT_IN_A_NAME = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MESSAGE_ID = re.compile(r"<[^<>\s\"]{1,900}>")

_REMOVED_TAGS = {"img", "map", "area"}
SAFE_TAGS = set(nh3.ALLOWED_TAGS) - _REMOVED_TAGS
SAFE_ATTRIBUTES = {
    tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag not in _REMOVED_TAGS
}
# Tags whose content goes with them (a style sheet's text is not message text).
DROPPED_WITH_CONTENT = {
    "script",
    "style",
    "title",
    "noscript",
    "template",
    "iframe",
    "object",
    "noembed",
    "noframes",
    "xmp",
}
URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(html: str, own_hosts: Collection[str] = ()) -> str:
    """`html` as the page may show it; links to `own_hosts` (the portal's, as
    `mail_links.own_host_forms` gives them) are no links."""
    return nh3.clean(
        html,
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        clean_content_tags=DROPPED_WITH_CONTENT,
        url_schemes=URL_SCHEMES,
        attribute_filter=link_filter(own_hosts),
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


@dataclass(frozen=True)
class Body:
    kind: Literal["html", "text"]
    content: str = field(repr=False)  # sanitized HTML, or plain text to be escaped


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class PageMessage:
    sender: str
    to: str
    cc: str
    date: str
    subject: str
    message_id: str
    bodies: list[Body]
    attachments: list[Attachment]


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001  (a malformed header shows as empty, not as an error)
        return ""
    return "" if value is None else without_bidi_controls(str(value))[:2000]


def _parse(content: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(content, policy=mimepolicy.READING)
    assert isinstance(parsed, EmailMessage)
    return parsed


def safe_filename(name: str | None, index: int) -> str:
    """A file name a browser may save as: no path, no control characters, one line
    (U+2028 and U+2029 end a line for some readers), bounded with its extension kept."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c) not in _NOT_IN_A_NAME).strip(" .")
    if len(text) > MAX_FILENAME:
        stem, dot, extension = text.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            text = f"{stem[: MAX_FILENAME - len(extension) - 1]}.{extension}"
        else:
            text = text[:MAX_FILENAME]
    return text or f"attachment-{index}.bin"


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return decode_text(data, part.get_content_charset())


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or part.get_filename():
        return True
    return part.get_content_type() not in ("text/plain", "text/html")


def _leaves(part: Message, depth: int = 0) -> list[Message]:
    """Parts in reading order; of an alternative, only the best one (HTML, else text)."""
    if depth > MAX_DEPTH:
        return []
    content_type = part.get_content_type()
    if content_type == "multipart/alternative" and part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        for wanted in ("text/html", "text/plain"):
            for child in children:
                if child.get_content_type() == wanted and not _is_attachment(child):
                    return [child]
        return [leaf for child in children[:1] for leaf in _leaves(child, depth + 1)]
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        return [
            leaf
            for child in part.get_payload()
            if isinstance(child, Message)
            for leaf in _leaves(child, depth + 1)
        ]
    return [part]


def _attachment_data(part: Message) -> bytes:
    if part.is_multipart():  # an attached message/rfc822
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=email.policy.SMTP)
        return b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment_info(part: Message, index: int) -> Attachment:
    name = part.get_filename()
    if part.get_content_type() in ("message/rfc822", "message/global") and not name:
        name = "message.eml"
    return Attachment(
        index=index,
        filename=safe_filename(name, index),
        content_type=part.get_content_type(),
        size=len(_attachment_data(part)),
    )


def parse(content: bytes, own_hosts: Collection[str] = ()) -> PageMessage:
    msg = _parse(content)
    bodies: list[Body] = []
    attachments: list[Attachment] = []
    for leaf in _leaves(msg):
        if _is_attachment(leaf):
            attachments.append(_attachment_info(leaf, len(attachments)))
        elif leaf.get_content_type() == "text/html":
            bodies.append(Body("html", sanitize_html(_text_of(leaf), own_hosts)))
        else:
            bodies.append(Body("text", _text_of(leaf)))
    message_id = _header(msg, "Message-ID").strip()
    return PageMessage(
        sender=_header(msg, "From"),
        to=_header(msg, "To"),
        cc=_header(msg, "Cc"),
        date=_header(msg, "Date"),
        subject=_header(msg, "Subject"),
        message_id=message_id if _MESSAGE_ID.fullmatch(message_id) else "",
        bodies=bodies,
        attachments=attachments,
    )


def attachment(content: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """The `index`-th attachment (as `parse` numbers them) and its bytes; None if no such."""
    parts = [leaf for leaf in _leaves(_parse(content)) if _is_attachment(leaf)]
    if not 0 <= index < len(parts):
        return None
    return _attachment_info(parts[index], index), _attachment_data(parts[index])
