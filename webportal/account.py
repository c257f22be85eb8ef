"""The account's security pages: 2FA, app passwords, passwords, alerts, activity, sessions.

Everything that changes how one logs in (2FA, passwords, app passwords, alert
choices) is `fresh_login_required`: the password must have been proven within
`[security] fresh_login_minutes`, else `reauth` asks for it first. Secrets made
here (the TOTP secret during set-up, recovery codes, app passwords) are shown
in the response that made them and never again; none is put in the session
cookie, a flash message or a redirect URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask.typing import ResponseReturnValue
from flask_login import current_user, logout_user

from gateway import (
    accounts,
    activity,
    app_passwords,
    audit,
    lockout,
    login_alerts,
    secret_key_export,
    sessions,
    totp,
)
from gateway.models import Account, AccountSecurity, Address, AuditEvent
from gateway.passwords import PasswordTooLong
from webportal import after_post, clock, devices
from webportal.access import fresh_login_required, login_required
from webportal.auth import LOGIN_LOCKED, safe_next, session_idle_limit
from webportal.extensions import db_session, limiter, request_meta, runtime
from webportal.i18n import current_language, gettext, gettext_noop
from webportal.ids import page_number

bp = Blueprint("account", __name__, url_prefix="/account")

noop = gettext_noop
MIN_PASSWORD_LENGTH = 10
MAX_FIELD = 1100
ACTIVITY_PER_PAGE = 50
# The password-changed page: when this browser changed the password (a time, no secret).
CHANGED_AT_KEY = "password_changed_at"
CHANGED_PAGE_SECONDS = 3600

WRONG_PASSWORD = noop("The password is wrong.")
WRONG_CODE = noop("The code is wrong or was already used.")
PASSWORD_TOO_SHORT = noop("The new password must have at least {count} characters.")
PASSWORD_TOO_LONG = noop("The new password is too long.")
PASSWORDS_DIFFER = noop("The two new passwords are not the same.")
SET_UP_EXPIRED = noop(
    "Your two-factor set-up had expired. Scan the new code below and enter a code from it."
)

ACTION_LABELS = {
    "login": noop("Sign-in"),
    "login.password": noop("Password accepted, second factor asked"),
    "logout": noop("Sign-out"),
    "reauth": noop("Password confirmed"),
    "account.add": noop("Account created"),
    "account.password": noop("Account password changed"),
    "account.unlock": noop("Sign-in unlocked by an administrator"),
    # A purged domain took the login's domain: it is one of the addresses kept now.
    "account.login": noop("Sign-in name changed by an administrator"),
    "address.add": noop("Address added"),
    "address.password": noop("Address password changed"),
    "2fa.enable": noop("Two-factor login turned on"),
    "2fa.disable": noop("Two-factor login turned off"),
    "2fa.recovery_codes": noop("New recovery codes made"),
    "2fa.recovery_code_used": noop("Recovery code used"),
    "app_password.create": noop("App password created"),
    "app_password.revoke": noop("App password revoked"),
    "app_password.revoke_all": noop("All app passwords revoked"),
    "smtp.auth": noop("Mail program sign-in"),
    "imap.auth": noop("Mail program sign-in"),
    "session.end": noop("Session ended"),
    "session.end_others": noop("All other sessions ended"),
    "alerts.settings": noop("Alert settings changed"),
    "key.create": noop("Encryption key created"),
    "key.rotate": noop("Encryption key replaced"),
    "key.revoke": noop("Encryption key revoked"),
    "key.export": noop("Secret key downloaded"),
}
FAILED_LOGIN_LABELS = {
    "locked": noop("Sign-in refused: too many failed attempts"),
    "account locked": noop("Sign-in refused: too many failed attempts"),
    "wrong second-factor code": noop("Sign-in failed: wrong two-factor code"),
}
FAILED_LOGIN = noop("Sign-in failed: wrong password")
APP_PASSWORD_LOGIN = noop("Mail program sign-in with the app password “{name}”")


def _account() -> Account:
    account = db_session().get(Account, current_user.account_id)
    if account is None:  # deleted while logged in; load_user refuses it next time
        raise LookupError("account vanished")
    return account


def _now() -> dt.datetime:
    return clock.now()


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FIELD]


def _check_current_password(account: Account, typed: str, *, purpose: str) -> str | None:
    """None when `typed` is the account password; else the error to show (translated)."""

    def right() -> bool:
        # Argon2 outside any transaction (as in gateway.logins): what the request read so
        # far is committed first, so no SQLite write lock is held while it runs.
        stored = account.password_hash
        db_session().commit()
        return runtime().hasher.verify(stored, typed)

    return _reauthenticate(
        account, right, detail=f"wrong password ({purpose})", wrong=WRONG_PASSWORD
    )


def _check_code(account: Account, typed: str, *, purpose: str) -> str | None:
    """None when `typed` is a current 2FA code (or an unused recovery code); else the
    error to show (translated). A fresh login needs only the password, so the code is
    all that stands between a stolen cookie plus password and what it guards."""

    def right() -> bool:
        ring = totp.ring_for(runtime().settings)
        return totp.check_second_factor(db_session(), ring, account.id, typed, _now()) is not None

    detail = f"wrong second-factor code ({purpose})"
    return _reauthenticate(account, right, detail=detail, wrong=EXPORT_WRONG_CODE)


def _reauthenticate(
    account: Account, right: Callable[[], bool], *, detail: str, wrong: str
) -> str | None:
    """None when `right()`; else the error to show. Failures count towards the account's
    one lockout, as wrong logins over any protocol do, and are audited: a stolen session
    must not become a free oracle for the password or the code."""
    db = db_session()
    now = _now()
    counters = lockout.store_for(db, runtime().settings.security)
    key = devices.lockout_key(account.id, now)
    if counters.locked_until(key, now) is not None:
        return gettext(LOGIN_LOCKED)
    if right():
        return None
    counters.record_failure(key, now)
    audit.record(
        db,
        "reauth",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        success=False,
        detail=detail,
        **request_meta(),
    )
    return gettext(wrong)


def _new_password_error(new: str, repeated: str) -> str | None:
    if len(new) < MIN_PASSWORD_LENGTH:
        return gettext(PASSWORD_TOO_SHORT, count=MIN_PASSWORD_LENGTH)
    if len(new.encode("utf-8")) > runtime().settings.passwords.max_password_bytes:
        return gettext(PASSWORD_TOO_LONG)
    if new != repeated:
        return gettext(PASSWORDS_DIFFER)
    return None


# -- overview ---------------------------------------------------------------------


@bp.get("/security")
@login_required
def security() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    row = db.scalar(sa.select(AccountSecurity).where(AccountSecurity.account_id == account.id))
    return render_template(
        "portal/account/security.html",
        totp_since=totp.enabled_since(db, account.id),
        codes_left=totp.recovery_codes_left(db, account.id),
        app_password_count=len(app_passwords.list_for(db, account.id)),
        alert_new_device=row.alert_new_device if row else True,
        alert_failed_login=row.alert_failed_login if row else True,
        addresses=accounts.owned_addresses(db, account.id),
    )


@bp.post("/alerts")
@fresh_login_required
def alerts() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    new_device = request.form.get("new_device") == "on"
    failed_login = request.form.get("failed_login") == "on"
    login_alerts.set_preferences(db, account.id, new_device=new_device, failed_login=failed_login)
    audit.record(
        db,
        "alerts.settings",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        detail=f"new device {'on' if new_device else 'off'}, "
        f"failed login {'on' if failed_login else 'off'}",
        **request_meta(),
    )
    flash(noop("Your alert settings were saved."))
    return redirect(url_for("account.security"))


@bp.route("/confirm", methods=["GET", "POST"])
@login_required
def reauth() -> ResponseReturnValue:
    """Prove the password again, so the session counts as a fresh login."""
    next_url = safe_next(request.args.get("next"))
    error = None
    if request.method == "POST":
        account = _account()
        error = _check_current_password(account, _field("password"), purpose="confirm")
        if error is None:
            db = db_session()
            sessions.confirm_password(db, current_user.session_id, _now())
            audit.record(
                db,
                "reauth",
                actor=account.email,
                target=account.email,
                account_id=account.id,
                **request_meta(),
            )
            return redirect(next_url or url_for("account.security"))
    return render_template("portal/account/reauth.html", error=error, next_url=next_url)


# -- two-factor login -------------------------------------------------------------


@bp.route("/2fa/enable", methods=["GET", "POST"])
@fresh_login_required
def enable_2fa() -> ResponseReturnValue:
    db = db_session()
    rt = runtime()
    account = _account()
    if totp.is_enabled(db, account.id):
        flash(noop("Two-factor login is already on."))
        return redirect(url_for("account.security"))
    ring = totp.ring_for(rt.settings)
    error = None
    if request.method == "POST":
        # Shown with the codes: the live sessions on other devices, which turning 2FA on ends.
        others = [
            row.id
            for row in sessions.list_active(
                db, account.id, now=_now(), idle=session_idle_limit(rt.settings)
            )
            if row.id != current_user.session_id
        ]
        try:
            codes = totp.confirm_enrolment(
                db,
                ring,
                account,
                _field("code"),
                _now(),
                keep_session_id=current_user.session_id,
                **request_meta(),
            )
        except totp.SetUpExpired:
            # Its secret no longer opens and was dropped: the page shows a new one.
            flash(SET_UP_EXPIRED)
            return redirect(url_for("account.enable_2fa"))
        except totp.TotpError:
            # No set-up waiting (it expired, or the form came from elsewhere): start over.
            return redirect(url_for("account.enable_2fa"))
        if codes is not None:
            return render_template(
                "portal/account/recovery_codes.html",
                codes=codes,
                just_enabled=True,
                other_sessions_ended=len(others),
            )
        error = gettext(WRONG_CODE)
    secret = totp.start_enrolment(db, ring, account.id, _now())
    uri = totp.provisioning_uri(secret, account.email, rt.settings.security.totp_issuer)
    return render_template(
        "portal/account/enable_2fa.html",
        qr=totp.qr_svg_data_uri(uri),
        secret=totp.format_secret(secret),
        error=error,
    )


@bp.route("/2fa/disable", methods=["GET", "POST"])
@fresh_login_required
def disable_2fa() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    if not totp.is_enabled(db, account.id):
        return redirect(url_for("account.security"))
    error = None
    if request.method == "POST":
        error = _check_current_password(account, _field("password"), purpose="2fa off")
        if error is None:
            now = _now()
            ring = totp.ring_for(runtime().settings)
            if totp.check_second_factor(db, ring, account.id, _field("code"), now) is None:
                counters = lockout.store_for(db, runtime().settings.security)
                counters.record_failure(devices.lockout_key(account.id, now), now)
                error = gettext(WRONG_CODE)
            else:
                totp.disable(db, account, now, **request_meta())
                flash(
                    noop("Two-factor login is off. Mail programs can use address passwords again.")
                )
                return redirect(url_for("account.security"))
    return render_template("portal/account/disable_2fa.html", error=error)


@bp.post("/2fa/recovery-codes")
@fresh_login_required
def new_recovery_codes() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    if not totp.is_enabled(db, account.id):
        return redirect(url_for("account.security"))
    codes = totp.replace_recovery_codes(db, account.id, _now())
    after_post.come_back_to(url_for("account.security"))
    audit.record(
        db,
        "2fa.recovery_codes",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        **request_meta(),
    )
    return render_template("portal/account/recovery_codes.html", codes=codes, just_enabled=False)


# -- app passwords ----------------------------------------------------------------


def _app_passwords_page(
    *, created: str | None = None, created_name: str = "", error: str | None = None
) -> str:
    db = db_session()
    account = _account()
    return render_template(
        "portal/account/app_passwords.html",
        rows=app_passwords.list_for(db, account.id),
        two_factor=totp.is_enabled(db, account.id),
        created=created,
        created_name=created_name,
        error=error,
        max_name=app_passwords.MAX_NAME_LENGTH,
    )


@bp.get("/app-passwords")
@login_required
def app_passwords_page() -> ResponseReturnValue:
    return _app_passwords_page()


@bp.post("/app-passwords")
@fresh_login_required
def create_app_password() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    name = " ".join(_field("name").split())
    if not name or len(name) > app_passwords.MAX_NAME_LENGTH or not name.isprintable():
        error = gettext(
            "Give the app password a name of at most {count} characters, such as the mail"
            " program's.",
            count=app_passwords.MAX_NAME_LENGTH,
        )
        return _app_passwords_page(error=error), 400
    if len(app_passwords.list_for(db, account.id)) >= app_passwords.MAX_PER_ACCOUNT:
        error = gettext(
            "An account can have at most {count} app passwords; revoke the ones you no longer use.",
            count=app_passwords.MAX_PER_ACCOUNT,
        )
        return _app_passwords_page(error=error), 400
    # With two-factor login on, an app password is a way in without a code: making one
    # asks for a code, as the secret-key download does (a fresh login asks only the
    # password, so a stolen cookie plus the password must not be enough).
    if totp.is_enabled(db, account.id) and (
        refusal := _check_code(account, _field("code"), purpose="app password")
    ):
        return _app_passwords_page(error=refusal), 400
    row, password = app_passwords.create(db, account, name, _now(), **request_meta())
    return _app_passwords_page(
        created=app_passwords.format_for_display(password), created_name=row.name
    )


@bp.post("/app-passwords/<id:app_password_id>/revoke")
@fresh_login_required
def revoke_app_password(app_password_id: int) -> ResponseReturnValue:
    try:
        app_passwords.revoke(db_session(), _account(), app_password_id, **request_meta())
    except app_passwords.AppPasswordError:
        flash(noop("There is no such app password."))
    else:
        flash(noop("The app password was revoked."))
    return redirect(url_for("account.app_passwords_page"))


@bp.post("/app-passwords/revoke-all")
@fresh_login_required
def revoke_all_app_passwords() -> ResponseReturnValue:
    app_passwords.revoke_all(db_session(), _account(), **request_meta())
    flash(noop("All app passwords were revoked."))
    return redirect(safe_next(request.form.get("back")) or url_for("account.app_passwords_page"))


# -- passwords --------------------------------------------------------------------


@bp.route("/password", methods=["GET", "POST"])
@fresh_login_required
def change_password() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        account = _account()
        error = _check_current_password(account, _field("current"), purpose="password change")
        if error is None:
            error = _new_password_error(_field("new"), _field("repeat"))
        if error is None:
            db = db_session()
            rt = runtime()
            try:
                accounts.set_account_password(
                    db, rt.hasher, account, _field("new"), actor=account.email
                )
            except PasswordTooLong:
                error = gettext(PASSWORD_TOO_LONG)
            else:
                # The password just proven is the new one: this session is fresh.
                sessions.confirm_password(db, current_user.session_id, _now())
                cookie_session[CHANGED_AT_KEY] = int(_now().timestamp())
                return redirect(url_for("account.password_changed"), code=303)
    return render_template("portal/account/password.html", error=error)


@bp.get("/password/changed")
@login_required
def password_changed() -> ResponseReturnValue:
    """The steps after a password change, on a page of its own (Post/Redirect/Get): Back
    to it from the step a user takes next (ending the other sessions, say) asked to send
    the change form again, whose old password then counted as a wrong one. It is shown
    for a while after this browser changed the password; later, the Security page."""
    changed = cookie_session.get(CHANGED_AT_KEY)
    age = _now().timestamp() - changed if isinstance(changed, int) else None
    if age is None or not 0 <= age <= CHANGED_PAGE_SECONDS:
        cookie_session.pop(CHANGED_AT_KEY, None)
        return redirect(url_for("account.security"))
    db = db_session()
    account = _account()
    active = sessions.list_active(
        db, account.id, now=_now(), idle=session_idle_limit(runtime().settings)
    )
    return render_template(
        "portal/account/password_changed.html",
        other_sessions=sum(1 for row in active if row.id != current_user.session_id),
        app_password_count=len(app_passwords.list_for(db, account.id)),
        two_factor=totp.is_enabled(db, account.id),
    )


@bp.route("/address-password", methods=["GET", "POST"])
@fresh_login_required
def address_password() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    owned = accounts.owned_addresses(db, account.id)
    error = None
    chosen = request.values.get("address", owned[0] if owned else "")
    if request.method == "POST":
        row = db.scalar(
            sa.select(Address).where(Address.account_id == account.id, Address.address == chosen)
        )
        if row is None:
            error = gettext("Choose one of your addresses.")
        else:
            error = _check_current_password(account, _field("current"), purpose="address password")
            if error is None:
                error = _new_password_error(_field("new"), _field("repeat"))
            if error is None:
                try:
                    accounts.set_address_password(
                        db, runtime().hasher, row, _field("new"), actor=account.email
                    )
                except PasswordTooLong:
                    error = gettext(PASSWORD_TOO_LONG)
                else:
                    flash(noop("The address password was changed. Enter it in your mail programs."))
                    return redirect(url_for("account.security"))
    return render_template(
        "portal/account/address_password.html",
        addresses=owned,
        chosen=chosen,
        error=error,
        two_factor=totp.is_enabled(db, account.id),
    )


# -- secret key download ----------------------------------------------------------

PASSPHRASE_ERRORS = {
    "short": noop("Choose a passphrase of at least {count} characters."),
    "long": noop("The passphrase is too long."),
    "mismatch": noop("The two passphrases are not the same."),
}
EXPORT_NO_KEY = noop("This address has no key yet: it gets one with its first encrypted mail.")
EXPORT_WRONG_CODE = noop("The code is wrong. Enter the current code from your authenticator app.")


@bp.route("/secret-key", methods=["GET", "POST"])
@fresh_login_required
def secret_key() -> ResponseReturnValue:
    """Download an address's secret keys for a mail program, locked with a passphrase."""
    db = db_session()
    account = _account()
    owned = accounts.owned_addresses(db, account.id)
    two_factor = totp.is_enabled(db, account.id)
    chosen = request.values.get("address", owned[0] if owned else "")
    error = None
    if request.method == "POST":
        rt = runtime()
        row = db.scalar(
            sa.select(Address).where(Address.account_id == account.id, Address.address == chosen)
        )
        problem = secret_key_export.check_passphrase(_field("passphrase"), _field("repeat"))
        if row is None:
            error = gettext("Choose one of your addresses.")
        elif problem is not None:
            error = gettext(
                PASSPHRASE_ERRORS[problem], count=secret_key_export.MIN_PASSPHRASE_LENGTH
            )
        elif two_factor and (
            refusal := _check_code(account, _field("code"), purpose="secret key download")
        ):
            error = refusal
        else:
            try:
                armored = secret_key_export.export_keys(
                    db,
                    rt.ring.get(),
                    rt.settings,
                    account,
                    row,
                    _field("passphrase"),
                    now=_now(),
                    **request_meta(),
                )
            except secret_key_export.ExportRefused:
                error = gettext(EXPORT_NO_KEY)
            else:
                response = Response(armored, mimetype="application/pgp-keys")
                response.headers["Content-Disposition"] = (
                    f'attachment; filename="{row.address}-secret-key.asc"'
                )
                response.headers["Cache-Control"] = "no-store"
                return response
    return render_template(
        "portal/account/secret_key.html",
        addresses=owned,
        chosen=chosen,
        error=error,
        two_factor=two_factor,
        min_length=secret_key_export.MIN_PASSPHRASE_LENGTH,
    ), (400 if error else 200)


