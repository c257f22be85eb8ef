"""Autoresponder pages: saved away messages per address, one active, the 7-day memory reset.

The rules themselves (window, weekdays, exclusions, once per sender per 7
days, RFC 3834) live in gateway.autoresponder; these pages only edit the rows.
Start and end are entered and shown in UTC, like every time in the portal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from gateway import autoresponder
from gateway.addresses import InvalidAddress, normalize_address, normalize_domain
from gateway.models import Address, AutoreplySent, Autoresponder
from webportal import expired_form, typed_text
from webportal.access import login_required
from webportal.extensions import db_session
from webportal.i18n import gettext, gettext_noop
from webportal.ids import form_id, parse_int

bp = Blueprint("autoreply", __name__, url_prefix="/autoresponder")

noop = gettext_noop
MAX_NAME = 100
MAX_SUBJECT = 200
MAX_BODY = 20_000
MAX_EXCLUDED = 10_000
WEEKDAY_NAMES = (
    noop("Monday"),
    noop("Tuesday"),
    noop("Wednesday"),
    noop("Thursday"),
    noop("Friday"),
    noop("Saturday"),
    noop("Sunday"),
)
SAVED = noop("The away message was saved.")
ACTIVATED = noop("“{name}” is now the active away message for {address}.")
DEACTIVATED = noop("The away message for {address} is switched off.")
DELETED = noop("The away message was deleted.")
RESET_DONE = noop("Forgotten: {count} sender(s) get the away message again.")
NAME_NEEDED = noop("Give the message a name.")
SUBJECT_NEEDED = noop("Write a subject.")
BODY_NEEDED = noop("Write the message.")
TOO_LONG = noop("{field} is too long.")
BAD_TIME = noop("Enter start and end as date and time.")
END_BEFORE_START = noop("The end must be after the start.")
NO_WEEKDAY = noop("Choose at least one weekday.")
BAD_REPLY_FROM = noop("Choose one of your addresses to answer from.")
BAD_EXCLUSION = noop("“{entry}” is neither an address nor a domain written as @domain.")


def _addresses() -> list[Address]:
    return list(
        db_session().scalars(
            sa.select(Address)
            .where(Address.account_id == current_user.account_id)
            .order_by(Address.address)
        )
    )


def _owned_address(address_id: int) -> Address:
    address = db_session().get(Address, address_id)
    if address is None or address.account_id != current_user.account_id:
        abort(404)
    return address


def _owned_responder(responder_id: int) -> Autoresponder:
    responder = db_session().get(Autoresponder, responder_id)
    if responder is None:
        abort(404)
    _owned_address(responder.address_id)
    return responder


@dataclass(frozen=True)
class AddressPanel:
    address: Address
    responders: list[Autoresponder]
    remembered: int


def weekday_names(mask: int) -> str:
    if mask & autoresponder.ALL_WEEKDAYS == autoresponder.ALL_WEEKDAYS:
        return gettext("every day")
    return ", ".join(gettext(name) for bit, name in enumerate(WEEKDAY_NAMES) if mask & (1 << bit))


@bp.get("")
@login_required
def overview() -> ResponseReturnValue:
    s = db_session()
    panels = []
    for address in _addresses():
        responders = list(
            s.scalars(
                sa.select(Autoresponder)
                .where(Autoresponder.address_id == address.id)
                .order_by(Autoresponder.name, Autoresponder.id)
            )
        )
        remembered = (
            s.scalar(
                sa.select(sa.func.count())
                .select_from(AutoreplySent)
                .where(AutoreplySent.address_id == address.id)
            )
            or 0
        )
        panels.append(AddressPanel(address, responders, remembered))
    return render_template(
        "portal/mail/autoresponder.html", panels=panels, weekday_names=weekday_names
    )


@dataclass
class ResponderForm:
    name: str = ""
    subject: str = ""
    body: str = ""
    starts_at: str = ""
    ends_at: str = ""
    weekdays: int = autoresponder.ALL_WEEKDAYS
    reply_from_id: int | None = None
    excluded: str = ""
    activate: bool = False


def _local(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M") if value else ""


def _form_of(responder: Autoresponder) -> ResponderForm:
    return ResponderForm(
        name=responder.name,
        subject=responder.subject,
        body=responder.body,
        starts_at=_local(responder.starts_at),
        ends_at=_local(responder.ends_at),
        weekdays=responder.weekdays,
        reply_from_id=responder.reply_from_id,
        excluded=responder.excluded,
        activate=responder.active,
    )


def _read_form() -> ResponderForm:
    data = request.form
    mask = 0
    for value in data.getlist("weekday"):
        day = parse_int(value, 0, 6)
        if day is not None:
            mask |= 1 << day
    return ResponderForm(
        name=data.get("name", "").strip(),
        subject=data.get("subject", "").strip(),
        body=data.get("body", ""),
        starts_at=data.get("starts_at", "").strip()[:40],
        ends_at=data.get("ends_at", "").strip()[:40],
        weekdays=mask,
        reply_from_id=form_id("reply_from"),
        excluded=data.get("excluded", ""),
        activate=data.get("activate") == "yes",
    )


def _when(value: str) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _validate(form: ResponderForm, owned: list[Address]) -> tuple[str | None, dict[str, object]]:
    """The first problem (a message id and its fields), or (None, parsed values)."""
    if not form.name:
        return NAME_NEEDED, {}
    if len(form.name) > MAX_NAME:
        return TOO_LONG, {"field": gettext("Name")}
    if not form.subject:
        return SUBJECT_NEEDED, {}
    if len(form.subject) > MAX_SUBJECT:
        return TOO_LONG, {"field": gettext("Subject")}
    if not form.body.strip():
        return BODY_NEEDED, {}
    if len(form.body) > MAX_BODY:
        return TOO_LONG, {"field": gettext("Message")}
    if len(form.excluded) > MAX_EXCLUDED:
        return TOO_LONG, {"field": gettext("Never answer")}
    try:
        starts, ends = _when(form.starts_at), _when(form.ends_at)
    except (ValueError, OverflowError):  # not a date, or one beyond year 1..9999 in UTC
        return BAD_TIME, {}
    if starts and ends and ends <= starts:
        return END_BEFORE_START, {}
    if not form.weekdays:
        return NO_WEEKDAY, {}
    if form.reply_from_id is not None and form.reply_from_id not in {a.id for a in owned}:
        return BAD_REPLY_FROM, {}
    entries = autoresponder.parse_exclusions(form.excluded)
    for entry in entries:
        try:
            if entry.startswith("@"):
                normalize_domain(entry[1:])
            else:
                normalize_address(entry)
        except InvalidAddress:
            return BAD_EXCLUSION, {"entry": entry[:100]}
    return None, {"starts_at": starts, "ends_at": ends, "excluded": "\n".join(entries)}


def _edit_page(
    address: Address, form: ResponderForm, responder: Autoresponder | None, error: str | None = None
) -> ResponseReturnValue:
    return (
        render_template(
            "portal/mail/autoresponder_edit.html",
            address=address,
            form=form,
            responder=responder,
            owned=_addresses(),
            weekdays=[
                (bit, name, bool(form.weekdays & (1 << bit)))
                for bit, name in enumerate(WEEKDAY_NAMES)
            ],
            error=error,
        ),
        400 if error else 200,
    )


def _expired(note: str) -> ResponseReturnValue | None:
    """The away message form as it was posted after its token expired
    (webportal.expired_form), with `note` said: nothing is saved."""
    if not current_user.is_authenticated:
        return None
    args = request.view_args or {}
    responder = None
    if "responder_id" in args:
        responder = _owned_responder(args["responder_id"])
        address = _owned_address(responder.address_id)
    else:
        address = _owned_address(args["address_id"])
    return _edit_page(address, _read_form(), responder, note)


def _save(address: Address, responder: Autoresponder | None) -> ResponseReturnValue:
    form = _read_form()
    owned = _addresses()
    if typed_text.replaced():
        return _edit_page(address, form, responder, typed_text.note())
    problem, values = _validate(form, owned)
    if problem is not None:
        return _edit_page(address, form, responder, gettext(problem, **values))
    s = db_session()
    if responder is None:
        responder = Autoresponder(address_id=address.id, name=form.name, subject="", body="")
        s.add(responder)
    responder.name = form.name
    responder.subject = form.subject
    responder.body = form.body.replace("\r\n", "\n")
    responder.starts_at = values["starts_at"]  # type: ignore[assignment]
    responder.ends_at = values["ends_at"]  # type: ignore[assignment]
    responder.weekdays = form.weekdays
    responder.reply_from_id = form.reply_from_id
    responder.excluded = str(values["excluded"])
    s.flush()
    if form.activate and not responder.active:
        autoresponder.activate(s, responder)
    elif not form.activate and responder.active:
        responder.active = False
    flash(SAVED)
    return redirect(url_for("autoreply.overview"), code=303)


@bp.route("/new/<id:address_id>", methods=["GET", "POST"])
@login_required
def new(address_id: int) -> ResponseReturnValue:
    address = _owned_address(address_id)
    if request.method == "POST":
        return _save(address, None)
    return _edit_page(address, ResponderForm(reply_from_id=address.id), None)


@bp.route("/<id:responder_id>", methods=["GET", "POST"])
@login_required
def edit(responder_id: int) -> ResponseReturnValue:
    responder = _owned_responder(responder_id)
    address = _owned_address(responder.address_id)
    if request.method == "POST":
        return _save(address, responder)
    return _edit_page(address, _form_of(responder), responder)


@bp.post("/<id:responder_id>/activate")
@login_required
def activate(responder_id: int) -> ResponseReturnValue:
    responder = _owned_responder(responder_id)
    address = _owned_address(responder.address_id)
    autoresponder.activate(db_session(), responder)
    flash(gettext(ACTIVATED, name=responder.name, address=address.address))
    return redirect(url_for("autoreply.overview"), code=303)


@bp.post("/<id:responder_id>/deactivate")
@login_required
def deactivate(responder_id: int) -> ResponseReturnValue:
    responder = _owned_responder(responder_id)
    address = _owned_address(responder.address_id)
    responder.active = False
    flash(gettext(DEACTIVATED, address=address.address))
    return redirect(url_for("autoreply.overview"), code=303)


@bp.post("/<id:responder_id>/delete")
@login_required
def delete(responder_id: int) -> ResponseReturnValue:
    db_session().delete(_owned_responder(responder_id))
    flash(DELETED)
    return redirect(url_for("autoreply.overview"), code=303)


@bp.post("/reset/<id:address_id>")
@login_required
def reset(address_id: int) -> ResponseReturnValue:
    address = _owned_address(address_id)
    count = autoresponder.reset(db_session(), address.id)
    flash(gettext(RESET_DONE, count=count))
    return redirect(url_for("autoreply.overview"), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    # What the user writes; a NUL in it comes back shown, never the 400 page.
    for endpoint in ("autoreply.new", "autoreply.edit"):
        typed_text.keep_fields(app, endpoint, ["name", "subject", "body", "excluded"])
        expired_form.refill_with(app, endpoint, _expired)
