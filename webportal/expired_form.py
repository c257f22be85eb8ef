"""A form of typed text posted after its CSRF token expired comes back filled in, undone.

A token lasts `[portal] session_minutes`: a message, a secure-page answer or an away
message written for longer was refused with the "Form expired" page, and what was
written lived on only in the browser's Back. The refusal stands (nothing the post
asks is done, and the request's database work is rolled back with it), but for the
forms of such text (`refill_with`, per endpoint) the answer is the same form again,
filled in with what was posted, with a fresh token and a note: sent again, it goes.

Only a token that is this session's own and merely old brings the text back: a
missing, forged or foreign token, or a cross-site post, still gets the error page,
so no other site can make the portal show a form filled with its text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.exceptions import HTTPException

from gateway import outages
from webportal import typed_text
from webportal.i18n import gettext, gettext_noop

log = logging.getLogger(__name__)

# Flask-WTF's reason for a token that is well formed and this session's, but too old.
EXPIRED = "The CSRF token has expired."
# The age limit put aside when checking that an expired token is otherwise good.
NO_AGE_LIMIT = 100 * 365 * 24 * 3600
NOTE = gettext_noop(
    "This page was open too long for its form to be sent, so nothing was done. What you"
    " wrote is back in the form: check it and send it again."
)

Refill = Callable[[str], ResponseReturnValue | None]
_REFILLS = "sealgate.expired_form_refills"


def refill_with(app: Flask, endpoint: str, refill: Refill) -> None:
    """For a post to `endpoint` refused as expired, `refill(note)` gives the page: the
    form filled in from `request.form`, `note` said, nothing done; or None (no such
    page for this visitor: not logged in, no grant), and the error page is given."""
    app.extensions.setdefault(_REFILLS, {})[endpoint] = refill


def answer(exc: CSRFError) -> ResponseReturnValue | None:
    """The form back for a post refused only because its token is old, else None.

    Called by the CSRF error handler, after the request's database work was rolled
    back; the view never ran."""
    refill: Refill | None = current_app.extensions.get(_REFILLS, {}).get(request.endpoint or "")
    if refill is None or exc.description != EXPIRED or not own_token():
        return None
    try:
        typed_text.screen()  # NULs as in any post of this form (its hook has not run)
        return refill(gettext(NOTE))
    except HTTPException:  # the form's object is gone, or not this visitor's
        return None
    except Exception as exc:
        if outages.classify(exc) is not None:
            raise  # the outage page, which gives the text back its own way
        # The error page, logged by endpoint: a secure page's URL holds its token.
        log.exception("the expired form of %s could not be given back", request.endpoint)
        return None


def own_token() -> bool:
    """Whether the posted token is this session's own, its age put aside (also asked by
    webportal.outage_form before it shows posted text back)."""
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    try:
        validate_csrf(request.form.get(field, ""), time_limit=NO_AGE_LIMIT)
    except ValueError:  # wtforms.ValidationError: missing, forged, foreign
        return False
    return True
