"""Threat: strangers' `Autocrypt:` headers take every sandbox slot and stall the server.

The shape that once broke it: messages of about 600 bytes to a hosted address over the
MX, each with an `Autocrypt:` header whose keydata is 202 bytes of armor on which
pgpy's regular expression backtracks (PGPy issue #466), each a little different so that
no vetting is cached. Each held a sandboxed parse for its whole budget (5 s). Twelve at
once took 30 s to be accepted, one after the other through the two sandbox slots of a
two-core machine; meanwhile the webmail's decryption and WKD vetting waited for a slot,
and a new MX connection waited 19 s for a thread of the event loop's pool. Now at most
one header is vetted at a time per process; messages arriving meanwhile are stored
without their header being read, and their senders' peer state stays as it was.
"""

from __future__ import annotations

import base64
import datetime as dt
import smtplib
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.inbound import InboundServer
from gateway.runtime import Runtime
from keystore import untrusted
from keystore.models import AutocryptPeer
from tests.gateway.test_inbound import inbox
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key
from tests.keystore.hostile import hostile_armor
from tests.keystore.test_untrusted import BUDGET, eventually, parse_children

BOB = "bob@example.test"
CAROL = "carol@partner.example"


def with_header(sender: str, keydata: bytes, subject: str) -> bytes:
    encoded = base64.b64encode(keydata).decode()
    return (
        f"From: {sender}\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Autocrypt: addr={sender}; keydata={encoded}\r\n\r\nhello\r\n"
    ).encode()


class Peak:
    """The most parse children seen at once, sampled until stopped."""

    def __init__(self) -> None:
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.value = max(self.value, len(parse_children()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.value


@pytest.mark.slow
def test_hostile_headers_hold_at_most_one_sandbox_slot(
    inbound: InboundServer, runtime: Runtime, tmp_path: Path
) -> None:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    carol_key = export(gpg, make_key(gpg, f"<{CAROL}>"))
    untrusted.vet_keys(carol_key, dt.datetime.now(dt.UTC), BUDGET)  # the zygote is up
    count = untrusted.MAX_PARALLEL + 1
    accepted: list[str] = []

    def send(number: int) -> None:
        sender = f"m{number}@elsewhere.example"
        hostile = hostile_armor() + b"x" * number  # no two alike: nothing is cached
        with smtplib.SMTP("127.0.0.1", inbound.port, timeout=120) as client:
            assert client.sendmail(sender, [BOB], with_header(sender, hostile, str(number))) == {}
        accepted.append(sender)

    peak = Peak()
    senders = [threading.Thread(target=send, args=(n,)) for n in range(count)]
    for thread in senders:
        thread.start()
    # All but one are stored at once, their headers unread; or the slots fill up.
    assert eventually(lambda: len(accepted) >= count - 1 or peak.value > 1)
    assert peak.stop() == 1
    # Another parse (a WKD answer, an import) gets a slot while the hostile one runs.
    vetting = untrusted.vet_keys(carol_key, dt.datetime.now(dt.UTC), BUDGET)
    assert [v.address for v in vetting.accepted] == [CAROL]
    assert parse_children(), "the hostile parse should still be running"
    for thread in senders:
        thread.join(60)
    assert len(accepted) == count
    assert sorted(m.subject for m in inbox(runtime, BOB)) == sorted(map(str, range(count)))
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(AutocryptPeer)).all() == []
    # Once the flood is over, a genuine header teaches its key again.
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=60) as client:
        assert client.sendmail(CAROL, [BOB], with_header(CAROL, carol_key, "carol")) == {}
    with db.read_only(runtime.sessions) as session:
        (peer,) = session.scalars(sa.select(AutocryptPeer)).all()
        assert peer.address == CAROL and peer.fingerprint is not None
