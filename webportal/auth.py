"""Portal login and logout for accounts, in two steps when the account has 2FA.

An unknown account and a wrong password get the same page, the same status and
(through the dummy verify of `gateway.logins`, the one login function of the
portal, SMTP and IMAP) the same Argon2 cost. Every attempt goes to the audit log,
which is the account's activity log.

A right password for an account with two-factor login does not log in: it
parks the account id in the (signed) session for a few minutes, and only a
right TOTP or recovery code on the second page starts the session. Failed
passwords and codes count towards the account's lockout (gateway.lockout: one
count for the portal, SMTP and IMAP together; a browser holding the account's
device cookie, which each full login sets (webportal.devices), counts on its own) and
can send a failed-login alert; a login from a new device sends a new-device
alert (gateway.login_alerts).

Each login is a row in the session registry (gateway.sessions); the cookie
holds `"<account id>:<nonce>"` and `load_user` refuses a session that was ended
or sat idle, so ending a session logs that browser out on its next request.
"""

from __future__ import annotations

import datetime as dt
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

from gateway import audit, lockout, login_alerts, logins, sessions, totp
from gateway.addresses import InvalidAddress, normalize_address
from gateway.models import Account
from gateway.runtime import Runtime
from gateway.settings import Settings
from webportal import clock, devices
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
MAX_CODE_LENGTH = 64
MAX_NONCE_LENGTH = 64
LOGIN_FAILED = gettext_noop("Email or password is wrong.")
LOGIN_LOCKED = gettext_noop(
    "Too many failed sign-ins: sign-in to this account is paused for a while."
    " Try again later or ask your administrator."
)
CODE_FAILED = gettext_noop("The code is wrong or was already used.")
CODE_EXPIRED = gettext_noop("The sign-in took too long. Please enter your password again.")
RECOVERY_USED = gettext_noop(
    "You signed in with a recovery code. Each code works once: make new ones in the"
    " security settings before they run out."
)
UNKNOWN_ACTOR = "(not an address)"
# How long a right password waits for its second factor.
PENDING_KEY = "sealgate_2fa"
PENDING_SECONDS = 300


@dataclass(frozen=True)
class PortalUser:
    """The logged-in account as flask-login sees it, detached from any DB session.

    `session_nonce` names this login session (its SHA-256 is the registry row's
    key); `authenticated_at` is when the password was last proven, which
    `fresh_login_required` compares with the clock.
    """

    account_id: int
    email: str
    is_admin: bool
    language: str
    session_nonce: str
    session_id: int
    authenticated_at: dt.datetime

    # flask-login's user protocol (UserMixin, spelt out: it is untyped).
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __repr__(self) -> str:
        return f"PortalUser(account_id={self.account_id}, session_id={self.session_id})"

    def get_id(self) -> str:
        return f"{self.account_id}:{self.session_nonce}"

    @classmethod
    def from_account(
        cls, account: Account, session_nonce: str, session_id: int, authenticated_at: dt.datetime
    ) -> PortalUser:
        return cls(
            account_id=account.id,
            email=account.email,
            is_admin=account.is_admin,
            language=account.language,
            session_nonce=session_nonce,
            session_id=session_id,
            authenticated_at=authenticated_at,
        )


def session_idle_limit(settings: Settings) -> dt.timedelta:
    return dt.timedelta(minutes=settings.portal.session_minutes)


def load_user(user_id: str) -> PortalUser | None:
    account_id, _, nonce = user_id.partition(":")
    if not (account_id.isascii() and account_id.isdigit() and len(account_id) <= 12 and nonce):
        return None
    if len(nonce) > MAX_NONCE_LENGTH:
        return None
    db = db_session()
    active = sessions.lookup(
        db,
        int(account_id),
        nonce,
        now=clock.now(),
        idle=session_idle_limit(runtime().settings),
    )
    if active is None:
        return None
    account = db.get(Account, active.account_id)
    if account is None or account.disabled_at is not None:
        return None
    return PortalUser.from_account(account, nonce, active.id, active.authenticated_at)


@dataclass(frozen=True)
class PasswordCheck:
    """The account when the password was right; `locked` when it was not even checked."""

    account: Account | None
    locked: bool = False
    needs_second_factor: bool = False


def check_login(
    session: so.Session,
    rt: Runtime,
    email: str,
    password: str,
    *,
    ip: str,
    user_agent: str,
    now: dt.datetime,
) -> PasswordCheck:
    """Check the first step through the one login function (`gateway.logins.check`),
    which audits the attempt and counts and alerts a failure.

    `session` is the request's: whatever it holds is committed first, as the check
    runs Argon2 outside any transaction and writes in one of its own (on SQLite a
    write transaction left open here would block that one).
    """
    if session.in_transaction():
        session.commit()
    result = logins.check(
        rt.sessions,
        rt.hasher,
        rt.credentials,
        rt.settings,
        logins.Attempt("portal", email, password, ip, user_agent, devices.verified(now)),
        now=now,
    )
    if result.account_id is None:
        return PasswordCheck(None, locked=result.refusal == "locked")
    account = session.get(Account, result.account_id)
    if account is None or account.disabled_at is not None:
        return PasswordCheck(None)  # deleted or disabled in the meantime
    return PasswordCheck(account, needs_second_factor=result.needs_second_factor)


def _audit_login(
    session: so.Session,
    known: Account | None,
    typed: str,
    *,
    success: bool,
    detail: str,
    ip: str,
    user_agent: str,
    action: str = "login",
) -> None:
    audit.record(
        session,
        action,
        actor=known.email if known else _actor_for(typed),
        target=known.email if known else "",
        account_id=known.id if known else None,
        success=success,
        ip=ip,
        user_agent=user_agent,
        detail=detail,
    )


