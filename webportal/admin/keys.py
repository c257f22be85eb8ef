"""Console: key inventory, address-key rotation and revocation, master-key rotation."""

from __future__ import annotations

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import AdminError, NotFound, ring_problem
from gateway.admin import keys as admin_keys
from keystore import pgp
from keystore.masterkey import MasterKeyError
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import actor, fail, field, found, now
from webportal.extensions import db_session, runtime


@bp.get("/keys")
@admin_required
def keys() -> ResponseReturnValue:
    db = db_session()
    address = request.args.get("address", "")[:320].strip()
    try:
        inventory = admin_keys.inventory(db, now(), address or None)
    except AdminError as exc:
        fail(exc)
        address, inventory = "", []
    return render_template(
        "admin/keys.html",
        address=address,
        keys=inventory,
        versions=admin_keys.master_versions(db),
        jobs=admin_keys.recent_jobs(db),
        active=admin_keys.active_job(db),
        reasons=sorted(pgp.REVOCATION_REASONS),
    )


@bp.post("/keys/rotate")
@admin_required
def rotate_key() -> ResponseReturnValue:
    address = field("address")
    try:
        new = admin_keys.rotate_address_key(
            db_session(), runtime().ring.get(), address, actor=actor(), now=now()
        )
        flash(f"New key {new.fingerprint} for {new.address}; the old one stays for reading.")
    except AdminError as exc:
        fail(exc)
    except MasterKeyError as exc:
        fail(AdminError(ring_problem(exc)))
    return redirect(url_for("admin.keys", address=address))


@bp.post("/keys/revoke")
@admin_required
def revoke_key() -> ResponseReturnValue:
    address = field("address")
    try:
        new = admin_keys.revoke_address_key(
            db_session(),
            runtime().ring.get(),
            address,
            field("reason"),
            actor=actor(),
            now=now(),
            code=field("code") or "compromised",
        )
        flash(f"Key of {new.address} revoked; new key {new.fingerprint}.")
    except AdminError as exc:
        fail(exc)
    except MasterKeyError as exc:
        fail(AdminError(ring_problem(exc)))
    return redirect(url_for("admin.keys", address=address))


@bp.post("/keys/master")
@admin_required
def start_master_rotation() -> ResponseReturnValue:
    job = admin_keys.request_master_rotation(db_session(), actor=actor(), now=now())
    return redirect(url_for("admin.master_rotation", job_id=job.id))


@bp.get("/keys/master/<id:job_id>")
@admin_required
def master_rotation(job_id: int) -> ResponseReturnValue:
    return render_template("admin/rotation.html", job=found(admin_keys.progress, job_id))


@bp.get("/keys/master/<id:job_id>/progress")
@admin_required
def master_rotation_progress(job_id: int) -> ResponseReturnValue:
    # Polled by the rotation page's script: a JSON answer, not the not-found page.
    try:
        return jsonify(admin_keys.progress(db_session(), job_id).as_dict())
    except NotFound as exc:
        return jsonify({"error": str(exc)}), 404
