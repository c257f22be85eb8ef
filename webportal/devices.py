"""Device cookies: a browser that has logged in to an account is a known client of it.

OWASP's mitigation for lockout as a denial of service (`gateway.lockout`,
`gateway.known_clients`): after a login that passed every factor, the browser gets a
long-lived cookie naming the account and a random device id, signed (HMAC-SHA256)
with a key derived from the portal's root secret under its own label. While it is
valid, the browser's wrong passwords and codes count under that device's own key,
and others' guesses, which lock the account, do not lock it out.

The cookie is HttpOnly, SameSite=Strict (only the portal's own login and code forms
need it), Secure and `__Host-` when the portal is reached by https, and holds the
devices of the last few accounts that logged in from the browser. It grants nothing
else: no session, no skipped factor. Its signature binds the account id, the device
id and the time it was issued; it is valid for `[security] known_client_days` from
then, and each full login issues it afresh.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

from flask import Flask, Response, after_this_request, current_app, request

from gateway import known_clients, lockout
from webportal import session_key
from webportal.extensions import runtime
from webportal.security import served_over_tls

KEY_CONFIG = "SEALGATE_DEVICE_COOKIE_KEY"
LABEL = b"sealgate device cookie v1"
MAX_DEVICES = 5
MAX_COOKIE_LENGTH = 2000
DEVICE_ID_BYTES = 16


def cookie_name() -> str:
    secure = served_over_tls(runtime().settings.portal)
    return "__Host-sealgate_device" if secure else "sealgate_device"


def _mac(account_id: int, device_id: str, issued: int) -> str:
    key: bytes = current_app.config[KEY_CONFIG]
    message = b"|".join((LABEL, str(account_id).encode(), device_id.encode(), str(issued).encode()))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _token(account_id: int, device_id: str, issued: int) -> str:
    return f"{account_id}:{device_id}:{issued}:{_mac(account_id, device_id, issued)}"


def _tokens(now: dt.datetime) -> dict[int, tuple[str, int]]:
    """account id → (device id, issued) for each valid token this browser sent."""
    value = request.cookies.get(cookie_name(), "")
    if not value or len(value) > MAX_COOKIE_LENGTH:
        return {}
    lifetime = known_clients.period(runtime().settings.security).total_seconds()
    found: dict[int, tuple[str, int]] = {}
    for token in value.split(".")[:MAX_DEVICES]:
        parts = token.split(":")
        if len(parts) != 4:
            continue
        account, device_id, issued, mac = parts
        if not (account.isascii() and account.isdigit() and len(account) <= 12):
            continue
        if not (issued.isascii() and issued.isdigit() and len(issued) <= 12):
            continue
        if not hmac.compare_digest(mac, _mac(int(account), device_id, int(issued))):
            continue
        if not 0 <= now.timestamp() - int(issued) < lifetime:
            continue
        found[int(account)] = (device_id, int(issued))
    return found


def verified(now: dt.datetime) -> frozenset[tuple[int, str]]:
    """(account id, device id) of each valid device cookie of this browser
    (`gateway.logins.Attempt.devices`); none when known clients are off."""
    if not known_clients.enabled(runtime().settings.security):
        return frozenset()
    return frozenset((account, device) for account, (device, _) in _tokens(now).items())


def lockout_key(account_id: int, now: dt.datetime) -> str:
    """Where this browser's failures for the account count, and which lock refuses it:
    its device's own key when it holds the account's device cookie, else the account's."""
    for account, device in verified(now):
        if account == account_id:
            return lockout.client_key(account_id, known_clients.device_client(device))
    return lockout.account_key(account_id)


def remember(account_id: int, now: dt.datetime) -> None:
    """After a full login: (re)issue this browser's device cookie for the account, keeping
    its device id if it had one."""
    security = runtime().settings.security
    if not known_clients.enabled(security):
        return
    tokens = _tokens(now)
    device_id = tokens.get(account_id, (secrets.token_urlsafe(DEVICE_ID_BYTES), 0))[0]
    issued = int(now.timestamp())
    tokens[account_id] = (device_id, issued)
    newest = sorted(tokens.items(), key=lambda item: item[1][1], reverse=True)[:MAX_DEVICES]
    value = ".".join(_token(account, device, at) for account, (device, at) in newest)
    max_age = int(known_clients.period(security).total_seconds())
    secure = served_over_tls(runtime().settings.portal)
    name = cookie_name()

    @after_this_request
    def _set(response: Response) -> Response:
        response.set_cookie(
            name, value, max_age=max_age, secure=secure, httponly=True, samesite="Strict", path="/"
        )
        return response


def init_app(app: Flask, root_key: bytes) -> None:
    app.config[KEY_CONFIG] = session_key.derive(root_key, "device-cookie")
