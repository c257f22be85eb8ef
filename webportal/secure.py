"""The secure page for external recipients (`/s/<token>`), and the sender's control of it.

Recipient side (public; the link token is the credential):

- GET shows the password form, or the message when this browser already opened it;
- POST checks the password: the try is counted in the database first (so all
  portal processes share the limit), Argon2 runs with no transaction open, then
  the try is given back or, at the limit, the link locks and the sender is told;
- the right password leaves a short-lived *grant* in the session cookie: the
  message key sealed under a portal key and bound to the link, the message's
  seal generation, the link's grant generation and an expiry, so downloads and
  the reply need no second password entry; a new password (a new seal) ends old
  grants, and so does Close, on every device and in every copy of the cookie
  (`gateway.securepage.access`);
- unknown, expired, locked, revoked and purged links all get the same static
  page, byte for byte: it holds no token, no CSRF field, and sets no cookie.

Sender side (logged in): the list of their secure-page messages with each
link's state and opening times; revoke, extend up to the maximum, and a new
password, for which the sender types the current one: only it opens the page
and the sender's sealed Sent copy, which are sealed again under the new one.

Tokens never reach a log line: errors in these views are logged here, with a
short digest prefix of the token, instead of Flask's "Exception on <path>"; errors
around the views (the per-client limit's store down) reach the app's
`log_exception`, which names the path through `loggable_path`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar, cast

import limits
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from gateway import db, metrics, outages
from gateway.admin import policy as admin_policy
from gateway.models import SecureLink
from gateway.pipeline.secure_page import generate_password
from gateway.securepage import access, content, crypto, links, reply, store
from gateway.securepage.crypto import MessageKey
from gateway.settings import SecurePageSettings, SettingsError
from keystore import pgp
from keystore import store as keystore
from webportal import clock, expired_form, grants, typed_text
from webportal.access import fresh_login_required, login_required, public
from webportal.errors import PAGES, outage_page, render_error
from webportal.extensions import (
    client_limit_key,
    db_session,
    discard_db_session,
    limiter,
    portal_hosts,
    request_size_bound,
    runtime,
)
from webportal.i18n import gettext, gettext_noop
from webportal.ids import parse_int

log = logging.getLogger(__name__)

bp = Blueprint("secure", __name__)

EXTEND_CHOICES = (7, 14, 30)
MAX_DAYS = 100_000  # beyond any setting; the store checks the real range

WRONG_PASSWORD = gettext_noop(
    "The password is wrong. After too many wrong passwords the link is locked."
)
NO_PASSWORD = gettext_noop("Enter the password.")
REPLY_SENT = gettext_noop("Your answer was sent, encrypted.")
CLOSED = gettext_noop("The message is closed. Its password opens it again.")
REPLY_AGAIN = gettext_noop("Please enter the password again.")
ANSWER_KEPT = gettext_noop(
    "Please enter the password again. Your answer is kept, not sent: it is back in its"
    " form once the message is open."
)
ANSWER_NOT_SENT = gettext_noop("Your answer is not sent yet: check it and send it.")
ATTACH_AGAIN = gettext_noop("Please attach your files again.")
REPLY_BUSY = gettext_noop(
    "The server is busy right now; your answer was not sent. Please try again in a minute."
)
REVOKED = gettext_noop("The link for {recipient} was revoked.")
EXTENDED = gettext_noop("The link for {recipient} now works until {date}.")
PASSWORD_SET = gettext_noop(
    "The message has a new password. Every link that was not revoked works with it"
    " (locked links are unlocked)."
)
PASSWORDS_DIFFER = gettext_noop("The two passwords are not the same.")
PASSWORD_TOO_SHORT = gettext_noop("The password must have at least {length} characters.")
PASSWORD_TOO_LONG = gettext_noop("The password is too long.")
CURRENT_PASSWORD_NEEDED = gettext_noop("Enter the message's current password.")
CURRENT_PASSWORD_WRONG = gettext_noop("The current password is wrong.")
# gateway.securepage messages, shown translated (they are message ids).
gettext_noop("There is no such link.")
gettext_noop("There is no such message.")
gettext_noop("A revoked or deleted link cannot be extended.")
gettext_noop("Choose a number of days within the allowed range.")
gettext_noop("This link is already at its latest possible expiry.")
gettext_noop("The message changed meanwhile; please try again.")
gettext_noop("Write an answer or attach a file.")
gettext_noop("The answer is too large.")
gettext_noop("The answer could not be written.")
gettext_noop("This link cannot send more answers.")
gettext_noop("The answer cannot be delivered right now.")
STATES = {
    store.LinkState.ACTIVE: gettext_noop("active"),
    store.LinkState.EXPIRED: gettext_noop("expired"),
    store.LinkState.LOCKED: gettext_noop("locked"),
    store.LinkState.REVOKED: gettext_noop("revoked"),
    store.LinkState.PURGED: gettext_noop("deleted"),
}


F = TypeVar("F", bound=Callable[..., Any])


def guarded(view: F) -> F:
    """Errors in these views are logged here, by token digest: Flask's own log line
    ("Exception on /s/<token>") would write the token into the log."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001  (answered with the 500 page, logged below)
            return _error(exc)

    return cast(F, wrapper)


