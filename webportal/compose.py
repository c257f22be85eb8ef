"""Webmail compose: write, reply, forward, save a draft, send with or without the lock.

Send calls `gateway.compose.send`, which runs the submission pipeline in
process: the same steps, the same encryption, as a message from a mail program.
The page works without JavaScript (the lock is a checkbox, the secure-page
password a field, and the server refuses a closed lock without a password when
a recipient needs one); webmail.js turns them into the lock button, the
recipient chips and the password dialog. What the user wrote survives every
refusal: the page comes back filled in, with the reason.

Drafts are stored encrypted to the author's key (gateway.drafts); a draft keeps
its Bcc and the lock, never a secure-page password. Attachments of a draft or
of a forwarded message are carried over by reference (`carry_from` and the
indexes to keep) and read again, decrypted, when the message is sent.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import html
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import nh3
from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from gateway import accounts, drafts, mimepolicy, outages, reading, recipients
from gateway import compose as mailcompose
from gateway.compose import AlreadySent, ComposeError, Outgoing, Upload
from gateway.inflight import Reservation
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.secure_page import PASSWORD_ALPHABET, generate_password
from gateway.pipeline.triggers import ENCRYPT_HEADER
from gateway.securepage.content import safe_filename
from webportal import after_post, bodies, clock, expired_form, outage_form, typed_text
from webportal.access import login_required
from webportal.errors import outage_page, render_error
from webportal.extensions import (
    client_address,
    db_session,
    discard_db_session,
    limiter,
    request_size_bound,
    runtime,
)
from webportal.i18n import gettext, gettext_noop
from webportal.ids import MAX_INDEX, form_id, parse_id, parse_int, query_id
from webportal.mail import CANNOT_SHOW, abort_cannot_show, filesize, open_owned

log = logging.getLogger(__name__)

bp = Blueprint("compose", __name__)

noop = gettext_noop
RECIPIENT_LOOKUP_RATE = "120/minute"
MAX_TEXT = 1_000_000
MAX_QUOTE = 200_000
MAX_FIELD = 10_000

SENT_OK = noop("Your message was sent.")
SENT_SECURE = noop(
    "Your message was sent. {count} recipient(s) get a link to a secure page:"
    " give them the password another way (by phone, for example)."
)
DRAFT_SAVED = noop("The draft was saved, encrypted to your key.")
NEED_PASSWORD = noop(
    "These recipients have no key and need a password for their secure page: {addresses}."
    " A password was suggested below; note it before sending."
)
PASSWORD_TOO_SHORT = noop("The password must have at least {length} characters.")
PASSWORD_TOO_LONG = noop("The password is too long.")
NOT_SENT = noop("The message was not sent: {reason}")
SEND_FAILED = noop("The message could not be sent. Please try again in a moment.")
ATTACH_AGAIN = noop("Please attach your files again.")
SERVER_BUSY = noop(
    "The server is busy with many large messages right now; nothing was sent."
    " Please try again in a minute."
)
LOOKING_UP = noop("looking up…")
ALREADY_SENT = noop(
    "This message was sent already: it is in your Sent folder, and was not sent again."
    " To send it once more, press Send again."
)
TEXT_TOO_LONG = noop("The text is longer than {limit} characters: please shorten it.")
MESSAGE_TOO_LARGE = noop(
    "The message is too large: it may hold at most {size} in all, its attachments at most"
    " {attachments} together. Nothing was sent."
)
MESSAGE_TOO_LARGE_TITLE = noop("Message too large")
NOT_KEPT = noop("Not kept: {files}.")
TOO_LARGE_TO_READ = noop(
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Nothing was sent. Go back to it with your browser's Back button and"
    " attach fewer or smaller files."
)
CHECK_BEFORE_SENDING = noop(
    "The message is too large: it may hold at most {size} in all, text and attachments"
    " together. Remove attachments or shorten the text."
)
# How far past [smtp] max_message_size the compose form is still read, to give it back
# filled in (its uploads past the attachment limit read and dropped, not kept). Its
# other fields are held in memory: twice a message at most, for a signed-in user.
READ_PAST_THE_LIMIT = 2
# And how far it is read and dropped unread, so that the page saying so arrives (see
# `bodies.drain`); past this the browser may show a connection error instead.
DRAIN_PAST_THE_LIMIT = 4
# gateway.compose messages, shown translated (they are message ids).
noop("{address} is not a valid mail address.")
noop("A header field of this message could not be written safely.")
noop("You cannot send from {address}.")
noop("Add at least one recipient.")
noop("A message can have at most {limit} recipients.")
noop("There is no mailbox {address} here.")
noop("The attachments are larger than {limit} bytes.")
noop("The message is larger than {limit} bytes.")

CHIP_TITLES = {
    "plain": noop("Sent without encryption while the lock is open"),
    "hosted": noop("Hosted here: receives it encrypted, nothing to do"),
    "key": noop("Has an OpenPGP key: {fingerprint}"),
    "password": noop("No key: gets a link to a secure page and needs a password"),
    "unknown-mailbox": noop("There is no such mailbox here"),
    "invalid": noop("Not a valid mail address"),
}
CHIP_LABELS = {
    "hosted": noop("hosted"),
    "key": noop("key"),
    "password": noop("needs a password"),
    "unknown-mailbox": noop("no such mailbox"),
    "invalid": noop("invalid"),
}


@dataclass
class ComposeForm:
    """What the compose page shows in its fields (also after a refusal)."""

    sender: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = field(default="", repr=False)
    encrypt: bool = False
    password: str = field(default="", repr=False)
    in_reply_to: str = ""
    references: str = ""
    draft_id: int | None = None
    # One per compose page, kept through refusals: the message's Message-ID, so a
    # second post of the same page finds it sent (gateway.compose.AlreadySent).
    send_token: str = field(default_factory=mailcompose.new_send_token)
    carry_from: int | None = None
    carried: list[tuple[int, str, int, bool]] = field(
        default_factory=list
    )  # index, name, size, kept
    # The query the page was built from ("reply=5&all=1", "forward=5", "draft=7"; ""
    # for a new message), kept through refusals: see `_come_back_to`.
    origin: str = ""


def _owned() -> list[str]:
    return accounts.owned_addresses(db_session(), current_user.account_id)


def _default_sender(owned: list[str]) -> str:
    email_ = str(current_user.email).lower()
    return email_ if email_ in owned else (owned[0] if owned else "")


def _addresses_of(value: str) -> list[str]:
    return [addr for _name, addr in email.utils.getaddresses([value]) if addr]


def _text_of(opened: reading.OpenedMessage) -> str:
    if opened.text.strip() or opened.html is None:
        return opened.text
    flat = nh3.clean(opened.html, tags=set(), clean_content_tags={"script", "style", "title"})
    return html.unescape(re.sub(r"\n\s*\n\s*\n+", "\n\n", flat)).strip()


def _prefixed(prefix: str, subject: str) -> str:
    if re.match(rf"(?i)\s*{prefix}\s*:", subject):
        return subject
    return f"{prefix}: {subject}"


def _shortened(text: str) -> str:
    """At most MAX_QUOTE characters of another message's text, for a reply or forward:
    the whole of a huge one would make a form that cannot be sent (MAX_TEXT)."""
    if len(text) <= MAX_QUOTE:
        return text
    return text[:MAX_QUOTE].rsplit("\n", 1)[0] + "\n[…]"


def _carried_from(
    opened: reading.OpenedMessage, keep: set[int] | None
) -> list[tuple[int, str, int, bool]]:
    return [
        (a.index, safe_filename(a.filename, a.index), len(a.data), keep is None or a.index in keep)
        for a in opened.attachments
    ]


def _reply_form(
    opened: reading.OpenedMessage, row_address: str, everyone: bool, owned: list[str]
) -> ComposeForm:
    headers = opened.headers
    to = _addresses_of(headers.get("Reply-To") or headers.get("From", ""))
    cc: list[str] = []
    if everyone:
        mine = {a.lower() for a in owned} | {a.lower() for a in to}
        for address in _addresses_of(headers.get("To", "")) + _addresses_of(headers.get("Cc", "")):
            if address.lower() not in mine:
                mine.add(address.lower())
                cc.append(address)
    message_id = mailcompose.message_id_or_empty(headers.get("Message-ID", ""))
    references = " ".join(
        v
        for v in (mailcompose.references_or_empty(headers.get("In-Reply-To", "")), message_id)
        if v
    )
    quoted = _shortened("\n".join("> " + line for line in _text_of(opened).splitlines()))
    intro = gettext(
        "On {date}, {sender} wrote:", date=headers.get("Date", ""), sender=headers.get("From", "")
    )
    return ComposeForm(
        sender=row_address if row_address in owned else _default_sender(owned),
        to=", ".join(to),
        cc=", ".join(cc),
        subject=_prefixed("Re", headers.get("Subject", "")),
        text=f"\n\n{intro}\n{quoted}\n",
        encrypt=opened.encrypted,
        in_reply_to=message_id,
        references=references,
    )


def _forward_form(opened: reading.OpenedMessage, row_address: str, owned: list[str]) -> ComposeForm:
    headers = opened.headers
    lines = [gettext("---------- Forwarded message ----------")]
    for name, label in (
        ("From", noop("From")),
        ("Date", noop("Date")),
        ("Subject", noop("Subject")),
        ("To", noop("To")),
        ("Cc", noop("Cc")),
    ):
        if headers.get(name):
            lines.append(f"{gettext(label)}: {headers[name]}")
    return ComposeForm(
        sender=row_address if row_address in owned else _default_sender(owned),
        subject=_prefixed("Fwd", headers.get("Subject", "")),
        text="\n\n" + "\n".join(lines) + "\n\n" + _shortened(_text_of(opened)) + "\n",
        encrypt=opened.encrypted,
        carry_from=opened.id,
        carried=_carried_from(opened, None),
    )


def _draft_form(draft_id: int, owned: list[str]) -> ComposeForm:
    s = db_session()
    ring = runtime().ring.get()
    try:
        limits = runtime().settings.limits
        data = drafts.load(s, ring, current_user.account_id, draft_id, limits)
        opened = reading.open_message(
            s, ring, current_user.account_id, draft_id, limits=limits, smtp=runtime().settings.smtp
        )
    except reading.CannotShow:
        abort_cannot_show(draft_id)
    except (reading.MessageNotFound, reading.CannotDecrypt):
        abort(404)
    parsed = BytesParser(policy=mimepolicy.READING).parsebytes(data)
    assert isinstance(parsed, EmailMessage)

    def header(name: str) -> str:
        value = parsed[name]
        return "" if value is None else str(value)

    sender = _addresses_of(header("From"))
    return ComposeForm(
        sender=sender[0] if sender and sender[0] in owned else _default_sender(owned),
        to=header("To"),
        cc=header("Cc"),
        bcc=header("Bcc"),
        subject=header("Subject"),
        # The MIME body ends with the line end set_content added; the form had none.
        text=opened.text.removesuffix("\n"),
        encrypt=header(ENCRYPT_HEADER).strip().lower() == "yes",
        in_reply_to=header("In-Reply-To"),
        references=header("References"),
        draft_id=draft_id,
        send_token=mailcompose.send_token_of(header("Message-ID")),
        carry_from=draft_id if opened.attachments else None,
        carried=_carried_from(opened, None),
    )


_ORIGIN_IDS = ("reply", "forward", "draft")


def _origin(values: Mapping[str, str]) -> str:
    """The reply, forward or draft a compose page was built from, as a query: only its
    ids and the reply-all switch, each checked (a form field is outside data)."""
    kept: list[tuple[str, str]] = []
    for name in _ORIGIN_IDS:
        number = parse_id(values.get(name))
        if number is not None:
            kept.append((name, str(number)))
            break
    if kept and kept[0][0] == "reply" and values.get("all"):
        kept.append(("all", "1"))
    return urllib.parse.urlencode(kept)


def _come_back_to(form: ComposeForm) -> None:
    """Back to a compose page that answered its post (a refusal) loads the page the form
    was built from, as a GET (webportal.after_post): the reply's threading, the
    forward's attachments, the draft; webmail.js puts the fields back over it as they
    were left. A GET of the bare /compose had lost the threading and the forwarded
    attachments, and Chromium's form state the fields the refusal had filled in."""
    args: dict[str, Any] = dict(urllib.parse.parse_qsl(form.origin))
    after_post.come_back_to(url_for("compose.compose", **args))


