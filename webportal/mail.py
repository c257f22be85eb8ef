"""Webmail reading: the folders, one message, its attachments, moving, deleting, search.

A message is decrypted for the request that shows it (gateway.reading unwraps
the address key for that one call); nothing decrypted is kept. HTML bodies go
through the same nh3 allow-list as the secure page (no images, styles, forms or
scripts; links get rel="noopener noreferrer"), and the page's CSP stands behind
it. Attachments are only ever downloads (`Content-Disposition: attachment`,
`application/octet-stream`), never rendered on the portal's origin.

The Sent view of an encrypted message also shows its secure-page links, if it
had recipients without a key, with the controls of webportal.secure. Such a
message's Sent copy is sealed under its password (gateway.securepage.sent_copy):
the view asks for the password, and the right one leaves a short-lived grant in
the session (webportal.grants), as the secure page does for its recipients.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NoReturn

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from gateway import reading
from gateway.imap import store as folder_store
from gateway.imap.folders import FolderError, FolderLimitError
from gateway.mailbox import INBOX, SENT
from gateway.mailbox_queries import SearchQuery, list_folder, search
from gateway.models import MailboxMessage, MailFolder, SecureMessage
from gateway.reading import TRASH
from gateway.securepage import store as pages
from gateway.securepage.content import safe_filename, sanitize_html
from gateway.securepage.crypto import MessageKey
from webportal import after_post, clock, grants
from webportal.access import login_required, public
from webportal.extensions import db_session, portal_hosts, runtime
from webportal.i18n import current_language, gettext, gettext_noop
from webportal.ids import page_number
from webportal.secure import EXTEND_CHOICES, STATES, content_disposition

bp = Blueprint("mail", __name__)

DRAFTS = "Drafts"
FOLDERS = {"inbox": INBOX, "sent": SENT, "drafts": DRAFTS, "trash": TRASH}
SLUGS = {folder: slug for slug, folder in FOLDERS.items()}
FOLDER_NAMES = {
    INBOX: gettext_noop("Inbox"),
    SENT: gettext_noop("Sent"),
    DRAFTS: gettext_noop("Drafts"),
    TRASH: gettext_noop("Trash"),
}
# Where a message can be moved by hand (a draft is made by saving one, not by moving).
MOVE_TARGETS = (INBOX, SENT, TRASH)
SIGNATURES = {
    "valid": gettext_noop("Signed by the sender: the signature is valid."),
    "valid-text-only": gettext_noop(
        "Signed by the sender: the signature is valid for the text only; the subject, date"
        " and recipients shown are not signed."
    ),
    "valid-other-sender": gettext_noop("Signed by {signer}, but sent as {sender}."),
    "valid-headers-differ": gettext_noop(
        "Signed by the sender, but the message arrived with other header fields (another"
        " subject or other recipients, for example) than the signed ones shown here: someone"
        " may have passed on a message that was written for someone else."
    ),
    "invalid": gettext_noop("The signature does not match: the message may have been changed."),
    "unknown-key": gettext_noop("Signed with a key this server does not know."),
    "unsigned": gettext_noop("Not signed."),
    "sealed": gettext_noop("Sealed with the message's password, like its secure pages."),
}
CANNOT_DECRYPT = gettext_noop("This message cannot be decrypted with your keys.")
CANNOT_SHOW = gettext_noop(
    "This message cannot be shown: it is too large or too complex to open safely."
    " Your administrator can see it in the server log."
)
SEALED_WRONG = gettext_noop("The password is wrong.")
SEALED_EMPTY = gettext_noop("Enter the password.")
GRANT_KIND = "sent"
MOVED = gettext_noop("The message was moved to {folder}.")
TRASHED = gettext_noop("The message was moved to the trash.")
DELETED = gettext_noop("The message was deleted for good.")
BAD_DATE = gettext_noop("Enter dates as YYYY-MM-DD.")
FOLDER_CREATED = gettext_noop("The folder was created.")
FOLDER_RENAMED = gettext_noop("The folder was renamed.")
FOLDER_DELETED = gettext_noop("The folder was deleted.")
FOLDER_REFUSED = gettext_noop(
    "That name cannot be used: choose another one (at most 200 characters, not one of the"
    " standard folders, no empty part between slashes)."
)
FOLDER_LIMIT = gettext_noop(
    "No more folders: an account has at most 1000, each level of a name counted. Delete one first."
)


def per_page() -> int:
    return runtime().settings.webmail.per_page


def folder_label(folder: str) -> str:
    return gettext(FOLDER_NAMES.get(folder, folder))


def user_folders(account_id: int) -> list[MailFolder]:
    """The folders the user made (in the webmail or a mail program), by name."""
    return list(
        db_session().scalars(
            sa.select(MailFolder)
            .where(MailFolder.account_id == account_id, MailFolder.name.not_in(list(FOLDER_NAMES)))
            .order_by(MailFolder.name)
        )
    )


def _owned_folder(folder_id: int) -> MailFolder:
    row = db_session().scalar(
        sa.select(MailFolder).where(
            MailFolder.id == folder_id, MailFolder.account_id == current_user.account_id
        )
    )
    if row is None or row.name in FOLDER_NAMES:
        abort(404)
    return row


@bp.app_context_processor
def _mail_helpers() -> dict[str, object]:
    def listed_folders() -> list[MailFolder]:
        return user_folders(current_user.account_id) if current_user.is_authenticated else []

    return {"folder_label": folder_label, "folder_slugs": SLUGS, "user_folders": listed_folders}


@bp.get("/")
@public
def index() -> ResponseReturnValue:
    return redirect(url_for("mail.inbox"))


@bp.get("/inbox", defaults={"slug": "inbox"})
@bp.get("/<any(sent, drafts, trash):slug>")
@login_required
def inbox(slug: str) -> ResponseReturnValue:
    folder = FOLDERS[slug]
    page = page_number()
    listing = list_folder(db_session(), current_user.account_id, folder, page, per_page())
    return render_template("portal/mail/folder.html", folder=listing, name=folder, slug=slug)


@bp.get("/folders/<id:folder_id>")
@login_required
def user_folder(folder_id: int) -> ResponseReturnValue:
    row = _owned_folder(folder_id)
    page = request.args.get("page", 1, type=int)
    listing = list_folder(db_session(), current_user.account_id, row.name, page, per_page())
    return render_template(
        "portal/mail/folder.html", folder=listing, name=row.name, user_folder=row
    )


@bp.post("/folders")
@login_required
def create_folder() -> ResponseReturnValue:
    name = request.form.get("name", "")[:300].strip()
    try:
        info = folder_store.create_folder(db_session(), current_user.account_id, name)
    except FolderLimitError:
        flash(FOLDER_LIMIT)
        return redirect(url_for("mail.inbox"), code=303)
    except FolderError:
        flash(FOLDER_REFUSED)
        return redirect(url_for("mail.inbox"), code=303)
    flash(FOLDER_CREATED)
    return redirect(url_for("mail.user_folder", folder_id=info.id), code=303)


@bp.post("/folders/<id:folder_id>/rename")
@login_required
def rename_folder(folder_id: int) -> ResponseReturnValue:
    row = _owned_folder(folder_id)
    try:
        folder_store.rename_folder(
            db_session(),
            current_user.account_id,
            row.name,
            request.form.get("name", "")[:300].strip(),
        )
    except FolderLimitError:
        flash(FOLDER_LIMIT)
    except FolderError:
        flash(FOLDER_REFUSED)
    else:
        flash(FOLDER_RENAMED)
    return redirect(url_for("mail.user_folder", folder_id=folder_id), code=303)


@bp.post("/folders/<id:folder_id>/delete")
@login_required
def delete_folder(folder_id: int) -> ResponseReturnValue:
    row = _owned_folder(folder_id)
    folder_store.delete_folder(db_session(), current_user.account_id, row.name)
    flash(FOLDER_DELETED)
    return redirect(url_for("mail.inbox"), code=303)


@dataclass(frozen=True)
class SecureLinks:
    """The secure-page side of a Sent message: when its links expire and their state."""

    message: pages.MessageView
    expires_at: dt.datetime

    @property
    def count(self) -> int:
        return len(self.message.links)


def secure_links(account_id: int, queue_id: str, subject: str) -> SecureLinks | None:
    s = db_session()
    row = s.scalar(
        sa.select(SecureMessage)
        .where(SecureMessage.account_id == account_id, SecureMessage.queue_id == queue_id)
        .order_by(SecureMessage.id)
        .limit(1)
    )
    if row is None or not row.links:
        return None
    view = pages.message_view(row, subject, clock.now(), runtime().settings.securepage)
    live = [v.expires_at for v in view.links if v.revoked_at is None] or [
        v.expires_at for v in view.links
    ]
    return SecureLinks(view, max(live))


def sealed_key(row: MailboxMessage) -> MessageKey | None:
    """The key of a sealed Sent copy if this browser typed its password lately."""
    if not reading.is_sealed(row):
        return None
    return grants.granted(GRANT_KIND, row.id, _binding(row), clock.now())


def _binding(row: MailboxMessage) -> bytes:
    return reading.sealed_binding(row).encode()


def open_owned(message_id: int) -> reading.OpenedMessage:
    """The message for this request, a sealed Sent copy through this browser's grant."""
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, message_id)
        return reading.open_message(
            s,
            runtime().ring.get(),
            current_user.account_id,
            message_id,
            sealed_key=sealed_key(row),
            limits=runtime().settings.limits,
            smtp=runtime().settings.smtp,
        )
    except reading.MessageNotFound:
        abort(404)


