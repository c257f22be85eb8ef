"""Console: accounts, their addresses and aliases."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from gateway.admin import AdminError
from gateway.admin import accounts as admin_accounts
from gateway.passwords import generate_password
from webportal import after_post
from webportal.access import admin_required
from webportal.admin import bp
from webportal.admin.common import actor, checked, fail, field, found, now, page_arg, per_page
from webportal.extensions import db_session, runtime


@bp.get("/accounts")
@admin_required
def accounts() -> ResponseReturnValue:
    query = request.args.get("q", "")[:200]
    found = admin_accounts.search(db_session(), query, page_arg(), per_page())
    return render_template(
        "admin/accounts.html",
        found=found,
        query=query,
        languages=admin_accounts.LANGUAGES,
        roles=admin_accounts.ROLES,
    )


@bp.post("/accounts")
@admin_required
def create_account() -> ResponseReturnValue:
    db = db_session()
    rt = runtime()
    password = generate_password()
    try:
        account = admin_accounts.create(
            db,
            rt.settings,
            rt.hasher,
            field("email"),
            password,
            actor=actor(),
            role=field("role") or "user",
            language=field("language") or None,
            external_login=checked("external_login"),
        )
    except AdminError as exc:
        fail(exc)
        return redirect(url_for("admin.accounts"))
    # The generated password is in this response only: never in a flash, URL or log.
    return render_template(
        "admin/password_shown.html",
        what=f"portal password of {account.email}",
        password=password,
        back=url_for("admin.account", account_id=account.id),
    )


@bp.get("/accounts/<id:account_id>")
@admin_required
def account(account_id: int) -> ResponseReturnValue:
    db = db_session()
    row = found(admin_accounts.get_by_id, account_id)
    return render_template(
        "admin/account.html",
        account=row,
        info=admin_accounts.info(db, row.email),
        aliases=admin_accounts.aliases_by_address(db, row),
        languages=admin_accounts.LANGUAGES,
        roles=admin_accounts.ROLES,
    )


def _email(account_id: int) -> str:
    return found(admin_accounts.get_by_id, account_id).email


@bp.post("/accounts/<id:account_id>/settings")
@admin_required
def account_settings(account_id: int) -> ResponseReturnValue:
    db = db_session()
    email = _email(account_id)
    try:
        admin_accounts.set_language(db, email, field("language"), actor=actor())
        admin_accounts.set_role(db, email, field("role"), actor=actor())
        admin_accounts.set_always_encrypt(db, email, checked("always_encrypt"), actor=actor())
        flash(f"Settings of {email} saved.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.account", account_id=account_id))


@bp.post("/accounts/<id:account_id>/disable")
@admin_required
def disable_account(account_id: int) -> ResponseReturnValue:
    return _set_disabled(account_id, True)


@bp.post("/accounts/<id:account_id>/enable")
@admin_required
def enable_account(account_id: int) -> ResponseReturnValue:
    return _set_disabled(account_id, False)


def _set_disabled(account_id: int, disabled: bool) -> ResponseReturnValue:
    email = _email(account_id)
    try:
        row = admin_accounts.set_disabled(db_session(), email, disabled, actor=actor(), now=now())
        flash(f"Account {row.email} {'disabled' if disabled else 'enabled'}.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.account", account_id=account_id))


@bp.post("/accounts/<id:account_id>/unlock")
@admin_required
def unlock_account(account_id: int) -> ResponseReturnValue:
    email = _email(account_id)
    try:
        row = admin_accounts.unlock(db_session(), runtime().settings.security, email, actor=actor())
        flash(f"Sign-in for {row.email} unlocked.")
    except AdminError as exc:
        fail(exc)
    return redirect(url_for("admin.account", account_id=account_id))


@bp.post("/accounts/<id:account_id>/reset-password")
@admin_required
def reset_password(account_id: int) -> ResponseReturnValue:
    email = _email(account_id)
    try:
        password = admin_accounts.reset_password(
            db_session(), runtime().hasher, email, actor=actor(), now=now()
        )
    except AdminError as exc:
        fail(exc)
        return redirect(url_for("admin.accounts"))
    after_post.come_back_to(url_for("admin.account", account_id=account_id))
    return render_template(
        "admin/password_shown.html",
        what=f"new portal password of {email} (its sessions were ended)",
        password=password,
        back=url_for("admin.account", account_id=account_id),
    )


@bp.route("/accounts/<id:account_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_account(account_id: int) -> ResponseReturnValue:
    db = db_session()
    info = admin_accounts.info(db, _email(account_id))
    if request.method == "POST":
        try:
            admin_accounts.delete(
                db, info.email, actor=actor(), now=now(), confirm=field("confirm")
            )
            flash(f"Account {info.email} deleted.")
            return redirect(url_for("admin.accounts"))
        except AdminError as exc:
            fail(exc)
            return redirect(url_for("admin.delete_account", account_id=account_id))
    return render_template("admin/account_delete.html", info=info, account_id=account_id)


@bp.post("/accounts/<id:account_id>/addresses")
@admin_required
def add_address(account_id: int) -> ResponseReturnValue:
    email = _email(account_id)
    password = generate_password()
    try:
        row = admin_accounts.add_address(
            db_session(), runtime().hasher, field("address"), email, password, actor=actor()
        )
    except AdminError as exc:
        fail(exc)
        return redirect(url_for("admin.account", account_id=account_id))
    after_post.come_back_to(url_for("admin.account", account_id=account_id))
    return render_template(
        "admin/password_shown.html",
        what=f"address (SMTP) password of {row.address}",
        password=password,
        back=url_for("admin.account", account_id=account_id),
    )


@bp.post("/addresses/<id:address_id>/reset-password")
@admin_required
def reset_address_password(address_id: int) -> ResponseReturnValue:
    db = db_session()
    row = found(admin_accounts.address_by_id, address_id)
    try:
        password = admin_accounts.reset_address_password(
            db, runtime().hasher, row.address, actor=actor()
        )
    except AdminError as exc:
        fail(exc)
        return redirect(url_for("admin.accounts"))
    after_post.come_back_to(url_for("admin.account", account_id=row.account_id))
    return render_template(
        "admin/password_shown.html",
        what=f"new address (SMTP) password of {row.address}",
        password=password,
        back=url_for("admin.account", account_id=row.account_id),
    )


@bp.route("/addresses/<id:address_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_address(address_id: int) -> ResponseReturnValue:
    db = db_session()
    row = found(admin_accounts.address_by_id, address_id)
    account_id, name = row.account_id, row.address
    if request.method == "POST":
        if field("confirm").lower() != name:
            fail(AdminError(f"type {name} to confirm"))
            return redirect(url_for("admin.delete_address", address_id=address_id))
        try:
            purged = admin_accounts.delete_address(db, name, actor=actor(), now=now())
            flash(f"Address {name} deleted; {purged} message(s) purged, its keys retired.")
        except AdminError as exc:
            fail(exc)
        return redirect(url_for("admin.account", account_id=account_id))
    return render_template(
        "admin/address_delete.html", address=name, address_id=address_id, account_id=account_id
    )


@bp.post("/aliases")
@admin_required
def add_alias() -> ResponseReturnValue:
    db = db_session()
    target = field("address")
    try:
        admin_accounts.add_alias(db, field("alias"), target, actor=actor())
        flash(f"Alias added for {target}.")
    except AdminError as exc:
        fail(exc)
    owner = admin_accounts.owner_of(db, target)
    if owner is None:
        return redirect(url_for("admin.accounts"))
    return redirect(url_for("admin.account", account_id=owner))


@bp.post("/aliases/remove")
@admin_required
def remove_alias() -> ResponseReturnValue:
    db = db_session()
    name = field("alias")
    target = admin_accounts.resolve_alias(db, name)
    try:
        admin_accounts.remove_alias(db, name, actor=actor())
        flash(f"Alias {name} removed.")
    except AdminError as exc:
        fail(exc)
    owner = admin_accounts.owner_of(db, target) if target else None
    if owner is None:
        return redirect(url_for("admin.accounts"))
    return redirect(url_for("admin.account", account_id=owner))
