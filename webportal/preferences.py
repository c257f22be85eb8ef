"""The user's own settings page: portal language and "always encrypt" for their mail."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from gateway import preferences as prefs
from gateway.models import Account
from webportal.access import login_required
from webportal.extensions import db_session, request_meta
from webportal.i18n import gettext_noop

bp = Blueprint("preferences", __name__, url_prefix="/account")

SAVED = gettext_noop("Your settings were saved.")
LANGUAGE_NAMES = {"de": "Deutsch", "en": "English", "fr": "Français"}


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def preferences() -> ResponseReturnValue:
    db = db_session()
    account = db.get(Account, current_user.account_id)
    if account is None:  # deleted while logged in; load_user refuses it next time
        return redirect(url_for("auth.login"))
    if request.method == "POST":
        language = request.form.get("language", "")[:5]
        if language not in prefs.LANGUAGES:
            language = account.language
        wanted = prefs.Preferences(language, request.form.get("always_encrypt") == "on")
        prefs.save(db, account, wanted, **request_meta())
        flash(SAVED)
        return redirect(url_for("preferences.preferences"))
    return render_template(
        "portal/account/preferences.html",
        current=prefs.of(account),
        languages=[(code, LANGUAGE_NAMES[code]) for code in prefs.LANGUAGES],
    )