def _render(
    form: ComposeForm,
    owned: list[str],
    error: str | None = None,
    status: int = 200,
    *,
    need_password: bool = False,
) -> ResponseReturnValue:
    settings = runtime().settings
    if request.method == "POST":
        _come_back_to(form)
    strings = {
        "titles": {k: gettext(v, fingerprint="{fingerprint}") for k, v in CHIP_TITLES.items()},
        "labels": {k: gettext(v) for k, v in CHIP_LABELS.items()},
        "lookingUp": gettext(LOOKING_UP),
        "lockOpen": gettext("Not encrypted. Click to encrypt this message."),
        "lockClosed": gettext("Encrypted. Click to send without encryption."),
        "lockOpenShort": gettext("Not encrypted"),
        "lockClosedShort": gettext("Encrypted"),
        "copied": gettext("Copied"),
        "passwordTooShort": gettext(
            PASSWORD_TOO_SHORT, length=settings.securepage.min_password_length
        ),
        "passwordSet": gettext("Password set for recipients without a key."),
        "passwordNeeded": gettext("Set a password for the recipients without a key."),
        "attachmentsTooLarge": gettext(
            "The attachments are larger than {limit} bytes.",
            limit=settings.webmail.max_attachment_bytes,
        ),
        "messageTooLarge": gettext(
            CHECK_BEFORE_SENDING, size=filesize(settings.smtp.max_message_size)
        ),
    }
    return (
        render_template(
            "portal/mail/compose.html",
            form=form,
            owned=owned,
            error=error,
            need_password=need_password,
            strings=strings,
            max_attachment_bytes=settings.webmail.max_attachment_bytes,
            max_message_bytes=settings.smtp.max_message_size,
            min_password_length=settings.securepage.min_password_length,
            password_length=settings.securepage.generated_password_length,
            password_alphabet=PASSWORD_ALPHABET,
        ),
        status,
    )


