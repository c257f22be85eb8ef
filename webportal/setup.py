"""Setting up mail programs: the "Set up a mail program" page, Thunderbird autoconfig,
and the Apple configuration profile. The formats are built in gateway.client_setup.

Autoconfig is public (Thunderbird asks before anyone logs in) and answers only
for hosted domains; it names servers and ports, never whether an address
exists. The profile lists the account's own addresses, so it needs a login.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from gateway import accounts, client_setup
from gateway.addresses import InvalidAddress, domain_of, normalize_domain
from webportal.access import login_required, public
from webportal.extensions import db_session, runtime

bp = Blueprint("setup", __name__)
AUTOCONFIG_PREFIX = "autoconfig."


def _hosted_domain() -> str | None:
    """The hosted domain Thunderbird asks about: from ?emailaddress=, else the Host."""
    candidates: list[str] = []
    asked = request.args.get("emailaddress", "")[:320]
    if "@" in asked:
        candidates.append(domain_of(asked))
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else ""
    candidates.append(host.removeprefix(AUTOCONFIG_PREFIX))
    db = db_session()
    for candidate in candidates:
        try:
            domain = normalize_domain(candidate)
        except InvalidAddress:
            continue
        if accounts.find_domain(db, domain) is not None:
            return domain
    return None


@bp.get("/.well-known/autoconfig/mail/config-v1.1.xml")
@bp.get("/mail/config-v1.1.xml")
@public
def autoconfig() -> ResponseReturnValue:
    domain = _hosted_domain()
    if domain is None:
        abort(404)
    body = client_setup.autoconfig_xml(runtime().settings, domain, [domain])
    response = Response(body, mimetype="application/xml")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/setup")
@login_required
def setup_page() -> ResponseReturnValue:
    addresses = accounts.owned_addresses(db_session(), current_user.account_id)
    return render_template(
        "portal/setup.html",
        servers=client_setup.servers(runtime().settings),
        addresses=addresses,
    )


@bp.get("/setup/sealgate.mobileconfig")
@login_required
def mobileconfig() -> ResponseReturnValue:
    db = db_session()
    addresses = accounts.owned_addresses(db, current_user.account_id)
    if not addresses:
        abort(404)
    body = client_setup.mobileconfig(runtime().settings, current_user.email, addresses)
    response = Response(body, mimetype="application/x-apple-aspen-config")
    response.headers["Content-Disposition"] = 'attachment; filename="sealgate.mobileconfig"'
    response.headers["Cache-Control"] = "no-store"
    return response
