"""Webmail: the message list of the account's addresses (reading and sending come later)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from gateway.mailbox import INBOX
from gateway.mailbox_queries import list_folder
from webportal.access import login_required, public
from webportal.extensions import db_session
from webportal.i18n import current_language, gettext

bp = Blueprint("mail", __name__)

PER_PAGE = 50


@bp.get("/")
@public
def index() -> ResponseReturnValue:
    return redirect(url_for("mail.inbox"))


@bp.get("/inbox")
@login_required
def inbox() -> ResponseReturnValue:
    page = request.args.get("page", 1, type=int)
    folder = list_folder(db_session(), current_user.account_id, INBOX, page, PER_PAGE)
    return render_template("portal/inbox.html", folder=folder)


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