@bp.route("/compose", methods=["GET", "POST"])
@login_required
def compose() -> ResponseReturnValue:
    if request.method == "POST":
        return _send()
    owned = _owned()
    args = request.args
    s = db_session()
    forward = query_id("forward")
    source = query_id("reply") or forward
    draft = query_id("draft")
    if draft:
        form = _draft_form(draft, owned)
    elif source:
        try:
            row = reading.owned_message(s, current_user.account_id, source)
            opened = open_owned(source)
        except reading.PasswordNeeded:  # a sealed Sent copy: its password first
            return redirect(url_for("mail.message", message_id=source), code=303)
        except reading.CannotShow:
            abort_cannot_show(source)
        except (reading.MessageNotFound, reading.CannotDecrypt):
            abort(404)
        if forward:
            form = _forward_form(opened, row.address.address, owned)
        else:
            form = _reply_form(opened, row.address.address, bool(args.get("all")), owned)
    else:
        form = ComposeForm(sender=_default_sender(owned), to=args.get("to", "")[:MAX_FIELD])
    form.origin = _origin(args)
    return _render(form, owned)


def _form_from_request(owned: list[str], *, offline: bool = False) -> ComposeForm:
    """The form as posted; `offline`, without the database (nor the attachments carried
    over from a forward or a draft, which are read from the store)."""
    data = request.form
    carried: list[tuple[int, str, int, bool]] = []
    keep = {n for v in data.getlist("carry") if (n := parse_int(v, 0, MAX_INDEX)) is not None}
    carry_from = None if offline else form_id("carry_from")
    if carry_from:
        try:
            opened = open_owned(carry_from)
        except (reading.MessageNotFound, reading.CannotDecrypt):
            carry_from = None
        else:
            carried = _carried_from(opened, keep)
    return ComposeForm(
        sender=data.get("from", "")[:320],
        to=data.get("to", "")[:MAX_FIELD],
        cc=data.get("cc", "")[:MAX_FIELD],
        bcc=data.get("bcc", "")[:MAX_FIELD],
        subject=data.get("subject", "")[:MAX_FIELD],
        # Whole (the form memory limit bounds it): past MAX_TEXT the page says so, and
        # gives the text back rather than sending less than was written.
        text=data.get("text", ""),
        encrypt=data.get("encrypt") == "yes",
        password=data.get("password", ""),
        in_reply_to=data.get("in_reply_to", "")[:1000],
        references=data.get("references", "")[:MAX_FIELD],
        draft_id=form_id("draft_id"),
        send_token=mailcompose.send_token_or_new(data.get("send_token", "")),
        carry_from=carry_from,
        carried=carried,
        origin=_origin(dict(urllib.parse.parse_qsl(data.get("origin", "")[:200]))),
    )


