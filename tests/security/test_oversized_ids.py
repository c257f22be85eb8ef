"""Threat: an id the portal does not expect turns a request into a server error.

The shape that once broke it: any id above 2^63 in a path, query or form of the
webmail, secure-page or autoresponder views (`/mail/9223372036854775808`,
`/compose?reply=10**30`, `reply_from=2**64` in the autoresponder form) reached the
database as an integer it cannot hold, and the user got a 500 with a traceback in
the log; on PostgreSQL any id above 2^31-1 did (`integer out of range`: every id
column is an INTEGER). Now path ids go through the `id` URL converter (ASCII
digits, 1..2^31-1) and query/form ids through `webportal.ids`, so every such
request gets a clear 404 or 400, or the page as if the id were absent.

The walk below takes every route of the portal from `app.url_map`, anonymous and
logged in, GET and POST (with a valid CSRF token), and puts each bad value into
every path argument, and into every id-like query and form field (with the path
arguments both bad and valid, so the query and form handling is reached too).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.webmail_support import BOB, Webmail, webmail_app

ALICE = "alice@example.test"
CAROL = "carol@elsewhere.example"
BAD = [
    str(2**31),  # past PostgreSQL's INTEGER, which every id column is
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(10**30),
    "9" * 400,
    "-1",
    "-9223372036854775809",
    "0",
    "00",
    "1.5",
    "1e9",
    "0x10",
    "abc",
    " 1",
    "1 ",
    "\u0661\u0662",  # Arabic-Indic digits: `int()` reads them, ids are ASCII
    "\u00b9",  # superscript one
    "\uff11",  # full-width one
    "\u00fc\u00df\u2603",
    "\U0001f600",
    "%00",
    "NaN",
    "",
]
# Every query or form field the portal reads as a number.
ID_FIELDS = [
    "page",
    "reply",
    "forward",
    "draft",
    "draft_id",
    "carry_from",
    "reply_from",
    "days",
    "index",
    "weekday",
    "address",
    "folder",
    "message_id",
    "carry",
]
WALK_IP = "203.0.113.77"
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    """The portal with no WKD lookups, and lockout and login limits out of the walk's way
    (it posts wrong passwords to every form that takes one, hundreds of times)."""
    walked = runtime.settings.replace(
        security={"lockout_threshold": 1_000_000},
        portal={"login_rate_limit": "100000/minute"},
    )
    app = webmail_app(dataclasses.replace(runtime, settings=walked))
    # An unexpected exception becomes the 500 page a user would get, and the walk goes on.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Iterator[Webmail]:
    """Alice, logged in, with mail, an encrypted message, a secure page and an autoresponder,
    so that id 1 of each kind exists and valid ids lead somewhere."""
    with app.test_client() as client:
        webmail = Webmail(client).login(ALICE)
        sent = webmail.compose(
            to=f"{ALICE}, {BOB}, {CAROL}", subject="one", text="hi", **{"from": ALICE}
        )
        assert sent.status_code == 303, sent.text
        sealed = webmail.compose(
            to=f"{BOB}, {CAROL}",
            subject="two",
            text="secret",
            encrypt="yes",
            password="a long enough password",
            **{"from": ALICE},
        )
        assert sealed.status_code == 303, sealed.text
        path = "/autoresponder/new/1"
        made = webmail.post(
            path,
            {
                "name": "away",
                "subject": "Away",
                "body": "Back soon.",
                "reply_from": "1",
                "weekday": "0",
            },
            page=path,
        )
        assert made.status_code in (302, 303), made.text
        yield webmail


def _routes(app: Flask) -> list[Rule]:
    return [r for r in app.url_map.iter_rules() if r.endpoint != "static"]


def _path(rule: Rule, value: str) -> str:
    return _ARGUMENT.sub(lambda _m: quote(value, safe=""), rule.rule)


class Walker:
    """Sends the requests; when logged in, logs in again if a request ended the session
    (`/account/sessions/1/end` ends the walker's own), and repeats the request."""

    def __init__(self, client: FlaskClient, *, login: Callable[[], None] | None) -> None:
        self.client = client
        self.login = login
        self.token = ""
        self.renew()

    def renew(self) -> None:
        if self.login is not None:
            self.login()
        self.token = csrf_from(self.client.get("/compose" if self.login else "/login").text)

    def logged_in(self) -> bool:
        return self.client.get("/inbox").status_code == 200

    def send(self, method: str, path: str, fields: dict[str, str]) -> TestResponse:
        for _attempt in range(2):
            # From an address of its own: the walk's many POST /login fill that address's
            # login rate limit, not the one the walker logs in again from.
            environ = {"REMOTE_ADDR": WALK_IP}
            if method == "GET":
                response = self.client.get(path, query_string=fields, environ_overrides=environ)
            else:
                data = {**fields, "csrf_token": self.token}
                response = self.client.post(
                    path, query_string=fields, data=data, environ_overrides=environ
                )
            to_login = response.status_code == 302 and "/login" in response.location
            if self.login is None or not to_login or self.logged_in():
                return response
            self.renew()
        return response


def _walk(walker: Walker, app: Flask) -> list[str]:
    """Every route × bad value × method; the requests that got a 5xx."""
    failures: list[str] = []
    for rule in _routes(app):
        if rule.endpoint == "auth.logout":
            continue  # walked last, by the caller: it ends the session
        methods = sorted((rule.methods or set()) & {"GET", "POST"})
        for value in BAD:
            paths = {_path(rule, value)}
            if rule.arguments:
                paths.add(_path(rule, "1"))
            fields = {name: value for name in ID_FIELDS}
            for path in sorted(paths):
                for method in methods:
                    response = walker.send(method, path, fields)
                    if response.status_code >= 500:
                        failures.append(
                            f"{method} {path[:60]} {value[:30]!r}: {response.status_code}"
                        )
    return failures


def test_every_route_answers_bad_ids_without_a_server_error_logged_in(
    app: Flask, alice: Webmail
) -> None:
    walker = Walker(alice.client, login=lambda: None)
    walker.login = lambda: (alice.login(ALICE), None)[1]
    failures = _walk(walker, app)
    assert alice.get("/inbox").status_code == 200  # still logged in: the walk was real
    assert not failures, "\n".join(failures)


def test_every_route_answers_bad_ids_without_a_server_error_anonymous(
    app: Flask, mail_users: dict[str, str]
) -> None:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        walker = Walker(client, login=None)
        failures = _walk(walker, app)
        logout = client.post("/logout", data={"csrf_token": walker.token})
        assert logout.status_code < 500
    assert not failures, "\n".join(failures)


def test_walk_covers_every_id_route(app: Flask) -> None:
    """The walk is only as good as its list: every integer argument is an `id` or an index."""
    for rule in _routes(app):
        for name, converter in rule._converters.items():
            kind = type(converter).__name__
            assert kind not in ("IntegerConverter", "NumberConverter", "FloatConverter"), (
                f"{rule.rule}: <{name}> uses {kind}; use the bounded `id` or `index` converter"
            )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/mail/{2**63}", 404),
        (f"/mail/{2**31 - 1}", 404),  # the largest id: valid, but no such message
        (f"/mail/{2**31}", 404),
        (f"/mail/{2**63 - 1}", 404),
        ("/mail/-1", 404),
        ("/mail/\u0661", 404),
        (f"/autoresponder/{2**64}", 404),
        (f"/compose?reply={10**30}", 404),
        ("/compose?forward=abc", 404),
        (f"/inbox?page={10**30}", 200),  # a page number is clamped, as after deletions
        ("/inbox?page=-5", 200),
    ],
)
def test_clear_answers(alice: Webmail, path: str, status: int) -> None:
    assert alice.get(path).status_code == status


def test_largest_id_form_fields_get_clear_answers(alice: Webmail) -> None:
    path = "/autoresponder/new/1"
    edited = alice.post(
        path, {"name": "n", "subject": "s", "body": "b", "reply_from": str(2**64)}, page=path
    )
    assert edited.status_code == 400
    extended = alice.post("/secure/links/1/extend", {"days": str(10**30)}, page="/secure/sent")
    assert extended.status_code in (302, 303, 400)
    assert alice.post("/secure/links/1/extend", {"days": "7"}, page="/secure/sent").status_code in (
        302,
        303,
    )
