"""Console: the encryption policy and the per-domain "require encryption" rules."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import AdminError, policy
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import actor, checked, fail, field, now
from webportal.extensions import db_session, runtime

BOOLEAN_KEYS = ("new_account_always_encrypt",)


@bp.route("/policy", methods=["GET", "POST"])
@admin_required
def policy_page() -> ResponseReturnValue:
    db = db_session()
    settings = runtime().settings
    if request.method == "POST":
        changes: dict[str, object] = {
            key: (checked(key) if key in BOOLEAN_KEYS else field(key))
            for key in policy.FIELDS
            if key in request.form or key in BOOLEAN_KEYS
        }
        try:
            update = policy.set_values(db, settings, changes, actor=actor(), now=now())
            if update.changed:
                flash(f"Encryption policy saved: {', '.join(update.changed)} changed.")
            else:
                flash("Encryption policy unchanged: every value was in force already.")
        except AdminError as exc:
            fail(exc)
        return redirect(url_for("admin.policy_page"))
    return render_template(
        "admin/policy.html",
        values=policy.show(db, settings),
        rules=policy.list_rules(db),
        boolean_keys=BOOLEAN_KEYS,
        languages=policy.LANGUAGES,
    )


@bp.post("/policy/rules")
@admin_required
def add_rule() -> ResponseReturnValue:
    try:
        rule = policy.add_rule(db_session(), field("domain"), actor=actor())
        flash(f"Mail to {rule.domain} is now always encrypted.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.policy_page"))


@bp.post("/policy/rules/remove")
@admin_required
def remove_rule() -> ResponseReturnValue:
    try:
        policy.remove_rule(db_session(), field("domain"), actor=actor())
        flash("Rule removed.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.policy_page"))
