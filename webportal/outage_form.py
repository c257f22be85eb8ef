"""A form of typed text posted during an outage comes back with what was posted, undone.

A message sent from the webmail, a secure-page answer or an away message that met an
outage (gateway.outages: the database, the disk or the master key ring away) got the
bare 503 page, and what was written lived on only in the browser's Back. The 503 stands
(status and Retry-After; nothing of the post is done: its transaction is rolled back, and
gateway.compose.send commits all or nothing), but the page now gives the text back:

- a form that can be drawn without the database (`refill_with`, per endpoint: the
  compose form, from the post alone) comes back filled in, with `NOTE` said;
- any other form of typed text (webportal.typed_text names their fields) gets the 503
  page with what was posted in read-only boxes, to copy (`kept_texts`).

As for an expired form (webportal.expired_form), only a post carrying this session's
own token gets its text back: no other site can make the portal show its text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue

from gateway import outages
from webportal import expired_form, typed_text
from webportal.i18n import gettext, gettext_noop

log = logging.getLogger(__name__)

NOTE = gettext_noop(
    "The server cannot store or send anything right now, so nothing was sent."
    " Try again in a minute: what you wrote is kept here."
)
# Typed, but not shown again outside its own form (a secure-page password).
NEVER_SHOWN = frozenset({"password"})

Refill = Callable[[str], ResponseReturnValue]
_REFILLS = "sealgate.outage_form_refills"


def refill_with(app: Flask, endpoint: str, refill: Refill) -> None:
    """For a post to `endpoint` that met an outage, `refill(note)` gives the form filled
    in from `request.form`, `note` said, drawn without the database (the account is
    not loaded: `current_user` is anonymous)."""
    app.extensions.setdefault(_REFILLS, {})[endpoint] = refill


def _own_post() -> bool:
    """Whether this request is a post of typed text with this session's own token."""
    if request.method != "POST" or not typed_text.kept_fields(request.endpoint or ""):
        return False
    try:
        typed_text.screen()  # NULs as in any post of this form (its hook may not have run)
    except Exception:  # noqa: BLE001  (a NUL elsewhere: the bare 503 page)
        return False
    return expired_form.own_token()


def answer() -> ResponseReturnValue | None:
    """The form back, filled in from the post, for an outage page; else None.

    Called by webportal.errors.outage_page after the request's database work was
    discarded; a form that cannot be drawn is logged (unless the outage stopped it),
    and None is given."""
    refill: Refill | None = current_app.extensions.get(_REFILLS, {}).get(request.endpoint or "")
    if refill is None or not _own_post():
        return None
    # Drawn for nobody in particular, even when the account was loaded before the
    # outage began: the page's account parts (its folders) would need the database.
    g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    try:
        return refill(gettext(NOTE))
    except Exception as exc:  # the page with the text to copy instead; logged by endpoint
        if outages.classify(exc) is None:
            log.exception("the form of %s could not be given back in an outage", request.endpoint)
        return None


def kept_texts() -> list[tuple[str, str]]:
    """(field, text) of what this post's typed-text fields hold, in the form's order,
    for the 503 page to show read-only; empty when nothing may be shown back."""
    if not _own_post():
        return []
    kept = typed_text.kept_fields(request.endpoint or "") - NEVER_SHOWN
    return [
        (name, value)
        for name, values in request.form.lists()
        if name in kept
        for value in values
        if value.strip()
    ]