# -- activity and sessions --------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    label: str
    success: bool
    ip: str
    device: str


# Mail-program logins name their protocol: failures of every protocol count towards
# one lockout (gateway.lockout), so the owner can tell which program or door it was.
MAIL_PROTOCOLS = {"smtp.auth": "SMTP", "imap.auth": "IMAP"}


def _entry(event: AuditEvent, language: str) -> Entry:
    if event.action == "login" and not event.success:
        label = gettext(FAILED_LOGIN_LABELS.get(event.detail, FAILED_LOGIN))
    elif event.action in MAIL_PROTOCOLS and event.detail.startswith("app password "):
        name = event.detail.removeprefix("app password ").strip("'\"")
        label = gettext(APP_PASSWORD_LOGIN, name=name)
    elif event.action in MAIL_PROTOCOLS and event.detail == "account locked":
        label = gettext(FAILED_LOGIN_LABELS["locked"])
    elif event.action in ACTION_LABELS:
        label = gettext(ACTION_LABELS[event.action])
    else:
        label = event.action
    if event.action in MAIL_PROTOCOLS:
        label = f"{label} ({MAIL_PROTOCOLS[event.action]})"
    device = login_alerts.describe_agent(event.user_agent, language) if event.user_agent else ""
    return Entry(event.at, label, event.success, event.ip, device)


