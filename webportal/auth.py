"""Portal login and logout for accounts.

An unknown account and a wrong password get the same page, the same status and
(through `authenticate_account`'s dummy verify) the same Argon2 cost. Every
attempt goes to the audit log, which is the account's activity log. Issue 6's
second factor plugs in between `check_login` and `start_session`: a right
password will then park the account in the session until the factor passes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy.orm as so
from flask import (
    Blueprint,
    Flask,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from gateway import accounts, audit
from gateway.addresses import InvalidAddress, normalize_address
from gateway.models import Account
from gateway.passwords import PasswordHasher, PasswordTooLong
from webportal.access import login_required, public
from webportal.extensions import (
    db_session,
    limiter,
    make_login_manager,
    request_meta,
    runtime,
)
from webportal.i18n import gettext_noop

bp = Blueprint("auth", __name__)

MAX_EMAIL_LENGTH = 320
LOGIN_FAILED = gettext_noop("Email or password is wrong.")
UNKNOWN_ACTOR = "(not an address)"


@dataclass(frozen=True)
class PortalUser:
    """The logged-in account as flask-login sees it, detached from any DB session.

    `session_nonce` names this login session; issue 6 stores it server-side so
    sessions can be listed and ended, and `load_user` will then refuse an ended one.
    """

    account_id: int
    email: str
    is_admin: bool
    language: str
    session_nonce: str

    # flask-login's user protocol (UserMixin, spelt out: it is untyped).
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.account_id}:{self.session_nonce}"

    @classmethod
    def from_account(cls, account: Account, session_nonce: str) -> PortalUser:
        return cls(
            account_id=account.id,
            email=account.email,
            is_admin=account.is_admin,
            language=account.language,
            session_nonce=session_nonce,
        )


def load_user(user_id: str) -> PortalUser | None:
    account_id, _, nonce = user_id.partition(":")
    if not (account_id.isascii() and account_id.isdigit() and len(account_id) <= 12 and nonce):
        return None
    account = db_session().get(Account, int(account_id))
    return None if account is None else PortalUser.from_account(account, nonce)


def check_login(
    session: so.Session,
    hasher: PasswordHasher,
    email: str,
    password: str,
    *,
    ip: str,
    user_agent: str,
) -> Account | None:
    """The account when email and password match, else None; the attempt is audited."""
    if len(email) > MAX_EMAIL_LENGTH or not email.isprintable():
        email = ""  # no such account (and no NUL for PostgreSQL); still pays the verify
    detail = ""
    try:
        account = accounts.authenticate_account(session, hasher, email, password)
    except PasswordTooLong:
        # The hasher refuses long input before hashing; should it ever raise
        # instead of answering False, that is still just a failed login.
        account, detail = None, "password too long"
    known = account or (accounts.find_account(session, email) if email else None)
    audit.record(
        session,
        "login",
        actor=known.email if known else _actor_for(email),
        target=known.email if known else "",
        account_id=known.id if known else None,
        success=account is not None,
        ip=ip,
        user_agent=user_agent,
        detail=detail,
    )
    return account


def _actor_for(typed: str) -> str:
    """An unknown login as typed, only when it is an address: people type passwords there."""
    try:
        return normalize_address(typed)
    except InvalidAddress:
        return UNKNOWN_ACTOR


def start_session(account: Account) -> None:
    # A fresh session at login: nothing planted before it (a fixed session id,
    # a known CSRF token) survives into the logged-in session.
    session.clear()
    login_user(PortalUser.from_account(account, secrets.token_urlsafe(24)), fresh=True)
    session.permanent = True


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this host, else None (no open redirect).

    Browsers read `//evil.example`, `/\\evil.example` and `https:evil` as other
    hosts, and strip tabs and newlines before parsing, so only a plain absolute
    path with no backslash or control character passes.
    """
    if not target or len(target) > 2000:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_url or url_for("mail.inbox"))
    email = ""
    error = None
    if request.method == "POST":
        email = request.form.get("email", "")
        rt = runtime()
        account = check_login(
            db_session(),
            rt.hasher,
            email,
            request.form.get("password", ""),
            **request_meta(),
        )
        if account is not None:
            start_session(account)
            return redirect(next_url or url_for("mail.inbox"))
        error = LOGIN_FAILED
    return render_template(
        "portal/login.html", email=email[:MAX_EMAIL_LENGTH], error=error, next_url=next_url
    )


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    audit.record(
        db_session(),
        "logout",
        actor=current_user.email,
        target=current_user.email,
        account_id=current_user.account_id,
        **request_meta(),
    )
    logout_user()
    session.clear()
    flash(gettext_noop("You have been signed out."))
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    """Register the blueprint, flask-login, and the per-client limit on login attempts."""
    manager = make_login_manager()
    manager.user_loader(load_user)
    manager.init_app(app)
    app.register_blueprint(bp)
    rate = runtime(app).settings.portal.login_rate_limit
    # Wrapping keeps the view's access rule (functools.wraps copies attributes).
    limited: Any = limiter(app).limit(rate, methods=["POST"])(login)
    app.view_functions["auth.login"] = limited