def _outgoing(form: ComposeForm) -> Outgoing:
    limit = runtime().settings.webmail.max_attachment_bytes
    uploads = [
        Upload(
            filename=upload.filename or "",
            content_type=upload.mimetype or "application/octet-stream",
            data=upload.stream.read(limit + 1),
        )
        for upload in request.files.getlist("attachments")
        if upload.filename
    ]
    if form.carry_from:
        opened = reading.open_message(
            db_session(),
            runtime().ring.get(),
            current_user.account_id,
            form.carry_from,
            limits=runtime().settings.limits,
            smtp=runtime().settings.smtp,
        )
        kept = {index for index, _name, _size, keep in form.carried if keep}
        uploads = [
            Upload(a.filename, a.content_type, a.data)
            for a in opened.attachments
            if a.index in kept
        ] + uploads
    return Outgoing(
        sender=form.sender,
        to=mailcompose.parse_addresses(form.to),
        cc=mailcompose.parse_addresses(form.cc),
        bcc=mailcompose.parse_addresses(form.bcc),
        names=mailcompose.display_names(form.to, form.cc, form.bcc),
        subject=form.subject,
        text=form.text,
        attachments=uploads,
        encrypt=form.encrypt,
        in_reply_to=form.in_reply_to,
        references=form.references,
        send_token=form.send_token,
    )