def _page_context(row: MailboxMessage) -> dict[str, object]:
    return {
        "row": row,
        "secure": (
            secure_links(current_user.account_id, row.queue_id, row.subject)
            if row.folder == SENT and row.encrypted
            else None
        ),
        "states": STATES,
        "extend_choices": EXTEND_CHOICES,
        "move_targets": [
            f
            for f in (*MOVE_TARGETS, *(u.name for u in user_folders(current_user.account_id)))
            if f != row.folder
        ],
    }


@bp.get("/mail/<id:message_id>")
@login_required
def message(message_id: int) -> ResponseReturnValue:
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, message_id)
    except reading.MessageNotFound:
        abort(404)
    if row.folder == DRAFTS:
        return redirect(url_for("compose.compose", draft=message_id))
    reading.mark_seen(row)
    page = _page_context(row)
    try:
        opened = open_owned(message_id)
    except reading.PasswordNeeded:
        return render_template("portal/mail/message.html", sealed=True, error=None, **page)
    except reading.CannotShow:
        return cannot_show(page)
    except reading.CannotDecrypt:
        return render_template(
            "portal/mail/message.html", opened=None, error=CANNOT_DECRYPT, **page
        )
    return render_template(
        "portal/mail/message.html",
        opened=opened,
        html=sanitize_html(opened.html, portal_hosts()) if opened.html is not None else None,
        attachments=[
            (a.index, safe_filename(a.filename, a.index), len(a.data)) for a in opened.attachments
        ],
        signature=signature_text(opened),
        subject=opened.headers.get("Subject", "") if opened.headers_signed else row.subject,
        error=None,
        **page,
    )


