"""Browser-side hardening: cookie flags, security headers, cross-site request refusal."""

from __future__ import annotations

import datetime as dt

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFError

from gateway.settings import PortalSettings

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
HSTS = "max-age=31536000"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sec-Fetch-Site values a form of our own can produce ("none": typed or bookmarked).
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def served_over_tls(portal: PortalSettings) -> bool:
    """True when browsers reach the portal by https, directly or through a TLS proxy."""
    return portal.tls or portal.base_url.startswith("https://")


def security_headers(portal: PortalSettings) -> dict[str, str]:
    """The header fields on every answer the portal gives: the app's pages, and the HTTP
    server's own bare errors for requests the app never sees (`webportal.server`)."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if served_over_tls(portal):
        headers["Strict-Transport-Security"] = HSTS
    return headers


def configure(app: Flask, portal: PortalSettings) -> None:
    secure = served_over_tls(portal)
    app.config.update(
        # "__Host-" makes browsers refuse the cookie unless it is Secure, host-only
        # and for path "/": a sibling subdomain cannot plant or shadow it.
        SESSION_COOKIE_NAME="__Host-sealgate" if secure else "sealgate",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=secure,
        # Lax, not Strict: with Strict a link to the portal clicked in a mail (a
        # notification, a secure-page link) arrives without the cookie and the
        # user looks logged out. CSRF tokens guard every POST either way.
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(minutes=portal.session_minutes),
        PREFERRED_URL_SCHEME="https" if secure else "http",
        # A CSRF token lives as long as the session it belongs to.
        WTF_CSRF_TIME_LIMIT=portal.session_minutes * 60,
        # Flask-WTF's strict mode wants a Referer on https POSTs, but the portal
        # sends Referrer-Policy: no-referrer (links in mail must not leak the
        # page's URL), so browsers send none. The token plus the Sec-Fetch-Site
        # check below replace it.
        WTF_CSRF_SSL_STRICT=False,
    )

    @app.before_request
    def _refuse_cross_site_posts() -> None:
        if request.method not in UNSAFE_METHODS:
            return
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ALLOWED_FETCH_SITES:
            raise CSRFError("cross-site request")

    every_answer = security_headers(portal)

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.update(every_answer)
        if request.endpoint != "static" and not response.cache_control.public:
            # Pages show mail and carry CSRF tokens: no copy in any cache. A view
            # serving something public (a WKD key) opts out by marking it public.
            headers["Cache-Control"] = "no-store"
        return response