def _reject_text(status: str) -> str:
    settings = runtime().settings
    if "X-Sealgate-Password" in status and "at least" in status:
        return gettext(PASSWORD_TOO_SHORT, length=settings.securepage.min_password_length)
    if "X-Sealgate-Password" in status:
        return gettext(PASSWORD_TOO_LONG)
    parts = status.split(" ", 2)
    return gettext(NOT_SENT, reason=parts[2] if len(parts) == 3 else status)


def _too_large() -> ResponseReturnValue:
    """The page back, filled in, for a form larger than a message may be (read anyway,
    webportal.bodies): what was typed is all there; the uploads past the limit are
    named, and none is kept (a file field cannot be filled in again)."""
    settings = runtime().settings
    owned = _owned()
    form = _form_from_request(owned)
    status = 413
    message = gettext(
        MESSAGE_TOO_LARGE,
        size=filesize(settings.smtp.max_message_size),
        attachments=filesize(settings.webmail.max_attachment_bytes),
    )
    if not bodies.over_the_limit():  # a message's size, but too much attached
        status = 400
        message = gettext(
            "The attachments are larger than {limit} bytes.",
            limit=settings.webmail.max_attachment_bytes,
        )
    dropped = bodies.dropped_uploads()
    if dropped:
        files = ", ".join(
            f"{safe_filename(name, i)} ({filesize(size)})" for i, (name, size) in enumerate(dropped)
        )
        message = f"{message} {gettext(NOT_KEPT, files=files)}"
    if any(f.filename for f in request.files.getlist("attachments")):
        message = f"{message} {gettext(ATTACH_AGAIN)}"
    log.info("webmail form over the size limit (account %s)", current_user.account_id)
    discard_db_session()
    bodies.drain(settings.smtp.max_message_size * READ_PAST_THE_LIMIT)
    return _render(form, owned, message, status)


def _expired(note: str) -> ResponseReturnValue | None:
    """The form as it was posted after its token expired (webportal.expired_form), with
    `note` said: nothing is sent or saved."""
    if not current_user.is_authenticated:
        return None
    owned = _owned()
    form = _form_from_request(owned)
    if any(f.filename for f in request.files.getlist("attachments")):
        note = f"{note} {gettext(ATTACH_AGAIN)}"
    return _render(form, owned, note, 400)


def _outage(note: str) -> ResponseReturnValue:
    """The form as it was posted when the send met an outage (webportal.outage_form),
    drawn without the database: From offers the posted address only (the account's
    are not at hand; sending again checks it as ever), and the attachments, uploaded
    or carried over, are asked for again."""
    form = _form_from_request([], offline=True)
    uploaded = any(f.filename for f in request.files.getlist("attachments"))
    if uploaded or request.form.get("carry_from"):
        note = f"{note} {gettext(ATTACH_AGAIN)}"
    return _render(form, [form.sender] if form.sender else [], note, 503)


