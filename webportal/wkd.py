"""Web Key Directory: hosted addresses' public keys at the well-known URLs.

Both methods of the WKD draft (draft-koch-openpgp-webkey-service) are served:

- direct:   https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local part>
- advanced: https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>

`<hash>` is the z-base-32 SHA-1 of the lower-cased local part. The answer is the
binary current key of the address (made on first lookup, like on first mail, so
every hosted address can be found). Anything else, an unhosted domain included,
gets 404 and says nothing about why. The direct method takes the domain from the
Host header: it is only compared against the hosted domains, never echoed or used
to build a URL.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Blueprint, Response, abort, current_app, request

from gateway import accounts, audit, db
from gateway.addresses import InvalidAddress, normalize_domain
from gateway.models import Address, Domain
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from keystore import store
from keystore.masterkey import MasterKeyError, RingFile
from keystore.wkd import is_wkd_hash, local_part_hash
from keystore.wrap import DecryptionError
from webportal.access import public

bp = Blueprint("wkd", __name__)

RUNTIME_KEY = "sealgate"
RING_KEY = "sealgate.wkd.ring"
WKD_ACTOR = "wkd"
MAX_LOCAL_PART = 64
HEADERS = {
    # The draft asks for it, so web clients (e.g. webmail on another origin) can look keys up.
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "public, max-age=300",
}


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions[RUNTIME_KEY]
    return runtime


def _ring_file(runtime: Runtime) -> RingFile:
    ring_file: RingFile | None = current_app.extensions.get(RING_KEY)
    if ring_file is None:
        ring_file = RingFile(runtime.settings.data_dir)
        current_app.extensions[RING_KEY] = ring_file
    return ring_file


def _audit(session: so.Session, action: str, target: str, detail: str) -> None:
    audit.record(session, action, actor=WKD_ACTOR, target=target, detail=detail)


def _domain_or_404(raw: str) -> str:
    try:
        return normalize_domain(raw)
    except InvalidAddress:
        abort(404)


def _request_domain() -> str:
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else ""
    return _domain_or_404(host)


def _hosted_address(session: so.Session, domain: str, name: str) -> str | None:
    """The hosted address of `domain` whose local part hashes to `name`, if any."""
    local = request.args.get("l")
    if local is not None:
        if not 0 < len(local) <= MAX_LOCAL_PART or local_part_hash(local) != name:
            return None
        row = accounts.find_address(session, f"{local}@{domain}")
        return row.address if row else None
    keyed = store.lookup_by_wkd_hash(session, domain, name)
    if keyed is not None and accounts.find_address(session, keyed.address):
        return keyed.address
    # An address that has no key yet: hash the domain's addresses (without `?l=`
    # only; clients since GnuPG 2.1.19 send it).
    candidates = session.scalars(
        sa.select(Address.address).join(Domain).where(Domain.name == domain)
    )
    return next((a for a in candidates if local_part_hash(a.rpartition("@")[0]) == name), None)


def _serve_key(domain: str, name: str) -> Response:
    if not is_wkd_hash(name):
        abort(404)
    runtime = _runtime()
    with db.transaction(runtime.sessions) as session:
        if accounts.find_domain(session, domain) is None:
            abort(404)
        address = _hosted_address(session, domain, name)
        if address is None:
            abort(404)
        key = store.public_key(session, address)
        if key is None:
            try:
                ring = _ring_file(runtime).get()
                store.get_or_create(session, ring, address, utcnow(), events=_audit)
            except (MasterKeyError, DecryptionError):
                current_app.logger.exception("WKD: cannot make the first key of %s", address)
                abort(503)
            key = store.public_key(session, address)
        if key is None:
            abort(404)
        body = key.to_bytes()
    return Response(body, mimetype="application/octet-stream", headers=HEADERS)


def _policy(domain: str) -> Response:
    with db.transaction(_runtime().sessions) as session:
        if accounts.find_domain(session, domain) is None:
            abort(404)
    return Response(b"", mimetype="text/plain", headers=HEADERS)


@bp.get("/.well-known/openpgpkey/hu/<name>")
@public
def direct(name: str) -> Response:
    return _serve_key(_request_domain(), name)


@bp.get("/.well-known/openpgpkey/<domain>/hu/<name>")
@public
def advanced(domain: str, name: str) -> Response:
    return _serve_key(_domain_or_404(domain), name)


@bp.get("/.well-known/openpgpkey/policy")
@public
def direct_policy() -> Response:
    return _policy(_request_domain())


@bp.get("/.well-known/openpgpkey/<domain>/policy")
@public
def advanced_policy(domain: str) -> Response:
    return _policy(_domain_or_404(domain))
