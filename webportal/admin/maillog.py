"""Console: the mail log, searchable by address and by message."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from gateway.admin import maillog as admin_maillog
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import page_arg, per_page
from webportal.extensions import db_session, runtime


@bp.get("/maillog")
@admin_required
def maillog() -> ResponseReturnValue:
    address = request.args.get("address", "")[:320]
    message = request.args.get("message", "")[:998]
    found = admin_maillog.search(
        db_session(), page_arg(), per_page(), address=address, message=message
    )
    return render_template(
        "admin/maillog.html",
        found=found,
        address=address,
        message=message,
        days=runtime().settings.admin.mail_log_days,
    )
