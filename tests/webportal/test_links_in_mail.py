"""Links in a shown mail never point into the portal's own origin.

Threat: a mail (from anyone who can mail a hosted user) whose HTML links to
`/logout`, `/mail/7`, `?x` or a look-alike of an absolute URL that a browser
resolves against the page (`https:/logout`, `//host`, a leading control character).
Shown on the portal's origin, such a link steers the reader around the portal.
Only absolute http(s) and mailto links stay clickable, and they open outside the
page (`target="_blank"`, `rel="noopener noreferrer"`); any other `<a>` keeps its text
and is no link. Checked without a browser over generated hrefs, and in Chromium,
whose URL parser is the one that counts.

Threat too: an absolute link to the portal's own host (`https://<portal>/account/...`
in any spelling a browser reads as that host) taking the reader, from inside a
trusted-looking message, into their own account pages with parameters a stranger
chose. Such a link is text too, in the webmail and on the secure page.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from html.parser import HTMLParser

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Browser, Route

from gateway.runtime import Runtime
from gateway.securepage.content import sanitize_html
from gateway.securepage.mail_links import own_host_forms
from tests.webportal.test_secure import CAROL as SECURE_CAROL
from tests.webportal.test_secure import PASSWORD as SECURE_PASSWORD
from tests.webportal.test_secure import compose as secure_compose
from tests.webportal.test_secure import send as secure_send
from tests.webportal.test_secure import unlock

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


# Links to the portal's own host, absolute: from inside a trusted-looking message they
# would take the reader into their own account pages with a stranger's parameters.
OWN_HOST = "portal.test"
TO_THE_PORTAL_HOST = [
    "https://portal.test/account/password?new=x",
    "http://portal.test/account",
    "HTTPS://PORTAL.TEST:443/account",
    "https://portal.test:8443/account",
    "https://user@portal.test/account",
    "https://a@b@portal.test/",
    "https://portal.test./account",
    "https://portal%2Etest/account",
    "https://%70ortal.test/",
    "https://\uff50\uff4f\uff52\uff54\uff41\uff4c.\uff54\uff45\uff53\uff54/account",
    "https://portal\u3002test/account",
    "https://portal.test\\account",
    "https://portal.test?next=/account",
    "https://portal.test#x",
    "ht\ttps://portal.test/tab",
]
NOT_THE_PORTAL = [
    "https://portal.test.evil.example/",
    "https://evil.example/?u=portal.test",
    "https://portal.testing/",
    "https://portal.test@evil.example/account",
    "https://evil.example/portal.test",
    "https://xn--mnchen-3ya.example/",
    "mailto:help@portal.test",
]
OWN_IP = "127.0.0.1"
TO_THE_PORTAL_IP = [
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/account",
    "https://2130706433/",
    "https://127.1/",
    "https://0x7f.0.0.1/",
    "https://0177.0.0.1/",
    "https://0x7f000001/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://\uff11\uff12\uff17.0.0.1/",
    "https://127.0.0.1./",
]


def own(host: str) -> frozenset[str]:
    return own_host_forms([host])


@pytest.mark.parametrize(
    ("host", "href"),
    [(OWN_HOST, h) for h in TO_THE_PORTAL_HOST] + [(OWN_IP, h) for h in TO_THE_PORTAL_IP],
)
def test_a_link_to_the_portals_own_host_becomes_text(host: str, href: str) -> None:
    cleaned = sanitize_html(link(href), own(host))
    assert [a.get("href") for a in anchors(cleaned)] == [None]
    assert "Klick" in cleaned


@pytest.mark.parametrize("href", NOT_THE_PORTAL)
def test_a_link_elsewhere_that_names_the_portal_stays(href: str) -> None:
    (anchor,) = anchors(sanitize_html(link(href), own(OWN_HOST)))
    assert anchor["href"] == href
    assert anchor["target"] == "_blank" and anchor["rel"] == "noopener noreferrer"


USERINFO = ["", "a@", "portal.test@", "x:y@", "a@b@"]
HOSTS = [
    "portal.test",
    "PORTAL.test",
    "portal%2etest",
    "%70ortal.test",
    "\uff50ortal.test",
    "portal\u3002test",
    "portal\uff0etest",
    "portal.test.",
    "portal.test.evil.example",
    "evil.example",
    "portal-test",
    "xn--portal.test",
    "127.0.0.1",
    "2130706433",
    "127.1",
    "0x7f.1",
    "0177.0.0.1",
    "127.0.0.01",
    "127.0.0.2",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::1]",
    "256.0.0.1",
]
PORTS = ["", ":443", ":8443", ":"]
PATHS = ["", "/account", "\\account", "?next=/x", "#y"]
SCHEMES = ["https://", "http://", "HTTPS://"]
EVERY_SPELLING = [
    f"{scheme}{user}{host}{port}{path}"
    for scheme in SCHEMES
    for user in USERINFO
    for host in HOSTS
    for port in PORTS
    for path in PATHS
]


@pytest.mark.parametrize(
    ("origin", "hostname"), [(PORTAL, OWN_HOST), ("https://127.0.0.1:8443", OWN_IP)]
)
def test_in_chromium_no_link_in_a_mail_leads_to_the_portals_own_host(
    chromium: Browser, origin: str, hostname: str
) -> None:
    """Every spelling of an absolute URL put together from user info, host, port and
    path, with the portal on a name and on an IP address: Chromium's own URL parser
    (`new URL`) says where each link left on the page goes, and none goes to the
    portal's host; every href Chromium reads as a link to another host stays a link."""
    shown = sanitize_html("".join(link(h) for h in EVERY_SPELLING), own(hostname))
    page_html = f"<!doctype html><html><body><div>{shown}</div></body></html>"

    def serve(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=page_html)

    script = """hrefs => hrefs.map(h => {
        try { const u = new URL(h, location.href); return [u.protocol, u.hostname]; }
        catch (e) { return null; } })"""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.route(f"{origin}/**", serve)
        page.goto(f"{origin}/mail/1")
        left = page.evaluate(f"() => ({script})([...document.links].map(a => a.href))")
        read = page.evaluate(script, EVERY_SPELLING)
    finally:
        context.close()

    def to_the_portal(where: list[str] | None) -> bool:
        assert where is not None
        host = where[1]
        if host.startswith("["):
            mapped = ipaddress.IPv6Address(host[1:-1]).ipv4_mapped
            host = str(mapped) if mapped else host
        # With a trailing dot it is another origin, but the same server: no link either.
        return host.rstrip(".") == hostname

    assert not [where for where in left if to_the_portal(where)]
    elsewhere = [
        href
        for href, where in zip(EVERY_SPELLING, read, strict=True)
        if where is not None and not to_the_portal(where)
    ]
    kept = {h for a in anchors(shown) if (h := a.get("href"))}
    assert elsewhere and not [h for h in elsewhere if h not in kept]


