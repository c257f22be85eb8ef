"""Console: the audit log with filters, paging and CSV export."""

from __future__ import annotations

from flask import Response, flash, render_template, request
from flask.typing import ResponseReturnValue

from gateway.admin import audit_log
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import ERROR, page_arg, per_page
from webportal.extensions import db_session

FILTER_KEYS = ("actor", "action", "address", "since", "until")


def _filters() -> tuple[audit_log.AuditFilter, dict[str, str]]:
    raw = {key: request.args.get(key, "")[:320] for key in FILTER_KEYS}
    try:
        since, until = audit_log.parse_days(raw["since"], raw["until"])
    except ValueError as exc:
        flash(str(exc), ERROR)
        since = until = None
    filters = audit_log.AuditFilter(
        actor=raw["actor"], action=raw["action"], address=raw["address"], since=since, until=until
    )
    return filters, raw


@bp.get("/audit")
@admin_required
def audit() -> ResponseReturnValue:
    filters, raw = _filters()
    found = audit_log.query(db_session(), filters, page_arg(), per_page())
    return render_template("admin/audit.html", found=found, raw=raw)


@bp.get("/audit.csv")
@admin_required
def audit_csv() -> ResponseReturnValue:
    filters, _raw = _filters()
    return Response(
        audit_log.export_csv(db_session(), filters),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="sealgate-audit.csv"'},
    )
