"""Threat: a compression bomb mailed to a hosted user takes the portal's memory when read.

The shape that once broke it: a PGP/MIME message of about 1 MB whose encrypted
data is one compressed packet of zeros. The webmail decrypted stored mail with
pgpy in the portal process, which inflates compressed packets without any limit:
one page view grew the portal to 2 GB. Now every reader of stored OpenPGP
decrypts in the sandbox of keystore.untrusted under the `[limits]` bounds; the
page says the message cannot be shown, the portal's memory stays flat, and the
admin's log names the message.

Issue 10, must show 2. The bomb here inflates to 1 GiB; the same builder with a
1 MiB payload is shown normally, so the bomb is a valid message, not garbage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page

from gateway import db, mailbox
from gateway.models import Address
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from keystore import store
from tests.security.bombs import compression_bomb, now
from tests.webportal import conftest as portal_fixtures
from tests.webportal import test_browser_webmail as webmail
from tests.webportal.webmail_support import BOB
from webportal.i18n import translate
from webportal.mail import CANNOT_SHOW
from webportal.server import PortalServer

# The webmail's browser fixtures: a real portal on its own port, Chromium contexts.
chromium = portal_fixtures.chromium
served, portal, rt, browsers = webmail.served, webmail.portal, webmail.rt, webmail.browsers

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
MARKER = b"X-Bomb-Marker: f3a9c1d27b"
ATTACHMENT = (
    b'Content-Type: multipart/mixed; boundary="zz"\r\n' + MARKER + b"\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain\r\n\r\nA message with zeros attached.\r\n"
    b"--zz\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename=zeros.bin\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n"
)


def store_bomb(runtime: Runtime, address: str, inflated: int) -> int:
    """Mail `address` a PGP/MIME message whose payload inflates to `inflated` bytes."""
    with db.transaction(runtime.sessions) as session:
        key = store.get_or_create(session, runtime.ring.get(), address, now(), events=_no_events)
        secret = store.unlock_row(runtime.ring.get(), key)
        bomb = compression_bomb(
            store.parsed_public_key(key), secret, inflated=inflated, prefix=ATTACHMENT
        )
        outer = (
            f"From: mallory@elsewhere.example\r\nTo: {address}\r\nSubject: zeros {inflated}\r\n\r\n"
        ).encode()
        raw = pgpmime.build_encrypted(outer, bomb)
        row_address = session.scalar(sa.select(Address).where(Address.address == address))
        assert row_address is not None
        row = mailbox.store(
            session,
            row_address,
            raw,
            queue_id="bomb",
            envelope_from="mallory@elsewhere.example",
            now=now(),
            encrypted=True,
        )
        session.flush()
        return row.id


def _no_events(session: object, action: str, target: str, detail: str) -> None:
    return None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_peak() -> None:
    """Start VmHWM afresh at the current RSS (Linux clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture
def bob_page(browsers: webmail.Browsers, portal: PortalServer) -> Iterator[Page]:
    page = browsers.page()
    webmail.sign_in(page, portal, BOB)
    yield page


@pytest.mark.browser
@pytest.mark.slow
def test_a_gib_bomb_is_refused_with_a_page_and_the_portal_stays_small(
    bob_page: Page,
    portal: PortalServer,
    rt: Runtime,
    mail_users: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    shown = store_bomb(rt, BOB, MIB)
    bomb = store_bomb(rt, BOB, GIB)

    # The control: the same construction, 1 MiB of zeros, opens as a message.
    answer = bob_page.goto(f"{portal.url}/mail/{shown}")
    assert answer is not None and answer.status == 200
    assert "A message with zeros attached." in bob_page.content()
    assert "zeros.bin" in bob_page.content()
    assert translate("en", CANNOT_SHOW) not in bob_page.content()

    # The bomb: the portal (this process) answers the page; its peak RSS is measured.
    baseline = rss_kib()
    reset_peak()
    started = time.monotonic()
    answer = bob_page.goto(f"{portal.url}/mail/{bomb}")
    elapsed = time.monotonic() - started
    grown_mib = (peak_kib() - baseline) / 1024
    print(f"\n1 GiB bomb: page in {elapsed:.2f} s, portal peak RSS +{grown_mib:.1f} MiB")
    assert answer is not None and answer.status == 422
    assert bob_page.locator("p.error").inner_text() == translate("en", CANNOT_SHOW)
    assert grown_mib < 64

    # Its attachment link and reply get the same page, never a 500 or the data.
    for path in (
        f"/mail/{bomb}/attachments/0",
        f"/compose?reply={bomb}",
        f"/compose?forward={bomb}",
    ):
        answer = bob_page.goto(f"{portal.url}{path}")
        assert answer is not None and answer.status == 422, path
        assert translate("en", CANNOT_SHOW) in bob_page.locator("p.error").inner_text()

    # The admin sees which message, and why; nothing of its content.
    lines = [r.getMessage() for r in caplog.records if "cannot be shown" in r.getMessage()]
    assert any(f"stored message {bomb} of {BOB}" in line and "too-large" in line for line in lines)
    assert not any(MARKER.decode() in r.getMessage() for r in caplog.records)


def test_the_refusal_is_translated() -> None:
    for language in ("de", "fr"):
        assert translate(language, CANNOT_SHOW) != CANNOT_SHOW