def signature_text(opened: reading.OpenedMessage) -> str | None:
    """What the page says of the signature, in the reader's language."""
    message = SIGNATURES.get(opened.signature)
    if message is None:
        return None
    if opened.signature == "valid-other-sender":
        return gettext(message, signer=opened.signed_by or "", sender=opened.sent_as or "")
    return gettext(message)


def cannot_show(page: dict[str, object]) -> ResponseReturnValue:
    """The page for a message beyond the bounds of decrypting stored mail (the reading
    layer has logged it for the admin)."""
    return (
        render_template("portal/mail/message.html", opened=None, error=CANNOT_SHOW, **page),
        422,
    )


def abort_cannot_show(message_id: int) -> NoReturn:
    """End this request with the "cannot be shown" page of an owned message."""
    row = reading.owned_message(db_session(), current_user.account_id, message_id)
    abort(make_response(cannot_show(_page_context(row))))


@bp.get("/mail/<id:message_id>/attachments/<index:index>")
@login_required
def attachment(message_id: int, index: int) -> ResponseReturnValue:
    try:
        opened = open_owned(message_id)
    except reading.CannotShow:
        abort_cannot_show(message_id)
    except reading.CannotDecrypt:
        abort(404)
    found = next((a for a in opened.attachments if a.index == index), None)
    if found is None:
        abort(404)
    response = Response(found.data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition(
        safe_filename(found.filename, index)
    )
    return response


def _sealed(page: dict[str, object], error: str, status: int) -> ResponseReturnValue:
    return render_template("portal/mail/message.html", sealed=True, error=error, **page), status


@bp.post("/mail/<id:message_id>/unlock")
@login_required
def unlock(message_id: int) -> ResponseReturnValue:
    """Open a sealed Sent copy with the message's password (one Argon2 run)."""
    rt = runtime()
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, message_id)
    except reading.MessageNotFound:
        abort(404)
    if not reading.is_sealed(row):
        return redirect(url_for("mail.message", message_id=message_id), code=303)
    page = _page_context(row)
    after_post.come_back_to(url_for("mail.message", message_id=message_id))
    password = request.form.get("password", "")
    if not password:
        return _sealed(page, SEALED_EMPTY, 400)
    if len(password.encode("utf-8", "replace")) > rt.settings.passwords.max_password_bytes:
        return _sealed(page, SEALED_WRONG, 403)
    binding = _binding(row)
    s.commit()  # no transaction (on SQLite: no write lock) held while Argon2 runs
    try:
        key = reading.unlock_sealed(row, password, rt.settings.securepage)
    except reading.PasswordNeeded:
        return _sealed(page, SEALED_WRONG, 403)
    grants.grant(
        GRANT_KIND, message_id, binding, key, clock.now(), rt.settings.securepage.unlock_minutes
    )
    return redirect(url_for("mail.message", message_id=message_id), code=303)


