"""The admin console (`/admin`): one blueprint, one views module per area.

Every view is `admin_required` (an admin, with two-factor login on, whose login
is fresh) and stays thin: it reads the form, calls gateway.admin, flashes the
outcome and redirects. A URL naming an account, address, domain or job that is not
there answers 404 (`common.found`), to a page request and a form alike. Every change
is audited there with the admin's login, the time and the client address. Forms are
CSRF-protected like every portal form.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_app(app: Flask) -> None:
    # Importing the views registers them on `bp`.
    from webportal.admin import (  # noqa: F401
        accounts,
        audit,
        dashboard,
        domains,
        keys,
        maillog,
        policy,
        queue,
    )

    app.register_blueprint(bp)
