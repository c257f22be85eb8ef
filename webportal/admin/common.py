"""What every console view shares: the acting admin, the object its URL names, the form
helpers, the error flash."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.orm as so
from flask import abort, flash, request
from flask_login import current_user

from gateway.admin import Actor, AdminError, NotFound, NotHosted
from webportal import clock, ids
from webportal.extensions import db_session, request_meta, runtime

MAX_FIELD = 1100
ERROR = "error"

K = TypeVar("K")
T = TypeVar("T")


def actor() -> Actor:
    """The logged-in admin and their client, for the audit log."""
    meta = request_meta()
    acting = Actor(current_user.email, ip=meta["ip"], user_agent=meta["user_agent"])
    acting.stamp(db_session())
    return acting


def found(lookup: Callable[[so.Session, K], T], key: K) -> T:
    """The account, address, domain or job the URL names, looked up by `lookup`; when it
    is not there, the not-found page (404), for a form posted to it as for a page."""
    try:
        return lookup(db_session(), key)
    except NotFound:
        abort(404)


def now() -> dt.datetime:
    return clock.now()


def field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FIELD].strip()


def checked(name: str) -> bool:
    return request.form.get(name) == "on"


def page_arg() -> int:
    return ids.page_number()


def per_page() -> int:
    return runtime().settings.admin.per_page


def fail(exc: AdminError) -> None:
    """Show why, and undo whatever the request changed before the refusal."""
    db_session().rollback()
    flash(f"{exc}{remedy(exc)}", ERROR)


def remedy(exc: AdminError) -> str:
    """What to do about a refusal, in the console's terms.

    The shared layer names no remedy where it depends on the front end; the
    command line adds its command and option (sealgate/cli/base.py), the console
    its page and checkbox here.
    """
    if isinstance(exc, NotHosted) and exc.login:
        return (
            " (add the domain on the Domains page first, or tick “Allow a login outside"
            " the hosted domains”)"
        )
    if isinstance(exc, NotHosted):
        return " (add it on the Domains page first)"
    return ""
