"""Console: the outbound queue: list, retry now, give up (bounce to the sender)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import AdminError
from gateway.admin import queue as admin_queue
from gateway.admin import ring_problem as admin_ring_problem
from keystore.masterkey import MasterKeyError
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import actor, checked, fail, field, now, page_arg, per_page
from webportal.extensions import db_session, runtime


@bp.get("/queue")
@admin_required
def queue() -> ResponseReturnValue:
    ring_problem = ""
    try:
        ring = runtime().ring.get()
    except MasterKeyError as exc:
        ring = None  # the page still lists the rows, and says why the ring is missing
        ring_problem = admin_ring_problem(exc)
    found = admin_queue.list_rows(db_session(), now(), page_arg(), per_page(), ring=ring)
    relay = runtime().settings.relay
    return render_template(
        "admin/queue.html",
        found=found,
        no_host=not relay.host,
        max_age_days=relay.max_age / 86400,
        ring_problem=ring_problem,
    )


@bp.post("/queue/retry")
@admin_required
def retry() -> ResponseReturnValue:
    try:
        count = admin_queue.retry(db_session(), field("ident"), actor=actor(), now=now())
        flash(f"{count} row(s) due now.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.queue"))


@bp.post("/queue/give-up")
@admin_required
def give_up() -> ResponseReturnValue:
    if not checked("confirm"):
        fail(AdminError("tick the box to confirm: the sender gets a bounce"))
        return redirect(url_for("admin.queue"))
    rt = runtime()
    try:
        outcome = admin_queue.give_up(
            db_session(),
            field("ident"),
            actor=actor(),
            now=now(),
            ring=rt.ring.get(),
            reporting_mta=rt.settings.smtp.hostname,
        )
        flash("; ".join(f"{rcpt}: given up, bounce {where}" for rcpt, where in outcome.items()))
    except AdminError as exc:
        fail(exc)
    except MasterKeyError as exc:
        fail(AdminError(admin_ring_problem(exc)))
    return redirect(url_for("admin.queue"))
