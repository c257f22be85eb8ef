"""The console's start page: what is there, and where to go."""

from __future__ import annotations

import sqlalchemy as sa
from flask import render_template
from flask.typing import ResponseReturnValue

from gateway.admin import keys as admin_keys
from gateway.models import Account, Address, Domain, QueueItem
from webportal.access import admin_required
from webportal.admin import bp
from webportal.extensions import db_session


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    db = db_session()

    def count(model: type) -> int:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model)) or 0)

    return render_template(
        "admin/dashboard.html",
        domains=count(Domain),
        accounts=count(Account),
        addresses=count(Address),
        queued=count(QueueItem),
        job=admin_keys.active_job(db),
    )
