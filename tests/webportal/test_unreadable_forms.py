"""A form body the portal cannot read (a multipart body with a wrong or missing boundary
or a truncated part, url-encoded bytes that are not UTF-8) is a bad request that says so.

Werkzeug used to read such a body as an empty form: the CSRF check found no token and
the visitor was told the form had expired, which sent them looking for the wrong cause.
The answer is still a refusal (nothing in the body is acted on) and still no traceback.
Sent over TLS to the real server by a real HTTP client, with the session cookie and a
valid CSRF token, as a browser would.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from gateway.runtime import Runtime
from webportal import create_app
from webportal.server import PortalServer

from .conftest import csrf_from


@pytest.fixture
def portal(runtime: Runtime) -> Iterator[PortalServer]:
    with PortalServer(create_app(runtime), runtime.settings) as server:
        yield server


@dataclass
class Answer:
    status: int
    text: str
    headers: http.client.HTTPMessage


@dataclass
class Browser:
    """One session against the portal: its cookies and the login form's CSRF token."""

    portal: PortalServer
    context: ssl.SSLContext
    cookies: dict[str, str] = field(default_factory=dict)
    token: str = ""

    @property
    def cookie(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def send(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> Answer:
        conn = http.client.HTTPSConnection(
            "localhost", self.portal.port, context=self.context, timeout=30
        )
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body or None, headers=headers)
            reply = conn.getresponse()
            answer = Answer(reply.status, reply.read().decode(), reply.headers)
        finally:
            conn.close()
        for set_cookie in answer.headers.get_all("Set-Cookie") or []:
            name, _, value = set_cookie.split(";", 1)[0].partition("=")
            self.cookies[name] = value
        return answer

    def open_login_form(self) -> None:
        self.token = csrf_from(self.send("GET", "/login").text)


BOUNDARY = "sealgate-test-boundary"


def multipart(fields: dict[str, str], boundary: str = BOUNDARY) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


@pytest.fixture
def browser(portal: PortalServer, client_ssl_context: ssl.SSLContext) -> Browser:
    opened = Browser(portal, client_ssl_context)
    opened.open_login_form()
    return opened


def login_fields(token: str) -> dict[str, str]:
    return {"csrf_token": token, "email": "alice@example.test", "password": "portal-alice-smtp-pw"}


FORM_DATA = f"multipart/form-data; boundary={BOUNDARY}"


def _cut(body: bytes, before: bytes) -> bytes:
    return body[: body.rindex(before)]


# Bodies holding a valid token and the right password that cannot be read:
# case -> (the body for a CSRF token, its Content-Type).
BROKEN: dict[str, Callable[[str], tuple[bytes, str]]] = {
    "truncated part": lambda t: (_cut(multipart(login_fields(t)), b"alice-smtp-pw"), FORM_DATA),
    "no closing boundary": lambda t: (
        _cut(multipart(login_fields(t)), f"--{BOUNDARY}--".encode()),
        FORM_DATA,
    ),
    "other boundary in the body": lambda t: (
        multipart(login_fields(t)),
        "multipart/form-data; boundary=not-the-one",
    ),
    "no boundary": lambda t: (multipart(login_fields(t)), "multipart/form-data"),
    "part without a disposition": lambda t: (
        multipart(login_fields(t)).replace(
            b'Content-Disposition: form-data; name="email"', b"X: 1"
        ),
        FORM_DATA,
    ),
    "url-encoded, not UTF-8": lambda t: (
        f"csrf_token={t}&email=alice%40example.test&password=".encode() + b"\xff",
        "application/x-www-form-urlencoded",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_form_body_that_cannot_be_read_is_a_bad_request_that_says_so(
    browser: Browser, mail_users: dict[str, str], case: str
) -> None:
    body, content_type = BROKEN[case](browser.token)
    answer = browser.send("POST", "/login", body, content_type)
    assert answer.status == 400
    assert "The form data could not be read." in answer.text
    assert "Form expired" not in answer.text and "has expired" not in answer.text
    assert "<!doctype html>" in answer.text
    for leak in ("Traceback", "ValueError", "boundary", "portal-alice"):
        assert leak not in answer.text
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # Nothing in the body was acted on: still signed out.
    inbox = browser.send("GET", "/inbox")
    assert inbox.status == 302 and "/login" in inbox.headers["Location"]


def test_a_whole_multipart_form_is_read_and_still_needs_its_token(
    browser: Browser, mail_users: dict[str, str]
) -> None:
    fields = login_fields(browser.token)
    without_token = {k: v for k, v in fields.items() if k != "csrf_token"}
    refused = browser.send("POST", "/login", multipart(without_token), FORM_DATA)
    assert refused.status == 400 and "Form expired" in refused.text

    signed_in = browser.send("POST", "/login", multipart(fields), FORM_DATA)
    assert signed_in.status == 302 and signed_in.headers["Location"].endswith("/inbox")
    assert browser.send("GET", "/inbox").status == 200