def _send() -> ResponseReturnValue:
    """Send or save, holding the request's size in the process's in-flight budget
    (gateway.inflight) meanwhile; past the budget the page comes back, filled in."""
    if bodies.over_the_limit() or bodies.dropped_uploads():
        return _too_large()
    hold = runtime().inflight.try_reserve(request_size_bound())
    if hold is None:
        log.info("webmail send refused for now: the in-flight budget is spent")
        owned = _owned()
        form = _form_from_request(owned)
        message = gettext(SERVER_BUSY)
        if any(f.filename for f in request.files.getlist("attachments")):
            message = f"{message} {gettext(ATTACH_AGAIN)}"
        discard_db_session()
        return _render(form, owned, message, 503)
    with hold:
        return _send_held(hold)


def _send_held(hold: Reservation) -> ResponseReturnValue:
    owned = _owned()
    form = _form_from_request(owned)
    uploaded = any(f.filename for f in request.files.getlist("attachments"))
    rt = runtime()
    now = clock.now()

    def refuse(
        message: str, status: int = 400, *, need_password: bool = False
    ) -> ResponseReturnValue:
        discard_db_session()
        if uploaded:
            message = f"{message} {gettext(ATTACH_AGAIN)}"
        return _render(form, owned, message, status, need_password=need_password)

    if typed_text.replaced():
        return refuse(typed_text.note())
    if len(form.text) > MAX_TEXT:
        return refuse(gettext(TEXT_TOO_LONG, limit=MAX_TEXT))
    try:
        outgoing = _outgoing(form)
    except ComposeError as exc:
        return refuse(gettext(exc.message, **exc.params))
    except reading.CannotShow:
        return refuse(gettext(CANNOT_SHOW), 422)
    except (reading.MessageNotFound, reading.CannotDecrypt):
        abort(404)
    # Attachments carried over from a forwarded message or a draft came from the
    # store, not the request: the hold grows to the whole message, or waits.
    size = len(outgoing.text.encode()) + sum(len(a.data) for a in outgoing.attachments)
    if size > hold.size and not hold.resize(size):
        return refuse(gettext(SERVER_BUSY), 503)

    if request.form.get("action") == "draft":
        return _save_draft(form, outgoing, owned, now, refuse)

    password: str | None = None
    if form.encrypt:
        try:
            with_password = _needs_password(outgoing, now)
        except ComposeError as exc:
            return refuse(gettext(exc.message, **exc.params))
        if with_password:
            if not form.password:
                form.password = generate_password(rt.settings.securepage.generated_password_length)
                return refuse(
                    gettext(NEED_PASSWORD, addresses=", ".join(with_password)),
                    need_password=True,
                )
            if len(form.password) < rt.settings.securepage.min_password_length:
                return refuse(
                    gettext(PASSWORD_TOO_SHORT, length=rt.settings.securepage.min_password_length),
                    need_password=True,
                )
            password = form.password
        secure_count = len(with_password)
    else:
        secure_count = 0

    # compose.send opens its own transactions: nothing of this request may hold a write.
    db_session().commit()
    try:
        queue_id = mailcompose.send(
            rt,
            current_user.account_id,
            outgoing,
            password=password,
            client_ip=client_address(),
            now=now,
        )
    except ComposeError as exc:
        return refuse(gettext(exc.message, **exc.params))
    except AlreadySent:
        # An earlier post of this page sent it (a double click, a re-post): nothing is
        # sent again, but nothing is dropped unseen either (the user may have come
        # back to change and resend it): the page says so, with a new token.
        log.info(
            "webmail: a form already sent was posted again (account %s)", current_user.account_id
        )
        form.send_token = mailcompose.new_send_token()
        return refuse(gettext(ALREADY_SENT), 409)
    except RejectMessage as exc:
        log.info("webmail message from %s refused: %s", outgoing.sender, exc.status)
        return refuse(_reject_text(exc.status))
    except Exception as exc:  # the page keeps what was written; the log has the cause
        if outages.report(exc) is not None:
            return outage_page()  # the account cannot be loaded to show the form again
        log.exception("webmail send from %s failed", outgoing.sender)
        return refuse(gettext(SEND_FAILED), 500)
    log.info("webmail message %s sent by account %s", queue_id, current_user.account_id)
    if form.draft_id:
        _drop_draft(form.draft_id)
    if secure_count:
        flash(gettext(SENT_SECURE, count=secure_count))
    else:
        flash(SENT_OK)
    return redirect(url_for("mail.inbox", slug="sent"), code=303)


