"""Helpers for the account-security portal tests: a settable clock, logins from a
chosen address and browser, and reading secrets off the pages."""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway import totp
from gateway.models import QueueItem
from gateway.runtime import Runtime

from .conftest import csrf_from

ALICE = "alice@example.test"
ALICE_PW = "portal-alice-smtp-pw"
BOB = "bob@example.test"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')
CODES_RE = re.compile(r"<li><code>([a-z2-9-]{19})</code></li>")
APP_PASSWORD_RE = re.compile(r'id="new-app-password">([a-z2-9 ]+)<')


@dataclass
class FakeClock:
    """The portal's clock in a test: starts at a step boundary (+5 s), moves when told."""

    now: dt.datetime = field(
        default_factory=lambda: dt.datetime.fromtimestamp(
            (int(dt.datetime.now(dt.UTC).timestamp()) // 30) * 30 + 5, dt.UTC
        )
    )

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)

    def code(self, secret: str) -> str:
        return totp.code_at(secret, totp.time_step(self.now))


class Browser:
    """A test client that always comes from one address with one User-Agent."""

    def __init__(self, client: FlaskClient, ip: str = "198.51.100.7", agent: str = FIREFOX):
        self.client = client
        self.ip = ip
        self.agent = agent
        client.environ_base["wsgi.url_scheme"] = "https"

    def _env(self) -> dict[str, object]:
        return {"REMOTE_ADDR": self.ip, "HTTP_USER_AGENT": self.agent, "wsgi.url_scheme": "https"}

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, environ_base=self._env())

    def post(
        self, path: str, data: dict[str, str] | None = None, *, page: str | None = None
    ) -> TestResponse:
        """POST a form with the CSRF token of `page` (default: the same path)."""
        token = csrf_from(self.get(page or path).text)
        return self.client.post(
            path, data={**(data or {}), "csrf_token": token}, environ_base=self._env()
        )

    def login(self, email: str = ALICE, password: str = ALICE_PW) -> TestResponse:
        return self.post("/login", {"email": email, "password": password})

    def code(self, code: str) -> TestResponse:
        return self.post("/login/code", {"code": code})

    def logout(self) -> TestResponse:
        return self.post("/logout", page="/inbox")


def secret_from(page: str) -> str:
    match = SECRET_RE.search(page)
    assert match, "the page shows no TOTP secret"
    return match.group(1).replace(" ", "")


def codes_from(page: str) -> list[str]:
    return CODES_RE.findall(page)


def app_password_from(page: str) -> str:
    match = APP_PASSWORD_RE.search(page)
    assert match, "the page shows no new app password"
    return match.group(1)


def enable_2fa(browser: Browser, clock: FakeClock) -> tuple[str, list[str]]:
    """Turn 2FA on through the pages (logged in, fresh); the secret and recovery codes."""
    page = browser.get("/account/2fa/enable")
    assert page.status_code == 200, page.status_code
    secret = secret_from(page.text)
    done = browser.post("/account/2fa/enable", {"code": clock.code(secret)})
    assert done.status_code == 200
    codes = codes_from(done.text)
    assert len(codes) == 10
    return secret, codes


def queued(runtime: Runtime) -> list[QueueItem]:
    with runtime.sessions() as session:
        return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))