@bp.get("/activity")
@login_required
def activity_page() -> ResponseReturnValue:
    db = db_session()
    rt = runtime()
    page = activity.recent(
        db,
        current_user.account_id,
        accounts.owned_addresses(db, current_user.account_id),
        now=_now(),
        days=rt.settings.security.activity_days,
        page=page_number(),
        per_page=ACTIVITY_PER_PAGE,
    )
    language = current_language()
    return render_template(
        "portal/account/activity.html",
        entries=[_entry(event, language) for event in page.events],
        page=page.page,
        pages=page.pages,
        days=rt.settings.security.activity_days,
    )


@bp.get("/sessions")
@login_required
def sessions_page() -> ResponseReturnValue:
    db = db_session()
    rt = runtime()
    rows = sessions.list_active(
        db, current_user.account_id, now=_now(), idle=session_idle_limit(rt.settings)
    )
    language = current_language()
    return render_template(
        "portal/account/sessions.html",
        rows=[
            {
                "id": row.id,
                "device": login_alerts.describe_agent(row.user_agent, language),
                "ip": row.ip,
                "created_at": row.created_at,
                "last_seen_at": row.last_seen_at,
                "current": row.id == current_user.session_id,
            }
            for row in rows
        ],
    )


@bp.post("/sessions/<id:session_id>/end")
@login_required
def end_session(session_id: int) -> ResponseReturnValue:
    db = db_session()
    account = _account()
    ended = sessions.end(db, account.id, session_id, reason=sessions.END_BY_USER, now=_now())
    if ended:
        audit.record(
            db,
            "session.end",
            actor=account.email,
            target=account.email,
            account_id=account.id,
            detail=f"session {session_id}",
            **request_meta(),
        )
    if session_id == current_user.session_id:
        logout_user()
        cookie_session.clear()
        flash(noop("You have been signed out."))
        return redirect(url_for("auth.login"))
    flash(noop("The session was ended.") if ended else noop("That session had already ended."))
    return redirect(url_for("account.sessions_page"))