def _settings() -> SecurePageSettings:
    """The secure-page settings with the admin policy's lifetimes and Argon2 cost over them."""
    rt = runtime()
    return admin_policy.effective(db_session(), rt.settings).securepage(rt.settings.securepage)


# -- the one page for every link that cannot be opened -------------------------------


def unavailable() -> Response:
    """The same bytes for unknown, expired, locked, revoked and purged links."""
    discard_db_session()
    return Response(
        render_template("portal/secure/unavailable.html"), status=404, mimetype="text/html"
    )


# -- grants (webportal.grants): the link's message key for this browser -----------------

GRANT_KIND = "page"


def _store_grant(
    attempt: store.Attempt, grant_generation: int, key: MessageKey, now: dt.datetime
) -> None:
    binding = access.binding(attempt.public_id, attempt.generation, grant_generation)
    grants.grant(GRANT_KIND, attempt.link_id, binding, key, now, _settings().unlock_minutes)


def _grant(link: SecureLink, now: dt.datetime) -> MessageKey | None:
    return grants.granted(GRANT_KIND, link.id, access.link_binding(link), now)


# -- the recipient's page -------------------------------------------------------------


def _open(token: str, now: dt.datetime) -> tuple[SecureLink, bytes | None] | None:
    """(link, message or None when this browser has no valid grant); None if not usable.

    The link is read in a read-only transaction and returned detached: the
    caller only reads plain columns from it.
    """
    with db.read_only(runtime().sessions) as s:
        link = store.usable_link(s, token, now, _settings())
        if link is None:
            return None
        key = _grant(link, now)
        message = store.open_message(link, key) if key is not None else None
        s.expunge_all()
    return link, message


def _unlock_page(
    link: SecureLink, error: str | None, status: int = 200, *, answer: str | None = None
) -> ResponseReturnValue:
    """The password form; `answer` is an answer written while the grant ran out, carried
    in the form (hidden) until the message is open again."""
    return (
        render_template(
            "portal/secure/unlock.html",
            sender=link.message.sender_address,
            expires=link.expires_at,
            error=error,
            answer=answer,
        ),
        status,
    )


def _message_page(
    token: str,
    link: SecureLink,
    data: bytes,
    error: str | None = None,
    status: int = 200,
    *,
    answer: str = "",
) -> ResponseReturnValue:
    """The message and the answer form; `answer` fills the form in again after a
    refusal, so that what the recipient wrote is never lost to one."""
    return (
        render_template(
            "portal/secure/message.html",
            token=token,
            message=content.parse(data, portal_hosts()),
            sender=link.message.sender_address,
            recipient=link.recipient,
            expires=link.expires_at,
            max_reply_bytes=_settings().max_reply_bytes,
            error=error,
            answer=answer,
        ),
        status,
    )


