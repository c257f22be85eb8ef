"""Every view states who may call it; a view that states nothing is refused.

Decorate each view with exactly one of `public`, `login_required`,
`fresh_login_required` or `admin_required`. The rule is kept on
the function (`access_rule(view)`), so the app factory refuses to start with an
undeclared view, a request hook answers 403 for one added later, and a test walks
`app.url_map` for any view without a rule. Forgetting the decorator therefore
fails closed instead of publishing a page.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

from flask import Flask, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from gateway import totp
from webportal import clock
from webportal.extensions import db_session, runtime
from webportal.i18n import gettext_noop

log = logging.getLogger(__name__)

Rule = Literal["public", "login_required", "fresh_login_required", "admin_required"]
RULES: tuple[Rule, ...] = ("public", "login_required", "fresh_login_required", "admin_required")
RULE_ATTRIBUTE = "sealgate_access_rule"
# Endpoints Flask itself adds, allowed explicitly: static files are public by nature.
BUILTIN_PUBLIC_ENDPOINTS = frozenset({"static"})
LOGIN_ENDPOINT = "auth.login"
REAUTH_ENDPOINT = "account.reauth"
TWO_FACTOR_ENDPOINT = "account.enable_2fa"
ADMIN_NEEDS_2FA = gettext_noop(
    "Administrators need two-factor login: turn it on to open the administration."
)

F = TypeVar("F", bound=Callable[..., Any])


class MissingAccessRule(RuntimeError):
    """A view was registered without an access rule."""


def _mark(view: F, rule: Rule) -> F:
    if getattr(view, RULE_ATTRIBUTE, None) not in (None, rule):
        raise MissingAccessRule(f"{view.__qualname__} declares two access rules")
    setattr(view, RULE_ATTRIBUTE, rule)
    return view


def public(view: F) -> F:
    """Anyone may call it, logged in or not."""
    return _mark(view, "public")


def login_required(view: F) -> F:
    """Only a logged-in account; others go to the login page and come back after."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for(LOGIN_ENDPOINT, next=_relative_target()))
        return view(*args, **kwargs)

    return _mark(cast(F, wrapper), "login_required")


def is_fresh(user: Any, now: dt.datetime) -> bool:
    """True when the user proved their password (and second factor) recently enough."""
    proven: dt.datetime | None = getattr(user, "authenticated_at", None)
    minutes = runtime().settings.security.fresh_login_minutes
    return proven is not None and now - proven < dt.timedelta(minutes=minutes)


def fresh_login_required(view: F) -> F:
    """A logged-in account whose login is recent; others confirm their password first.

    For the sensitive actions (2FA, passwords, app passwords): a session left
    open on a shared computer, or a stolen cookie, does not reach them.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for(LOGIN_ENDPOINT, next=_relative_target()))
        if not is_fresh(current_user, clock.now()):
            # A form sent after the login went stale cannot be replayed from a
            # redirect; come back to its page (when it has one) to send it again.
            if request.method == "GET":
                target: str | None = _relative_target()
            else:
                target = request.path if _has_page(request.path) else None
            return redirect(url_for(REAUTH_ENDPOINT, next=target))
        return view(*args, **kwargs)

    return _mark(cast(F, wrapper), "fresh_login_required")


def admin_required(view: F) -> F:
    """Only a logged-in admin with two-factor login on, whose login is fresh.

    A logged-in non-admin gets 403. An admin without 2FA is sent to set it up
    first (a stolen admin password alone must not reach the console); an admin
    whose login went stale confirms the password first, as for
    `fresh_login_required`: the console changes accounts, keys and policy.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for(LOGIN_ENDPOINT, next=_relative_target()))
        if not getattr(current_user, "is_admin", False):
            abort(403)
        if not totp.is_enabled(db_session(), current_user.account_id):
            flash(ADMIN_NEEDS_2FA)
            return redirect(url_for(TWO_FACTOR_ENDPOINT))
        if not is_fresh(current_user, clock.now()):
            if request.method == "GET":
                target: str | None = _relative_target()
            else:
                target = request.path if _has_page(request.path) else None
            return redirect(url_for(REAUTH_ENDPOINT, next=target))
        return view(*args, **kwargs)

    return _mark(cast(F, wrapper), "admin_required")


def access_rule(view: Callable[..., Any]) -> Rule | None:
    rule: Rule | None = getattr(view, RULE_ATTRIBUTE, None)
    return rule


def endpoints_without_rule(app: Flask) -> list[str]:
    return sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint not in BUILTIN_PUBLIC_ENDPOINTS and access_rule(view) is None
    )


def init_app(app: Flask) -> None:
    """Refuse to build an app with an undeclared view, and deny one added later."""
    missing = endpoints_without_rule(app)
    if missing:
        raise MissingAccessRule(
            "views without an access rule (decorate them with webportal.access.public,"
            f" login_required, fresh_login_required or admin_required): {', '.join(missing)}"
        )

    @app.before_request
    def _deny_undeclared() -> None:
        endpoint = request.endpoint
        if endpoint is None or endpoint in BUILTIN_PUBLIC_ENDPOINTS:
            return
        view = app.view_functions.get(endpoint)
        if view is None or access_rule(view) is None:
            log.error("refused request to %s: the view declares no access rule", endpoint)
            abort(403)


def _has_page(path: str) -> bool:
    """Whether a GET to `path` reaches a view (a form's own page, say)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(path, method="GET")
    except HTTPException:
        return False
    except RoutingException:  # a redirect (trailing slash): no page of its own
        return False
    return True


def _relative_target() -> str:
    """Where to come back to after login: this path and query, never a host."""
    path = request.full_path
    return path[:-1] if path.endswith("?") else path