def _actor_for(typed: str) -> str:
    """An unknown login as typed, only when it is an address: people type passwords there."""
    try:
        return normalize_address(typed)
    except InvalidAddress:
        return UNKNOWN_ACTOR


def start_session(account: Account, *, detail: str = "") -> None:
    """Log the account in: a new registry row, a fresh cookie, an audit entry, maybe an alert."""
    db = db_session()
    settings = runtime().settings
    now = clock.now()
    meta = request_meta()
    # Every factor passed: the count this browser answers to starts afresh. A browser
    # known already has its own; the account's, which others' guesses fill, keeps
    # lengthening its locks (an owner signing in daily must not reset a guesser's).
    lockout.store_for(db, settings.security).clear(devices.lockout_key(account.id, now))
    devices.remember(account.id, now)  # a known client of the account from now on
    # A fresh session at login: nothing planted before it (a fixed session id,
    # a known CSRF token) survives into the logged-in session.
    session.clear()
    nonce = sessions.new_nonce()
    row = sessions.create(db, account.id, nonce, now=now, **meta)
    login_user(PortalUser.from_account(account, nonce, row.id, now), fresh=True)
    session.permanent = True
    audit.record(
        db,
        "login",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        detail=detail,
        **meta,
    )
    if login_alerts.remember_device(db, account.id, meta["ip"], meta["user_agent"], now):
        login_alerts.queue_alert(
            db,
            settings,
            account,
            "new_device",
            login_alerts.LoginContext(ip=meta["ip"], user_agent=meta["user_agent"], at=now),
        )


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
        result = check_login(
            db_session(),
            runtime(),
            email,
            request.form.get("password", ""),
            now=clock.now(),
            **request_meta(),
        )
        account = result.account
        if account is not None and result.needs_second_factor:
            session.clear()
            session[PENDING_KEY] = {
                "account": account.id,
                "since": int(clock.now().timestamp()),
                "next": next_url or "",
            }
            return redirect(url_for("auth.second_factor"))
        if account is not None:
            start_session(account)
            return redirect(next_url or url_for("mail.inbox"))
        error = LOGIN_LOCKED if result.locked else LOGIN_FAILED
    return render_template(
        "portal/login.html", email=email[:MAX_EMAIL_LENGTH], error=error, next_url=next_url
    )


def _pending() -> dict[str, Any] | None:
    """The parked first step, if it is there and young enough."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    since, account_id = pending.get("since"), pending.get("account")
    if not isinstance(since, int) or not isinstance(account_id, int):
        return None
    if not 0 <= clock.now().timestamp() - since <= PENDING_SECONDS:
        return None
    return pending


@bp.route("/login/code", methods=["GET", "POST"])
@public
def second_factor() -> ResponseReturnValue:
    pending = _pending()
    if pending is None:
        if session.pop(PENDING_KEY, None) is not None:
            flash(CODE_EXPIRED)
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        db = db_session()
        rt = runtime()
        now = clock.now()
        meta = request_meta()
        account = db.get(Account, pending["account"])
        if account is None:
            session.pop(PENDING_KEY, None)
            return redirect(url_for("auth.login"))
        if account.disabled_at is not None:
            # Disabled while the code was awaited: a session made now would be a live
            # registry row that an admin's later re-enable would bring back to life.
            session.pop(PENDING_KEY, None)
            _audit_login(
                db, account, account.email, success=False, detail="account disabled", **meta
            )
            flash(LOGIN_FAILED)
            return redirect(url_for("auth.login"))
        counters = lockout.store_for(db, rt.settings.security)
        key = devices.lockout_key(account.id, now)
        if counters.locked_until(key, now) is not None:
            session.pop(PENDING_KEY, None)
            _audit_login(db, account, account.email, success=False, detail="locked", **meta)
            flash(LOGIN_LOCKED)
            return redirect(url_for("auth.login"))
        code = request.form.get("code", "")[:MAX_CODE_LENGTH]
        kind = totp.check_second_factor(db, totp.ring_for(rt.settings), account.id, code, now)
        if kind is not None:
            next_url = safe_next(pending.get("next"))
            if kind == "recovery":
                audit.record(
                    db,
                    "2fa.recovery_code_used",
                    actor=account.email,
                    target=account.email,
                    account_id=account.id,
                    detail=f"{totp.recovery_codes_left(db, account.id)} left",
                    **meta,
                )
            start_session(account, detail="with a recovery code" if kind == "recovery" else "")
            if kind == "recovery":
                flash(RECOVERY_USED)
            return redirect(next_url or url_for("mail.inbox"))
        counters.record_failure(key, now)
        _audit_login(
            db, account, account.email, success=False, detail="wrong second-factor code", **meta
        )
        login_alerts.queue_alert(
            db,
            rt.settings,
            account,
            "failed_login",
            login_alerts.LoginContext(
                ip=meta["ip"], user_agent=meta["user_agent"], at=now, protocol="portal"
            ),
            reason="code",
        )
        error = CODE_FAILED
    return render_template("portal/account/second_factor.html", error=error)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    db = db_session()
    sessions.end(
        db,
        current_user.account_id,
        current_user.session_id,
        reason=sessions.END_LOGOUT,
        now=clock.now(),
    )
    audit.record(
        db,
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
    for endpoint, view in (("auth.login", login), ("auth.second_factor", second_factor)):
        limited: Any = limiter(app).limit(rate, methods=["POST"])(view)
        app.view_functions[endpoint] = limited