def _answer_again(
    token: str, link: SecureLink, data: bytes, error: str, status: int
) -> ResponseReturnValue:
    """The page with the answer form filled in as it came, and `error` said; files
    cannot be put back into a file field, so the page asks for them again."""
    if any(upload.filename for upload in request.files.getlist("files")):
        error = f"{gettext(error)} {gettext(ATTACH_AGAIN)}"
    return _message_page(
        token, link, data, error=error, status=status, answer=request.form.get("text", "")
    )


@bp.route("/s/<token>", methods=["GET", "POST"])
@public
@guarded
def page(token: str) -> ResponseReturnValue:
    now = clock.now()
    if request.method == "POST":
        return _unlock(token, now)
    opened = _open(token, now)
    if opened is None:
        return unavailable()
    link, data = opened
    if data is None:
        return _unlock_page(link, None)
    return _message_page(token, link, data)


def _unlock(token: str, now: dt.datetime) -> ResponseReturnValue:
    rt = runtime()
    password = request.form.get("password", "")
    answer = _carried_answer()
    if not password:
        opened = _open(token, now)
        if opened is None:
            return unavailable()
        return _unlock_page(opened[0], NO_PASSWORD, 400, answer=answer)
    if len(password.encode("utf-8", "replace")) > rt.settings.passwords.max_password_bytes:
        password = ""  # counts as a wrong password, without hashing a huge input

    # Count the try and commit before the slow check, so parallel guesses see it.
    s = db_session()
    attempt = store.reserve_attempt(s, token, now, rt.settings.securepage)
    s.commit()
    if attempt is None:
        return unavailable()
    key = store.try_password(attempt, password, rt.settings.securepage) if password else None
    if key is None:
        locked = store.record_failure(s, attempt, now, rt.settings)
        s.commit()
        metrics.PORTAL_UNLOCKS.labels("locked" if locked else "wrong").inc()
        if locked:
            metrics.LOCKOUTS.labels("secure-link").inc()
        log.info(
            "secure page %s: wrong password%s",
            links.log_name(token),
            ", link locked" if locked else "",
        )
        if locked:
            return unavailable()
        opened = _open(token, now)
        if opened is None:
            return unavailable()
        return _unlock_page(opened[0], WRONG_PASSWORD, 403, answer=answer)
    grant_generation = store.record_success(s, attempt, now)
    s.commit()
    metrics.PORTAL_UNLOCKS.labels("opened").inc()
    _store_grant(attempt, grant_generation, key, now)
    log.info("secure page %s opened", links.log_name(token))
    if answer is not None:
        # The form again, with the answer in it: not sent, and nowhere else to keep
        # it (the session is a cookie). Sending it is the recipient's next step.
        opened = _open(token, now)
        if opened is not None and opened[1] is not None:
            return _message_page(token, opened[0], opened[1], error=ANSWER_NOT_SENT, answer=answer)
    return redirect(url_for("secure.page", token=token), code=303)


def _carried_answer() -> str | None:
    """The answer the password form carries, if it carries one that holds anything."""
    answer = request.form.get("text")
    return answer if answer is not None and answer.strip() else None


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266, RFC 8187)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