@bp.post("/sessions/end-others")
@login_required
def end_other_sessions() -> ResponseReturnValue:
    db = db_session()
    account = _account()
    count = sessions.end_all(
        db,
        account.id,
        reason=sessions.END_BY_USER,
        now=_now(),
        except_id=current_user.session_id,
    )
    audit.record(
        db,
        "session.end_others",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        detail=f"{count} ended",
        **request_meta(),
    )
    flash(noop("All other sessions were ended."))
    return redirect(safe_next(request.form.get("back")) or url_for("account.sessions_page"))


# The views that check the account password or a second-factor code: each is a login
# in all but name, so each POST meets the sign-in form's per-client limit.
PASSWORD_CHECKS = (
    "account.reauth",
    "account.change_password",
    "account.disable_2fa",
    "account.address_password",
    "account.secret_key",
)


def init_app(app: Flask) -> None:
    """Register the blueprint; limit the password and code checks per client, as sign-in is.

    Their failures count towards the account's lockout already; without the limit a
    stolen session cookie could still spend the lockout's whole allowance in a burst."""
    app.register_blueprint(bp)
    rate = runtime(app).settings.portal.login_rate_limit
    for endpoint in PASSWORD_CHECKS:
        # Wrapping keeps the view's access rule (functools.wraps copies attributes).
        limited: Any = limiter(app).limit(rate, methods=["POST"])(app.view_functions[endpoint])
        app.view_functions[endpoint] = limited
