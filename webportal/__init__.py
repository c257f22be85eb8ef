"""The portal: a Flask app built by `create_app(runtime)`, one blueprint per area.

Blueprints reach the database and settings through `app.extensions["sealgate"]`
(the `Runtime`); each subsystem binds itself with an `init_app(app)`. The app is
served by `webportal.server.PortalServer`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import limits
from flask import Flask, request
from limits.errors import ConfigurationError

from gateway import outages
from gateway.runtime import Runtime
from gateway.settings import SettingsError
from webportal import (
    access,
    account,
    admin,
    after_post,
    auth,
    autoreply,
    bodies,
    compose,
    devices,
    errors,
    i18n,
    ids,
    mail,
    preferences,
    proxy,
    secure,
    security,
    session_key,
    setup,
    typed_text,
    wkd,
)
from webportal.extensions import RUNTIME_KEY, csrf, init_db_session, make_limiter

# Marks a directory as sealgate's template tree (and not some other "templates").
TEMPLATE_MARKER = Path("portal") / "base.html"


def templates_dir() -> Path:
    """The top-level templates/ directory, from a source tree or an installed wheel.

    The wheel force-includes templates/ as `sealgate/templates`; in a checkout (or
    an editable install) it sits beside the packages.
    """
    candidates: list[Path] = []
    # find_spec locates the package without importing it (webportal must not
    # depend on the CLI package).
    spec = importlib.util.find_spec("sealgate")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "templates")
    candidates.append(Path(__file__).resolve().parent.parent / "templates")
    for candidate in candidates:
        if (candidate / TEMPLATE_MARKER).is_file():
            return candidate
    raise RuntimeError(
        "sealgate's templates are missing (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall the package"
    )


class Portal(Flask):
    def log_exception(self, exc_info: Any) -> None:
        """Flask's "Exception on <path>" line, without a secure-page token: errors in the
        hooks and limits around a view (a rate-limit store that is down) land here.
        An outage (gateway.outages) is said once by its watch, not per request."""
        if outages.report(exc_info[1]) is not None:
            return
        self.logger.error(
            "Exception on %s [%s]",
            secure.loggable_path(request.path),
            request.method,
            exc_info=exc_info,
        )


def create_app(runtime: Runtime, *, testing: bool = False) -> Flask:
    """The portal app for `runtime`; refuses to build with a bad setting or a missing key."""
    settings = runtime.settings
    portal = settings.portal
    _check_rate_limit(portal.login_rate_limit)

    app = Portal(__name__, template_folder=str(templates_dir()), static_folder="static")
    app.testing = testing
    bodies.init_app(app)
    app.extensions[RUNTIME_KEY] = runtime

    root_key = session_key.load_or_create(settings.data_dir)
    app.config.update(
        SECRET_KEY=session_key.derive(root_key, "session-cookie"),
        WTF_CSRF_SECRET_KEY=session_key.derive(root_key, "csrf"),
        # Nothing the portal accepts is bigger than a message.
        MAX_CONTENT_LENGTH=settings.smtp.max_message_size,
        # A form field (a message's text) up to that too: past Flask's 500 kB default
        # the webmail answered 413 and the text written was lost.
        MAX_FORM_MEMORY_SIZE=settings.smtp.max_message_size,
    )
    security.configure(app, portal)
    devices.init_app(app, root_key)
    proxy.init_app(app, portal.trusted_proxies)

    csrf.init_app(app)
    try:
        make_limiter(app, portal.ratelimit_storage)
    except ConfigurationError:
        # The URL may hold a Redis password: name the key, not the value.
        raise SettingsError(
            "[portal] ratelimit_storage: not a supported storage URL"
            " (use memory:// or redis://host:port/db)"
        ) from None
    init_db_session(app)
    i18n.init_app(app)
    after_post.init_app(app)
    errors.init_app(app)
    typed_text.init_app(app)

    ids.init_app(app)
    auth.init_app(app)
    account.init_app(app)
    app.register_blueprint(mail.bp)
    compose.init_app(app)
    autoreply.init_app(app)
    app.register_blueprint(wkd.bp)
    app.register_blueprint(setup.bp)
    secure.init_app(app)
    app.register_blueprint(preferences.bp)
    admin.init_app(app)

    access.init_app(app)
    return app


def _check_rate_limit(value: str) -> None:
    try:
        limits.parse_many(value)
    except ValueError:
        raise SettingsError(
            f"[portal] login_rate_limit: {value!r} is not a rate such as '10/minute;50/hour'"
        ) from None
