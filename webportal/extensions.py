"""What every blueprint reaches through the app: the runtime, a database session per
request, login state, CSRF protection and the rate limiter.

The unit of work is the request: a view that returns a response has its changes
committed before the response goes out (so a failed commit becomes a 500 page,
not a lie); a view that raises, or aborts with an HTTP error, has them rolled back.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import sqlalchemy.orm as so
from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from gateway import outages, ratelimit
from gateway.runtime import Runtime
from gateway.securepage.mail_links import own_host_forms

log = logging.getLogger(__name__)

RUNTIME_KEY = "sealgate"
LIMITER_KEY = "sealgate.limiter"

csrf = CSRFProtect()


def runtime(app: Flask | None = None) -> Runtime:
    rt: Runtime = (app or current_app).extensions[RUNTIME_KEY]
    return rt


def portal_hosts() -> frozenset[str]:
    """The hosts this portal is reached under (its base_url's and this request's), in
    every form a link in a shown mail might name them (gateway.securepage.mail_links)."""
    names = (runtime().settings.portal.base_url, f"//{request.host}")
    hosts = [urllib.parse.urlsplit(name).hostname or "" for name in names]
    return own_host_forms([host for host in hosts if host])


def db_session() -> so.Session:
    """The request's session, opened on first use."""
    session: so.Session | None = g.get("sealgate_db")
    if session is None:
        session = runtime().sessions()
        g.sealgate_db = session
    return session


def discard_db_session() -> None:
    """Roll back the request's work; called by every error handler."""
    session: so.Session | None = g.get("sealgate_db")
    if session is not None:
        session.rollback()
        g.sealgate_db_discarded = True


def init_db_session(app: Flask) -> None:
    @app.after_request
    def _commit(response: Response) -> Response:
        session: so.Session | None = g.get("sealgate_db")
        if session is not None and not g.get("sealgate_db_discarded"):
            # An exception here reaches the 500 handler, which rolls back.
            session.commit()
            outages.ended(outages.Kind.DATABASE, outages.Kind.DISK_FULL)
        return response

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        session: so.Session | None = g.pop("sealgate_db", None)
        if session is not None:
            session.close()


def client_address() -> str:
    """The peer's address, the key for per-client limits and the audit log.

    Behind a reverse proxy named in `[portal] trusted_proxies`, webportal.proxy has
    already put the client's address (from X-Forwarded-For) here; from anyone else
    the header is ignored.
    """
    return request.remote_addr or "unknown"


def client_limit_key() -> str:
    """The client as per-client limits count it: an IPv4 address, an IPv6 /64 (every
    IPv6 host holds one, and counted per address it would have 2^64 times the limit);
    the audit log keeps the whole address (`client_address`)."""
    return ratelimit.client_key(client_address())


def make_login_manager() -> LoginManager:
    manager = LoginManager()
    manager.login_view = "auth.login"
    # "basic": a session whose browser fingerprint changes is kept but marked not
    # fresh; "strong" would log out phones that switch networks.
    manager.session_protection = "basic"
    return manager


def make_limiter(app: Flask, storage_uri: str, key_prefix: str = "sealgate") -> Limiter:
    """One limiter per app (its storage is per app); blueprints fetch it with `limiter()`."""
    limiter = Limiter(
        key_func=client_limit_key,
        storage_uri=storage_uri,
        key_prefix=key_prefix,
        strategy="moving-window",
        # No X-RateLimit-* on every answer; the 429 page sets Retry-After itself.
        headers_enabled=False,
        # Fail closed: with the counter store down, the login form answers 500
        # rather than accepting unlimited password guesses.
        swallow_errors=False,
    )
    limiter.init_app(app)
    app.extensions[LIMITER_KEY] = limiter
    return limiter


def limiter(app: Flask | None = None) -> Limiter:
    lim: Limiter = (app or current_app).extensions[LIMITER_KEY]
    return lim


def request_meta() -> dict[str, Any]:
    """Who is asking, for the audit log (never anything from the request body)."""
    agent = request.headers.get("User-Agent", "")[:300]
    return {
        "ip": client_address(),
        # Printable only: the audit page shows it, and PostgreSQL refuses NUL.
        "user_agent": "".join(c if c.isprintable() else "?" for c in agent),
    }


def request_size_bound() -> int:
    """The most this request's body can be, for the in-flight budget: its length, or for
    a chunked body (no length given) the largest the app reads (MAX_CONTENT_LENGTH)."""
    if request.content_length is not None:
        return request.content_length
    return int(current_app.config.get("MAX_CONTENT_LENGTH") or 0)
