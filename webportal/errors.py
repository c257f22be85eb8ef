"""Friendly error pages: every HTTP error and every unexpected exception gets a page.

No traceback, exception text or request data ever reaches the browser; the
unexpected ones are logged (by Flask, with the traceback) for the admin. Each
handler first rolls back the request's database work.

An outage (the database, the disk or the master key ring away, gateway.outages) is
no bug: a 503 page with Retry-After, in the browser's language (the account's cannot
be loaded), and one log line per outage rather than a traceback per request.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, render_template
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from gateway import outages
from webportal import expired_form, outage_form
from webportal.bodies import UnreadableForm
from webportal.extensions import discard_db_session
from webportal.i18n import browser_language, gettext, gettext_noop

log = logging.getLogger(__name__)

noop = gettext_noop
PAGES: dict[int, tuple[str, str]] = {
    400: (noop("Bad request"), noop("The request could not be understood.")),
    403: (noop("Access denied"), noop("You do not have access to this page.")),
    404: (noop("Page not found"), noop("There is no page at this address.")),
    405: (noop("Method not allowed"), noop("This page cannot be used that way.")),
    413: (noop("Request too large"), noop("What you sent is larger than this server accepts.")),
    429: (
        noop("Too many attempts"),
        noop("Too many requests from your network. Please wait a few minutes and try again."),
    ),
    500: (
        noop("Something went wrong"),
        noop("The server could not complete your request. Please try again later."),
    ),
}
CSRF_PAGE = (
    noop("Form expired"),
    noop(
        "This form has expired or was sent from another site."
        " Go back, reload the page and try again."
    ),
)
UNREADABLE_FORM_PAGE = (
    noop("Bad request"),
    noop("The form data could not be read. Go back, reload the page and send the form again."),
)
OUTAGE_PAGE = (
    noop("Temporarily unavailable"),
    noop(
        "The service is temporarily unavailable, so your request was not carried out."
        " Please try again in a few minutes."
    ),
)
# What the 503 asks a browser or a monitor to wait before trying again.
OUTAGE_RETRY_AFTER = 60

# Last resort when even the error template fails (a broken database while
# loading the user, say): static text, nothing from the request.
FALLBACK_HTML = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title>'
    "</head><body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>"
)


def render_error(
    code: int, title: str, message: str, kept: list[tuple[str, str]] | None = None
) -> Response:
    """The error page; `kept` is what a post held, shown read-only (an outage's)."""
    try:
        body = render_template(
            "portal/error.html",
            code=code,
            title=gettext(title),
            message=gettext(message),
            # A server error may come from the database: do not load the user again.
            show_account=code < 500,
            kept=kept or [],
            kept_note=gettext(outage_form.NOTE) if kept else "",
        )
    except Exception:
        log.exception("rendering the error page for %s failed", code)
        body = FALLBACK_HTML
    return Response(body, status=code, mimetype="text/html")


def _http_error(exc: HTTPException) -> Response:
    discard_db_session()
    code = exc.code or 500
    title, message = PAGES.get(code, PAGES[400] if code < 500 else PAGES[500])
    response = render_error(code, title, message)
    if code == 405 and exc.response is None:
        allowed = exc.get_headers()
        for name, value in allowed:
            if name.lower() == "allow":
                response.headers["Allow"] = value
    return response


def _rate_limited(exc: RateLimitExceeded) -> Response:
    discard_db_session()
    response = render_error(429, *PAGES[429])
    # The window length: by then at least one counted attempt has aged out.
    response.headers["Retry-After"] = str(exc.limit.limit.get_expiry())
    return response


def _csrf_error(exc: CSRFError) -> Response:
    discard_db_session()
    try:
        again = expired_form.answer(exc)
    except Exception as error:
        if outages.report(error) is None:
            raise
        return outage_page()  # the form back from the post alone, or its text to copy
    if again is not None:  # the form of typed text back, filled in (nothing done)
        return current_app.make_response(again)
    return render_error(400, *CSRF_PAGE)


def _unreadable_form(_exc: UnreadableForm) -> Response:
    discard_db_session()
    return render_error(400, *UNREADABLE_FORM_PAGE)


def _server_error(exc: InternalServerError) -> Response:
    original = exc.original_exception
    outage = outages.classify(original) if original is not None else None
    if outage is not None:
        return outage_page()  # logged by Portal.log_exception
    discard_db_session()
    return render_error(500, *PAGES[500])


def outage_page() -> Response:
    """The 503 page for a request that met an outage (reported by the caller); for a
    post of typed text, its form filled in again or what it held to copy
    (webportal.outage_form)."""
    try:
        discard_db_session()
    except Exception as exc:
        if outages.classify(exc) is None:
            raise
    if "sealgate_language" not in g:
        g.sealgate_language = browser_language()
    if "_login_user" not in g:
        # Flask-Login's template context loads the user, which needs the database:
        # the page is drawn for nobody in particular.
        g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    again = outage_form.answer()
    if again is not None:
        response = current_app.make_response(again)
        response.status_code = 503
    else:
        response = render_error(503, *OUTAGE_PAGE, kept=outage_form.kept_texts())
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(UnreadableForm, _unreadable_form)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(InternalServerError, _server_error)
