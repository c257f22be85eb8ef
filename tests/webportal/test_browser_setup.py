"""The "Set up a mail program" page in a real Chromium: reached from the Security page,
it names the servers, ports and login; the profile downloads from it.

Screenshots go to the test's tmp dir; with SEALGATE_SCREENSHOTS_DIR set (e.g.
docs/screenshots) the page's is copied there for the README.
"""

from __future__ import annotations

import dataclasses
import os
import plistlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from gateway.runtime import Runtime
from webportal import create_app
from webportal.server import PortalServer

from .webmail_support import ALICE, PASSWORDS


@pytest.fixture
def shown(runtime: Runtime) -> Runtime:
    """The runtime with production names and ports: the portal only shows them here."""
    return dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            smtp={"hostname": "mail.example.test", "tls_port": 465, "submission_port": 587},
            imap={"port": 143, "tls_port": 993},
        ),
    )


@pytest.fixture
def portal(shown: Runtime, mail_users: dict[str, str]) -> Iterator[PortalServer]:
    server = PortalServer(create_app(shown), shown.settings)
    server.start()
    yield server
    server.stop()


@pytest.mark.browser
def test_setup_page_from_the_security_page(
    chromium: Browser, portal: PortalServer, shown: Runtime, tmp_path: Path
) -> None:
    context = chromium.new_context(
        ignore_https_errors=True,
        locale="en-US",
        accept_downloads=True,
        viewport={"width": 1100, "height": 760},
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{portal.url}/login")
        page.fill("#email", ALICE)
        page.fill("#password", PASSWORDS[ALICE])
        page.click("button.primary")
        expect(page).to_have_url(f"{portal.url}/inbox")
        page.goto(f"{portal.url}/account/security")
        page.click("#secret-key >> text=Set up a mail program")
        expect(page).to_have_url(f"{portal.url}/setup")
        settings = shown.settings
        rows = page.locator("table.setup tbody tr")
        expect(rows).to_have_count(4)
        expect(rows.nth(0)).to_contain_text(f"Incoming (IMAP) {settings.smtp.hostname}")
        expect(rows.nth(0)).to_contain_text(str(settings.imap.tls_port))
        expect(page.locator("ul.setup-addresses")).to_contain_text(ALICE)
        page.screenshot(path=str(tmp_path / "setup.png"), full_page=True)
        with page.expect_download() as download:
            page.click("text=Profile for iPhone, iPad and Mac")
        profile = plistlib.loads(Path(download.value.path()).read_bytes())
        assert profile["PayloadContent"][0]["EmailAddress"] == ALICE
    finally:
        context.close()
    assert (tmp_path / "setup.png").stat().st_size > 1000
    target = os.environ.get("SEALGATE_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(tmp_path / "setup.png", Path(target) / "mail-program-setup.png")
