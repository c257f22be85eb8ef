"""A NUL in a request is refused, except in text a person writes at length: that comes back.

No text a person types holds a NUL, and no PostgreSQL text column takes one: a request
whose query string, path or form fields carry one is a bad request, answered before any
view reads it (a filter with %00 was a 500 on PostgreSQL).

Where someone writes at length (an answer on the secure page, a message in the webmail,
an away message) that refusal lost what was written: the generic 400 page, and the text
gone, for one NUL pasted from a PDF or a terminal, or put there by a script. The fields
of those forms are named per endpoint (`keep_fields`); in them each NUL becomes U+FFFD
before any view reads the form, and `replaced()` says how many there were. The view then
gives the form back filled in, with `note()` naming the problem, and acts on nothing
(that text has not been seen by its writer as it now reads); sent again, it goes as it
reads. Every other control character is left to each form's own checks: an address
field refuses one by name, a text body carries it.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, abort, current_app, g, request
from werkzeug.datastructures import ImmutableMultiDict

from webportal.i18n import gettext, gettext_noop

NUL = "\x00"
REPLACEMENT = "\ufffd"
NUL_REPLACED = gettext_noop(
    "Your text held {count} NUL character(s), an invisible control character that mail"
    " cannot carry. Each is now shown as � in your text: check it and send it again."
)

_KEPT = "sealgate.typed_text_fields"
_REPLACED = "sealgate_nul_replaced"


def keep_fields(app: Flask, endpoint: str, fields: Iterable[str]) -> None:
    """In a POST to `endpoint`, a NUL in one of `fields` is replaced, not refused."""
    kept: dict[str, frozenset[str]] = app.extensions.setdefault(_KEPT, {})
    kept[endpoint] = kept.get(endpoint, frozenset()) | frozenset(fields)


def kept_fields(endpoint: str) -> frozenset[str]:
    """The fields of typed text of `endpoint`'s form (none for other endpoints)."""
    kept: frozenset[str] = current_app.extensions.get(_KEPT, {}).get(endpoint, frozenset())
    return kept


def replaced() -> int:
    """How many NULs this request's kept fields held (each now U+FFFD)."""
    count = g.get(_REPLACED, 0)
    return count if isinstance(count, int) else 0


def note() -> str:
    """The page's message for a form whose NULs were replaced."""
    return gettext(NUL_REPLACED, count=replaced())


def screen() -> None:
    """Refuse a NUL anywhere but in a kept field; replace it there (a request hook)."""
    texts = [v for vs in request.args.listvalues() for v in vs]
    texts += [v for v in (request.view_args or {}).values() if isinstance(v, str)]
    if any(NUL in text for text in texts):
        abort(400)
    form = request.form
    if not any(NUL in v for vs in form.listvalues() for v in vs):
        return
    kept = kept_fields(request.endpoint or "")
    count = 0
    items: list[tuple[str, str]] = []
    for name, values in form.lists():
        for value in values:
            if NUL in value:
                if name not in kept:
                    abort(400)
                count += value.count(NUL)
                value = value.replace(NUL, REPLACEMENT)
            items.append((name, value))
    request.form = ImmutableMultiDict(items)
    request.__dict__.pop("values", None)  # combined from the old form, if read already
    setattr(g, _REPLACED, count)


def init_app(app: Flask) -> None:
    app.before_request(screen)