def _needs_password(outgoing: Outgoing, now: dt.datetime) -> list[str]:
    """The recipients that will get a secure page (no key), as far as a lookup now tells."""
    rt = runtime()
    with_class = recipients.classify(
        rt, outgoing.recipients, now, timeout=rt.settings.webmail.recipient_lookup_timeout
    )
    for item in with_class:
        if item.kind == "unknown-mailbox":
            raise ComposeError("There is no mailbox {address} here.", address=item.address)
    return [item.address for item in with_class if item.kind == "password"]


def _save_draft(
    form: ComposeForm,
    outgoing: Outgoing,
    owned: list[str],
    now: dt.datetime,
    refuse: Callable[[str], ResponseReturnValue],
) -> ResponseReturnValue:
    s = db_session()
    sender = accounts.find_address(s, outgoing.sender)
    if sender is None or sender.account_id != current_user.account_id:
        discard_db_session()
        return _render(
            form,
            owned,
            gettext("You cannot send from {address}.", address=outgoing.sender[:320]),
            400,
        )
    try:
        mailcompose.check_attachments(outgoing, runtime().settings.webmail.max_attachment_bytes)
        message_id = mailcompose.message_id_of(outgoing)
        raw = mailcompose.build(outgoing, now=now, include_bcc=True, message_id=message_id)
    except ComposeError as exc:
        return refuse(gettext(exc.message, **exc.params))
    replaces = form.draft_id
    if replaces is not None:
        try:
            reading.owned_message(s, current_user.account_id, replaces)
        except reading.MessageNotFound:
            replaces = None
    if replaces is None:
        replaces = drafts.find(s, current_user.account_id, message_id)
    row = drafts.save(s, runtime().ring.get(), sender, raw, now=now, replaces=replaces)
    flash(DRAFT_SAVED)
    return redirect(url_for("compose.compose", draft=row.id), code=303)


def _drop_draft(draft_id: int) -> None:
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, draft_id)
    except reading.MessageNotFound:
        return
    if row.folder == drafts.DRAFTS:
        s.delete(row)


@bp.get("/compose/recipients")
@login_required
def recipient_classes() -> ResponseReturnValue:
    """JSON for the chips: each address's class, and the key's fingerprint."""
    rt = runtime()
    wanted = [a.strip()[:320] for a in request.args.getlist("address") if a.strip()]
    wanted = wanted[: rt.settings.smtp.max_recipients]
    classes = recipients.classify(
        rt, wanted, clock.now(), timeout=rt.settings.webmail.recipient_lookup_timeout
    )
    payload: dict[str, Any] = {
        "recipients": [
            {
                "address": c.address,
                "kind": c.kind,
                "fingerprint": c.fingerprint,
                "pending": c.pending,
            }
            for c in classes
        ]
    }
    return jsonify(payload)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large_to_read(_exc: RequestEntityTooLarge) -> ResponseReturnValue:
    """Past even what the form is read to (or a text field past MAX_FORM_MEMORY_SIZE):
    nothing of the form is at hand, so the page says how to get it back."""
    discard_db_session()
    limit = runtime().settings.smtp.max_message_size
    if current_user.is_authenticated:
        bodies.drain(limit * DRAIN_PAST_THE_LIMIT)
    size = filesize(limit)
    return render_error(413, MESSAGE_TOO_LARGE_TITLE, gettext(TOO_LARGE_TO_READ, size=size))


def init_app(app: Flask) -> None:
    bodies.read_uploads_past_the_limit(
        app,
        "compose.compose",
        bodies.LargeForm(
            body_limit=lambda: runtime().settings.smtp.max_message_size * READ_PAST_THE_LIMIT,
            upload_budget=lambda: runtime().settings.webmail.max_attachment_bytes,
        ),
    )
    app.register_blueprint(bp)
    # What the user writes; a NUL in it comes back shown, never the 400 page.
    typed_text.keep_fields(
        app, "compose.compose", ["to", "cc", "bcc", "subject", "text", "password"]
    )
    expired_form.refill_with(app, "compose.compose", _expired)
    outage_form.refill_with(app, "compose.compose", _outage)
    limited: Any = limiter(app).limit(RECIPIENT_LOOKUP_RATE)
    app.view_functions["compose.recipient_classes"] = limited(
        app.view_functions["compose.recipient_classes"]
    )
