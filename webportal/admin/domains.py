"""Console: hosted domains."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import AdminError
from gateway.admin import domains as admin_domains
from gateway.dkim import keys as dkim_keys
from keystore.masterkey import MasterKeyError
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import actor, checked, fail, field, found, now
from webportal.extensions import db_session, runtime


@bp.route("/domains", methods=["GET", "POST"])
@admin_required
def domains() -> ResponseReturnValue:
    db = db_session()
    if request.method == "POST":
        try:
            row = admin_domains.add(db, field("name"), actor=actor())
            flash(f"Domain {row.name} added.")
        except AdminError as exc:
            fail(exc)
        return redirect(url_for("admin.domains"))
    try:
        ring = runtime().ring.get()
    except MasterKeyError:
        ring = None  # the list still shows; serve's log says why the ring is missing
    listed = admin_domains.list_domains(db, ring, dkim_remedy=dkim_keys.CONSOLE_RENEW_HINT)
    return render_template("admin/domains.html", domains=listed)


@bp.post("/domains/<name>/disable")
@admin_required
def disable_domain(name: str) -> ResponseReturnValue:
    return _set_disabled(name, True)


@bp.post("/domains/<name>/enable")
@admin_required
def enable_domain(name: str) -> ResponseReturnValue:
    return _set_disabled(name, False)


def _set_disabled(name: str, disabled: bool) -> ResponseReturnValue:
    found(admin_domains.get, name)
    try:
        row = admin_domains.set_disabled(db_session(), name, disabled, actor=actor(), now=now())
        flash(f"Domain {row.name} {'disabled' if disabled else 'enabled'}.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.domains"))


@bp.route("/domains/<name>/delete", methods=["GET", "POST"])
@admin_required
def delete_domain(name: str) -> ResponseReturnValue:
    db = db_session()
    preview = found(admin_domains.preview_delete, name)
    if request.method == "POST":
        if field("confirm").lower() != preview.domain:
            fail(AdminError(f"type {preview.domain} to confirm"))
            return redirect(url_for("admin.delete_domain", name=preview.domain))
        try:
            done = admin_domains.delete(db, name, actor=actor(), now=now(), purge=checked("purge"))
            flash(f"Domain {done.domain} deleted{_purged(done)}.")
            return redirect(url_for("admin.domains"))
        except AdminError as exc:
            fail(exc)
            return redirect(url_for("admin.delete_domain", name=preview.domain))
    return render_template("admin/domain_delete.html", preview=preview)


def _purged(done: admin_domains.DeletePreview) -> str:
    if done.empty:
        return ""
    moved = "".join(f"; {old} now signs in as {new}" for old, new in done.moved_logins)
    return (
        f" with {len(done.addresses)} address(es) and {done.messages} message(s);"
        f" {len(done.accounts)} account(s) deleted, {len(done.kept_accounts)} kept"
        f" (they have addresses in other domains){moved}"
    )