@bp.post("/mail/<id:message_id>/move")
@login_required
def move(message_id: int) -> ResponseReturnValue:
    target = request.form.get("folder", "")
    if target not in MOVE_TARGETS and target not in {
        u.name for u in user_folders(current_user.account_id)
    }:
        abort(400)
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, message_id)
    except reading.MessageNotFound:
        abort(404)
    origin = row.folder
    reading.move(s, current_user.account_id, message_id, target)
    flash(gettext(MOVED, folder=folder_label(target)))
    return _back_to(origin)


def _back_to(origin: str) -> ResponseReturnValue:
    """The list the message was in: a standard folder, or the user's own."""
    if origin in SLUGS:
        return redirect(url_for("mail.inbox", slug=SLUGS[origin]), code=303)
    own = next((u for u in user_folders(current_user.account_id) if u.name == origin), None)
    if own is not None:
        return redirect(url_for("mail.user_folder", folder_id=own.id), code=303)
    return redirect(url_for("mail.inbox"), code=303)


@bp.post("/mail/<id:message_id>/delete")
@login_required
def delete(message_id: int) -> ResponseReturnValue:
    s = db_session()
    try:
        row = reading.owned_message(s, current_user.account_id, message_id)
    except reading.MessageNotFound:
        abort(404)
    origin = row.folder
    reading.delete(s, current_user.account_id, message_id)
    flash(DELETED if origin == TRASH else TRASHED)
    return redirect(url_for("mail.inbox", slug=SLUGS.get(origin, "inbox")), code=303)


def _day(value: str) -> dt.datetime | None:
    value = value.strip()
    if not value:
        return None
    parsed = dt.date.fromisoformat(value)
    return dt.datetime(parsed.year, parsed.month, parsed.day, tzinfo=dt.UTC)


def _day_after(day: dt.datetime) -> dt.datetime | None:
    """The start of the next day; None (no bound) after the last day datetime holds."""
    try:
        return day + dt.timedelta(days=1)
    except OverflowError:
        return None


@bp.get("/search")
@login_required
def search_page() -> ResponseReturnValue:
    args = request.args
    form = {key: args.get(key, "")[:200] for key in ("q", "sender", "recipient", "since", "until")}
    folder_slug = args.get("folder", "")
    folder = FOLDERS.get(folder_slug)
    error = None
    results = None
    try:
        since, until = _day(form["since"]), _day(form["until"])
    except ValueError:
        since = until = None
        error = BAD_DATE
    asked = any(v.strip() for v in form.values())
    if asked and error is None:
        query = SearchQuery(
            text=form["q"],
            sender=form["sender"],
            recipient=form["recipient"],
            since=since,
            # "until" names a day: everything up to its end (9999-12-31 has no day after).
            until=_day_after(until) if until else None,
            folder=folder,
        )
        page = page_number()
        results = search(db_session(), current_user.account_id, query, page, per_page())
    status = 400 if error else 200
    return (
        render_template(
            "portal/mail/search.html",
            form=form,
            folder_slug=folder_slug if folder else "",
            results=results,
            error=error,
        ),
        status,
    )


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    if size < 1024 * 1024:
        return gettext("{size} KB", size=max(1, round(size / 1024)))
    megabytes = f"{size / (1024 * 1024):.1f}"
    if current_language() != "en":
        megabytes = megabytes.replace(".", ",")
    return gettext("{size} MB", size=megabytes)


@bp.app_template_filter("maildate")
def maildate(value: dt.datetime) -> str:
    """UTC, unambiguous in every language; per-account time zones come with settings."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
