"""Links in a shown mail never point into the portal's own origin.

Threat: a mail (from anyone who can mail a hosted user) whose HTML links to
`/logout`, `/mail/7`, `?x` or a look-alike of an absolute URL that a browser
resolves against the page (`https:/logout`, `//host`, a leading control character).
Shown on the portal's origin, such a link steers the reader around the portal.
Only absolute http(s) and mailto links stay clickable, and they open outside the
page (`target="_blank"`, `rel="noopener noreferrer"`); any other `<a>` keeps its text
and is no link. Checked without a browser over generated hrefs, and in Chromium,
whose URL parser is the one that counts.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Browser, Route

from gateway.runtime import Runtime
from gateway.securepage.content import sanitize_html

from .webmail_support import ALICE, Webmail, deliver, webmail_app

INTO_THE_PORTAL = [
    "/logout",
    "/mail/7",
    "mail/7",
    "?x",
    "#top",
    "",
    ".",
    "//evil.example/x",
    "\\\\evil.example/x",
    "https:/logout",
    "https:logout",
    "http:logout",
    "HTTPS:\\logout",
    " /logout",
    "\x01/logout",
    "&#9;/logout",
    "\u00a0https://evil.example/",
    "https:\\\\/logout",
    "https:///logout",
    "https://\\logout",
    "https://@/logout",
]
OUTSIDE = [
    "https://example.org/x",
    "http://example.org",
    "HTTPS://example.org/a?b=1&amp;c=2#d",
    "mailto:bob@example.org",
    "ht\ttps://example.org/tab",
    " https://example.org/space",
]
# Kept hrefs, as the browser reads them: a scheme with a host, or mailto (whatever
# follows it, blanks included, goes to the mail program, never to the portal).
ABSOLUTE = re.compile(r"(?i)(https?://[^/\\?#@\s][^\s]*|mailto:[\s\S]*)")


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))


def anchors(html: str) -> list[dict[str, str | None]]:
    parser = Anchors()
    parser.feed(html)
    parser.close()
    return parser.anchors


def link(href: str) -> str:
    return f'<p>vor <a href="{href}" target="_self">Klick</a> nach</p>'


@pytest.mark.parametrize("href", INTO_THE_PORTAL)
def test_a_link_into_the_portal_becomes_text(href: str) -> None:
    cleaned = sanitize_html(link(href))
    assert [a.get("href") for a in anchors(cleaned)] == [None]
    assert "Klick" in cleaned


@pytest.mark.parametrize("href", OUTSIDE)
def test_an_absolute_link_stays_and_opens_outside(href: str) -> None:
    (anchor,) = anchors(sanitize_html(link(href)))
    assert anchor["href"] is not None and ABSOLUTE.fullmatch(anchor["href"])
    assert anchor["target"] == "_blank" and anchor["rel"] == "noopener noreferrer"


HREF_PIECES = st.lists(
    st.sampled_from(
        [
            "http",
            "https",
            "HTTPS",
            "mailto",
            "javascript",
            ":",
            "/",
            "\\",
            "//",
            "?",
            "#",
            "@",
            ".",
            " ",
            "\t",
            "\n",
            "\x00",
            "\x01",
            "\u00a0",
            "&#9;",
            "&#47;",
            "&colon;",
            "evil.example",
            "logout",
            "mail",
            "7",
        ]
    ),
    max_size=8,
).map("".join)


@given(hrefs=st.lists(HREF_PIECES | st.text(max_size=12), min_size=1, max_size=4))
def test_every_link_that_survives_is_absolute_and_opens_outside(hrefs: list[str]) -> None:
    """Invariant: whatever the hrefs, each `<a>` left has no href or an absolute
    http(s)-with-host or mailto one, and every `<a>` opens outside the page."""
    html = "".join(f'<a href="{h.replace(chr(34), "&quot;")}">x</a>' for h in hrefs)
    for anchor in anchors(sanitize_html(html)):
        href = anchor.get("href")
        assert href is None or ABSOLUTE.fullmatch(href), href
        assert anchor["target"] == "_blank" and anchor["rel"] == "noopener noreferrer"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


def test_the_webmail_shows_a_relative_link_as_text(
    app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    alice = Webmail(app.test_client()).login(ALICE)
    raw = (
        f"From: mallory@elsewhere.example\r\nTo: {ALICE}\r\nSubject: links\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        '<p><a href="/logout">Abmelden</a> <a href="https://example.org/">Info</a></p>\r\n'
    ).encode()
    page = alice.get(f"/mail/{deliver(runtime, ALICE, raw)}")
    assert page.status_code == 200
    body = page.text.split('class="html-body">', 1)[1].split("</div>", 1)[0]
    assert [a.get("href") for a in anchors(body)] == [None, "https://example.org/"]
    assert "Abmelden" in body


PORTAL = "https://portal.test"


def test_in_chromium_no_link_in_a_mail_leads_into_the_portal(chromium: Browser) -> None:
    """The sanitised HTML served on the portal's origin: every link Chromium sees
    (`document.links`, its own URL parsing) leaves the origin by http(s) or mailto."""
    shown = sanitize_html("".join(link(h) for h in (*INTO_THE_PORTAL, *OUTSIDE)))
    page_html = f"<!doctype html><html><body><div>{shown}</div></body></html>"

    def serve(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=page_html)

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.route(f"{PORTAL}/**", serve)
        page.goto(f"{PORTAL}/mail/1")
        links = page.evaluate(
            "() => [...document.links].map(a => [a.href, new URL(a.href).origin,"
            " new URL(a.href).protocol, a.target, a.rel])"
        )
        anchor_count = page.evaluate("() => document.querySelectorAll('a').length")
    finally:
        context.close()
    assert anchor_count == len(INTO_THE_PORTAL) + len(OUTSIDE)
    assert len(links) == len(OUTSIDE), links
    for href, origin, protocol, target, rel in links:
        assert origin != PORTAL and protocol in ("http:", "https:", "mailto:"), href
        assert target == "_blank" and rel == "noopener noreferrer"
