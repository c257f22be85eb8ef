"""Recipient classes for the compose page's chips, from the lookups the send itself makes.

Shown: a hosted address, a missing hosted mailbox, a bad address, an external
address whose key a real HTTPS Web Key Directory publishes (with its
fingerprint), one whose directory has none; and a directory that does not
answer in the page's budget: the chip says "needs a password" (Send will insist
on one) while the lookup finishes in the background and is remembered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from gateway import db, recipients
from gateway.pipeline.report import format_fingerprint
from gateway.runtime import Runtime
from gateway.wkd_client import Transport
from keystore import directory
from tests.fakes.wkd_server import WkdServer, wkd_path
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key

BOB = "bob@example.test"
DAVE = "dave@partner.example"
CAROL = "carol@partner.example"
SLOW = "sam@slow.example"


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(
        tls_ca,
        [
            "openpgpkey.partner.example",
            "partner.example",
            "openpgpkey.slow.example",
            "slow.example",
        ],
    )
    yield server
    server.close()


@pytest.fixture
def rt(
    runtime: Runtime,
    wkd: WkdServer,
    client_ssl_context: ssl.SSLContext,
    mail_users: dict[str, str],
) -> Runtime:
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    settings = runtime.settings.replace(keys={"wkd_timeout": 20.0, "parse_timeout": 4.0})
    return dataclasses.replace(runtime, settings=settings, wkd_transport=transport)


def test_each_recipient_gets_its_class(rt: Runtime, wkd: WkdServer, tmp_path: Path) -> None:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    partner = GnuPG(home)
    fingerprint = make_key(partner, f"<{DAVE}>")
    wkd.publish(DAVE, export(partner, fingerprint))

    now = dt.datetime.now(dt.UTC)
    wanted = [BOB, DAVE, CAROL, "nobody@example.test", "not an address", BOB]
    classes = recipients.classify(rt, wanted, now, timeout=30.0)
    assert [(c.address, c.kind) for c in classes] == [
        (BOB, "hosted"),
        (DAVE, "key"),
        (CAROL, "password"),
        ("nobody@example.test", "unknown-mailbox"),
        ("not an address", "invalid"),
        (BOB, "hosted"),
    ]
    assert classes[1].fingerprint == format_fingerprint(fingerprint)
    assert not any(c.pending for c in classes)
    # The key found is kept for the send: asking again needs no directory.
    asked = len(wkd.requests_for(DAVE))
    again = recipients.classify(rt, [DAVE], now, timeout=30.0)
    assert again[0].kind == "key" and len(wkd.requests_for(DAVE)) == asked


def test_a_directory_that_does_not_answer_in_time_means_password(
    rt: Runtime, wkd: WkdServer
) -> None:
    for method in ("advanced", "direct"):
        wkd.hang(*wkd_path(SLOW, method))
    now = dt.datetime.now(dt.UTC)
    (slow,) = recipients.classify(rt, [SLOW], now, timeout=0.2)
    assert (slow.kind, slow.pending) == ("password", True)

    # The lookup goes on; once the directory answers, its outcome is remembered.
    wkd.release.set()
    finished = threading.Event()
    for _ in range(300):
        with db.read_only(rt.sessions) as session:
            if directory.active_miss(session, SLOW, now) is not None:
                finished.set()
                break
        finished.wait(0.1)
    assert finished.is_set()
    (known,) = recipients.classify(rt, [SLOW], now, timeout=0.2)
    assert (known.kind, known.pending) == ("password", False)