def test_the_webmail_and_the_secure_page_show_links_to_the_portal_as_text(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A mail with links to the portal's base_url host and to the host the page was
    asked for (the test client's `localhost`), in the webmail and on a secure page."""
    settings = runtime.settings.replace(portal={"base_url": "https://mail.portal.test"})
    app = webmail_app(dataclasses.replace(runtime, settings=settings))
    body = (
        '<p><a href="https://mail.portal.test/account/password?x=1">Konto</a>'
        ' <a href="https://LOCALHOST:8080/account/app-passwords">Lokal</a>'
        ' <a href="https://example.org/">Info</a></p>'
    )
    alice = Webmail(app.test_client()).login(ALICE)
    raw = (
        f"From: mallory@elsewhere.example\r\nTo: {ALICE}\r\nSubject: links\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    page = alice.get(f"/mail/{deliver(runtime, ALICE, raw)}")
    assert page.status_code == 200
    shown = page.text.split('class="html-body">', 1)[1].split("</div>", 1)[0]
    assert [a.get("href") for a in anchors(shown)] == [None, None, "https://example.org/"]
    assert "Konto" in shown and "Lokal" in shown

    token = secure_send(runtime, secure_compose(html=body), [SECURE_CAROL])[SECURE_CAROL]
    visitor = app.test_client()
    visitor.environ_base["wsgi.url_scheme"] = "https"
    assert unlock(visitor, token, SECURE_PASSWORD).status_code == 303
    secure_page = visitor.get(f"/s/{token}")
    assert secure_page.status_code == 200
    hrefs = [a.get("href") for a in anchors(secure_page.text)]
    assert "https://example.org/" in hrefs
    assert not [h for h in hrefs if h and ("portal.test" in h or "LOCALHOST" in h)]
    assert "Konto" in secure_page.text and "Lokal" in secure_page.text