@bp.get("/s/<token>/a/<index:index>")
@public
@guarded
def download(token: str, index: int) -> ResponseReturnValue:
    opened = _open(token, clock.now())
    if opened is None:
        return unavailable()
    _link, data = opened
    if data is None:
        return redirect(url_for("secure.page", token=token), code=303)
    found = content.attachment(data, index)
    if found is None:
        return unavailable()
    info, payload = found
    response = Response(payload, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition(info.filename)
    return response


@bp.get("/s/<token>/reply")
@public
def answer_page(token: str) -> ResponseReturnValue:
    """The page an answer was posted from: Back or a reload to a page that answered
    that POST (webportal.after_post) comes here, and goes on to the page."""
    return redirect(url_for("secure.page", token=token), code=303)


@bp.post("/s/<token>/reply")
@public
@guarded
def answer(token: str) -> ResponseReturnValue:
    rt = runtime()
    now = clock.now()
    if "password" in request.form:
        # The password form that carries an answer (`_answer_kept`) posts back here,
        # to its own URL, as the page's own does: the page holds no token.
        return _unlock(token, now)
    with db.read_only(rt.sessions) as s:
        link = store.usable_link(s, token, now, rt.settings.securepage)
        if link is None:
            return unavailable()
        key = _grant(link, now)
        data = store.open_message(link, key) if key is not None else None
        sender_key = keystore.public_key(s, link.message.sender_address)
        s.expunge_all()
    if data is None:
        return _answer_kept(token, link)
    # The answer is a message in flight: its size is held in the process's budget.
    hold = rt.inflight.try_reserve(request_size_bound())
    if hold is None:
        log.info("secure page %s: answer refused for now (busy)", links.log_name(token))
        return _answer_again(token, link, data, REPLY_BUSY, 503)
    if typed_text.replaced():
        return _answer_again(token, link, data, typed_text.note(), 400)
    with hold:
        return _answer(token, link, data, sender_key, now)


def _answer_expired(note: str) -> ResponseReturnValue | None:
    """An answer posted after the page's form expired (webportal.expired_form): the page
    again with the answer filled in and `note` said, or the password form carrying it
    when this browser's grant ran out too. Nothing is sent; no password is tried."""
    token = (request.view_args or {}).get("token")
    if not isinstance(token, str):
        return None
    now = clock.now()
    with db.read_only(runtime().sessions) as s:
        link = store.usable_link(s, token, now, runtime().settings.securepage)
        if link is None:
            return None
        key = _grant(link, now)
        data = store.open_message(link, key) if key is not None else None
        s.expunge_all()
    if data is None or "password" in request.form:
        answer = _carried_answer()
        if answer is None:
            return None
        return _unlock_page(link, note, 400, answer=answer)
    return _answer_again(token, link, data, note, 400)


def _answer_kept(token: str, link: SecureLink) -> ResponseReturnValue:
    """No grant (it ran out while the answer was written, or Close ended it): the
    password form, carrying the answer so that it is not lost with the grant."""
    answer = _carried_answer()
    if answer is None:
        flash(REPLY_AGAIN)
        return redirect(url_for("secure.page", token=token), code=303)
    notes = [gettext(ANSWER_KEPT)]
    if typed_text.replaced():
        notes.append(typed_text.note())
    if any(upload.filename for upload in request.files.getlist("files")):
        notes.append(gettext(ATTACH_AGAIN))
    return _unlock_page(link, " ".join(notes), 403, answer=answer)


def _answer(
    token: str,
    link: SecureLink,
    data: bytes,
    sender_key: pgp.PublicKey | None,
    now: dt.datetime,
) -> ResponseReturnValue:
    rt = runtime()
    limit = rt.settings.securepage.max_reply_bytes
    try:
        uploads = [
            reply.ReplyFile(
                filename=upload.filename or "",
                content_type=upload.mimetype or "",
                data=upload.stream.read(limit + 1),
            )
            for upload in request.files.getlist("files")
            if upload.filename
        ]
        raw = reply.build_reply(
            recipient=link.recipient,
            sender_address=link.message.sender_address,
            original=content.parse(data),
            text=request.form.get("text", ""),
            files=uploads,
            now=now,
            hostname=rt.settings.smtp.hostname,
            settings=rt.settings.securepage,
        )
        if sender_key is None:
            raise reply.ReplyError("The answer cannot be delivered right now.")
        encrypted = reply.encrypt_to(sender_key, raw)
        s = db_session()
        reply.deliver(s, link.id, encrypted, now, rt.settings.securepage)
        s.commit()
    except reply.ReplyError as exc:
        discard_db_session()
        return _answer_again(token, link, data, str(exc), 400)
    log.info("secure page %s: answer stored for the sender", links.log_name(token))
    flash(REPLY_SENT)
    return redirect(url_for("secure.page", token=token), code=303)


@bp.post("/s/<token>/close")
@public
@guarded
def close(token: str) -> ResponseReturnValue:
    """End access before `unlock_minutes` run out: on a shared computer the next
    person must not find the message open, nor reopen it from a saved copy of the
    cookie. A browser whose grant is valid voids every grant of the link, on every
    device; one without (only the link, not the password) just forgets its own."""
    now = clock.now()
    s = db_session()
    link = store.usable_link(s, token, now, _settings())
    if link is None:
        return unavailable()
    link_id = link.id
    if _grant(link, now) is not None and access.close(s, link_id, link.grant_generation):
        s.commit()
        log.info("secure page %s closed on every device", links.log_name(token))
    grants.forget(GRANT_KIND, link_id)
    flash(CLOSED)
    return redirect(url_for("secure.page", token=token), code=303)


# -- the sender's control ---------------------------------------------------------------


@bp.get("/secure/sent")
@login_required
@guarded
def sent() -> ResponseReturnValue:
    messages = store.list_for_account(
        db_session(), current_user.account_id, clock.now(), _settings()
    )
    return render_template(
        "portal/secure/sent.html",
        messages=messages,
        states=STATES,
        extend_choices=EXTEND_CHOICES,
    )


@bp.post("/secure/links/<id:link_id>/revoke")
@login_required
@guarded
def revoke(link_id: int) -> ResponseReturnValue:
    try:
        link = store.revoke(
            db_session(), current_user.account_id, link_id, clock.now(), actor=current_user.email
        )
    except store.SecurePageError:
        abort(404)
    flash(gettext(REVOKED, recipient=link.recipient))
    return redirect(url_for("secure.sent"), code=303)


@bp.post("/secure/links/<id:link_id>/extend")
@login_required
@guarded
def extend(link_id: int) -> ResponseReturnValue:
    days = parse_int(request.form.get("days"), 1, MAX_DAYS) or 0
    try:
        link = store.extend(
            db_session(),
            current_user.account_id,
            link_id,
            days,
            clock.now(),
            _settings(),
            actor=current_user.email,
        )
    except store.SecurePageError as exc:
        if str(exc) == "There is no such link.":
            abort(404)
        flash(str(exc))
        return redirect(url_for("secure.sent"), code=303)
    flash(gettext(EXTENDED, recipient=link.recipient, date=maildate(link.expires_at)))
    return redirect(url_for("secure.sent"), code=303)


def maildate(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.route("/secure/messages/<id:message_id>/password", methods=["GET", "POST"])
@fresh_login_required
@guarded
def new_password(message_id: int) -> ResponseReturnValue:
    rt = runtime()
    page_settings = _settings()
    s = db_session()
    try:
        message = store.owned_message(s, current_user.account_id, message_id)
    except store.SecurePageError:
        abort(404)
    if message.purged_at is not None:
        abort(404)
    subject = store.sent_subject(s, message) or ""
    if request.method == "GET":
        return render_template("portal/secure/password.html", message=message, subject=subject)

    current = request.form.get("current", "")
    typed = request.form.get("password", "")
    generated = None
    error = None
    if not current:
        error = gettext(CURRENT_PASSWORD_NEEDED)
    elif len(current.encode("utf-8", "replace")) > rt.settings.passwords.max_password_bytes:
        error = gettext(CURRENT_PASSWORD_WRONG)
    elif not typed:
        typed = generated = generate_password(page_settings.generated_password_length)
    elif typed != request.form.get("confirm", ""):
        error = gettext(PASSWORDS_DIFFER)
    elif len(typed) < page_settings.min_password_length:
        error = gettext(PASSWORD_TOO_SHORT, length=page_settings.min_password_length)
    elif len(typed.encode("utf-8", "replace")) > rt.settings.passwords.max_password_bytes:
        error = gettext(PASSWORD_TOO_LONG)
    if error is not None:
        return (
            render_template(
                "portal/secure/password.html", message=message, subject=subject, error=error
            ),
            400,
        )

    # Only the current password opens the page and the Sent copy: the server cannot.
    try:
        plan = store.reseal_plan(s, message)
    except store.SecurePageError:
        abort(404)
    s.commit()  # no transaction open while Argon2 runs
    try:
        resealed = store.reseal(plan, current, typed, page_settings)
    except crypto.SealError:
        return (
            render_template(
                "portal/secure/password.html",
                message=message,
                subject=subject,
                error=gettext(CURRENT_PASSWORD_WRONG),
            ),
            403,
        )
    try:
        store.apply_reseal(
            s, current_user.account_id, plan, resealed, clock.now(), actor=current_user.email
        )
    except store.SecurePageError as exc:
        discard_db_session()
        flash(str(exc))
        return redirect(url_for("secure.sent"), code=303)
    s.commit()
    if generated is None:
        flash(PASSWORD_SET)
        return redirect(url_for("secure.sent"), code=303)
    # Shown once, on this response only: never flashed (the session is a cookie).
    return render_template("portal/secure/password_set.html", subject=subject, password=generated)


# -- wiring -----------------------------------------------------------------------------


def _error(exc: Exception) -> Response:
    """Log without the request path (it holds the token); answer the usual 500 page."""
    if outages.report(exc) is not None:
        return outage_page()
    discard_db_session()
    token = (request.view_args or {}).get("token")
    where = f"link {links.log_name(token)}" if isinstance(token, str) else str(request.endpoint)
    log.error("secure page error (%s): %s", where, type(exc).__name__, exc_info=exc)
    return render_error(500, *PAGES[500])


_PAGE_PATH = re.compile(r"/s/([^/]*)")


def loggable_path(path: str) -> str:
    """`path` fit for a log line: a secure-page token in it named by its digest prefix."""
    return _PAGE_PATH.sub(lambda m: f"/s/<link {links.log_name(m.group(1))}>", path, count=1)


def init_app(app: Flask) -> None:
    rate = runtime(app).settings.securepage.rate_limit
    try:
        limits.parse_many(rate)
    except ValueError:
        raise SettingsError(
            f"[securepage] rate_limit: {rate!r} is not a rate such as '10/minute;60/hour'"
        ) from None
    app.register_blueprint(bp)
    for endpoint in ("secure.answer", "secure.page"):  # the page carries an answer
        typed_text.keep_fields(app, endpoint, ["text"])
        expired_form.refill_with(app, endpoint, _answer_expired)
    # One budget per client for password tries and answers together, the sender's
    # own password entries (a new password, a sealed Sent copy) included.
    shared: Any = limiter(app).shared_limit(rate, scope="securepage", methods=["POST"])
    for endpoint in ("secure.page", "secure.answer", "secure.new_password", "mail.unlock"):
        app.view_functions[endpoint] = shared(app.view_functions[endpoint])
    # The sender's entries count per account as well: a stolen session guesses from as
    # many addresses as it likes, but always as the one account.
    per_account: Any = limiter(app).shared_limit(
        rate, scope="securepage-account", key_func=_account_key, methods=["POST"]
    )
    for endpoint in ("secure.new_password", "mail.unlock"):
        app.view_functions[endpoint] = per_account(app.view_functions[endpoint])


def _account_key() -> str:
    if current_user.is_authenticated:
        return f"account:{current_user.account_id}"
    return f"client:{client_limit_key()}"
