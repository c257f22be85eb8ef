"""Console: the audit log with filters, paging and CSV export."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import audit_log
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import ERROR, page_arg, per_page
from webportal.extensions import db_session

FILTER_KEYS = ("actor", "action", "address", "since", "until")


def _filters() -> tuple[audit_log.AuditFilter, dict[str, str], bool]:
    """The filters from the query string, and whether its days were read (if not, the
    error is flashed and the days are left out)."""
    raw = {key: request.args.get(key, "")[:320] for key in FILTER_KEYS}
    days_read = True
    try:
        since, until = audit_log.parse_days(raw["since"], raw["until"])
    except ValueError as exc:
        flash(str(exc), ERROR)
        since = until = None
        days_read = False
    filters = audit_log.AuditFilter(
        actor=raw["actor"], action=raw["action"], address=raw["address"], since=since, until=until
    )
    return filters, raw, days_read


@bp.get("/audit")
@admin_required
def audit() -> ResponseReturnValue:
    filters, raw, _days_read = _filters()
    found = audit_log.query(db_session(), filters, page_arg(), per_page())
    return render_template("admin/audit.html", found=found, raw=raw)


@bp.get("/audit.csv")
@admin_required
def audit_csv() -> ResponseReturnValue:
    filters, raw, days_read = _filters()
    if not days_read:
        # Exporting without the days would hand over every event as if it were the ones
        # asked for: back to the viewer, which shows why, with the filters as typed.
        typed: dict[str, Any] = {key: value for key, value in raw.items() if value}
        return redirect(url_for("admin.audit", **typed))
    return Response(
        audit_log.export_csv(db_session(), filters),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="sealgate-audit.csv"'},
    )
