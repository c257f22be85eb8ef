"""Portal fixtures: an app on the shared runtime, a test client, and a login helper."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, sync_playwright
from werkzeug.test import TestResponse

from gateway.runtime import Runtime
from webportal import create_app

# Debian's chromium, as root, with no network but the portal's (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless Debian chromium driven by Playwright (never `playwright install`)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime, testing=True)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    # https: the default settings serve the portal over TLS (Secure cookies, HSTS).
    with app.test_client() as test_client:
        test_client.environ_base["wsgi.url_scheme"] = "https"
        yield test_client


LoginFn = Callable[..., TestResponse]


@pytest.fixture
def login(client: FlaskClient) -> LoginFn:
    """Post the login form the way a browser does: fetch it, send its CSRF token back."""

    def _login(email: str, password: str, next_url: str | None = None) -> TestResponse:
        query = {"next": next_url} if next_url is not None else {}
        page = client.get("/login", query_string=query)
        return client.post(
            "/login",
            query_string=query,
            data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        )

    return _login
