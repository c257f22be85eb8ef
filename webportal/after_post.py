"""Back to a page that answered a POST loads a page: never "Confirm Form Resubmission".

A form that succeeds redirects (Post/Redirect/Get), so Back never lands on its POST.
Two kinds of page still answer the POST itself: a form shown again with its errors
(what was typed comes back in it), and a page that shows something once (recovery
codes, an app password, a generated password), which must not be kept anywhere to be
fetched again. Back to one of them from a later page, or a reload, made Chromium ask to
send the form again, and sending it did the thing again: a second app password, new
recovery codes voiding the ones just written down, an old password counted as a wrong
one. Each such page carries `after_post.js`, which turns its history entry into a
plain GET of `url()`: the page's own URL when that answers GET (no URL is written
into the page then, so a secure page's token stays out of it), else the one its view
names with `come_back_to`. What was shown once is not shown again by that GET.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

_BACK = "sealgate_after_post_url"


def come_back_to(url: str) -> None:
    """Back to this POST's page goes to `url` (for a URL that answers POST only)."""
    setattr(g, _BACK, url)


def url() -> str | None:
    """For a page answering a POST, the URL its history entry gets: "" for its own URL,
    else a URL named by its view; None for a page that answers no POST, or whose URL
    answers no GET and whose view named none (the browser's own behaviour then)."""
    if request.method != "POST":
        return None
    named = g.get(_BACK)
    if isinstance(named, str):
        return named
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        adapter.match(request.path, method="GET")
    except (HTTPException, RoutingException):
        return None
    return ""


def init_app(app: Flask) -> None:
    app.jinja_env.globals["after_post_url"] = url
