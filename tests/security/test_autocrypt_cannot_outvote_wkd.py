"""Threat: one forged message over the MX decides where hosted users' mail to a
correspondent is encrypted to, although the correspondent's own domain says otherwise.

The probe (2026-12-06): a message `From: carol@partner.example` with an `Autocrypt:`
header carrying the forger's key, sent to any hosted user over the MX (no SPF, DKIM
or DMARC is checked there), made every hosted user's encrypted mail to Carol go to
the forger's key, while Carol's domain served her real key by Web Key Directory
over HTTPS: the header's key came before the WKD key. Now the domain's key wins
(docs/autocrypt.md, "Which key an external recipient's copy is encrypted to"), an
imported key still comes first, and a header never outvotes the domain even while
its directory cannot be reached: the copy becomes a secure page instead.

The first test runs the probe over real SMTP (MX in, submission out, the fake
smarthost) with the real HTTPS directory of the other WKD tests; Carol's gpg opens
what she gets. The second lets hypothesis choose the order in which the sources
arrive (forged and genuine headers, an admin import, the directory serving, not
serving or out of reach, time passing beyond the cache times) and checks after each
step: while Carol's domain serves her key, no copy is encrypted to a key that came
from a header and differs from it; an imported key is always the one used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import sqlalchemy as sa
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import db
from gateway.autocrypt import inbound as autocrypt_inbound
from gateway.autocrypt import peers
from gateway.inbound import InboundServer
from gateway.pipeline import pgpmime
from gateway.pipeline.external_keys import lookup_external_keys, parse_budget
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.wkd_client import Transport
from keystore import directory, pgp, store, untrusted
from keystore.models import AutocryptPeer, ExternalKey, WkdMiss
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.fakes.wkd_server import WkdServer, wkd_path
from tests.gateway.test_autocrypt import (
    ALICE,
    CAROL,
    autocrypt_header,
    deliver_inbound,
    encrypted_to,
    last_report,
    plain_mail,
    reply,
)
from tests.gateway.test_external_delivery import keystore_public, open_with_gpg, subkey_id
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from tests.keystore.gpgkeys import export, make_key

CACHE_TTL = 3600.0
FAILURE_TTL = 600.0
EXAMPLES = int(os.environ.get("SEALGATE_KEY_SOURCE_EXAMPLES", "150"))


def gpg_home(tmp_path: Path, name: str) -> GnuPG:
    home = tmp_path / name
    home.mkdir(mode=0o700)
    return GnuPG(home)


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example"])
    yield server
    server.close()


@pytest.fixture
def rt(
    runtime: Runtime,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    client_ssl_context: ssl.SSLContext,
    mail_users: dict[str, str],
) -> Runtime:
    settings = relay_settings_for(runtime.settings, smarthost).replace(
        keys={
            "wkd_timeout": 2.0,
            "wkd_cache_ttl": CACHE_TTL,
            "wkd_failure_ttl": FAILURE_TTL,
            "parse_timeout": 4.0,
        }
    )
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    return dataclasses.replace(runtime, settings=settings, wkd_transport=transport)


@pytest.fixture
def servers(
    rt: Runtime, loop_thread: LoopThread
) -> Iterator[tuple[InboundServer, SubmissionServer]]:
    inbound, submission = InboundServer(rt), SubmissionServer(rt)
    loop_thread.run(inbound.start())
    loop_thread.run(submission.start())
    yield inbound, submission
    loop_thread.run(inbound.stop(grace=5))
    loop_thread.run(submission.stop(grace=5))


def test_a_forged_header_over_the_mx_does_not_outvote_the_domains_wkd_key(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    tmp_path: Path,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    inbound, submission = servers
    ctx, password = client_ssl_context, mail_users[ALICE]
    carol_gpg, forger_gpg = gpg_home(tmp_path, "carol"), gpg_home(tmp_path, "forger")
    carol = make_key(carol_gpg, f"Carol <{CAROL}>")
    forged = make_key(forger_gpg, f"Carol <{CAROL}>")
    wkd.publish(CAROL, export(carol_gpg, carol))
    with db.read_only(rt.sessions) as session:
        carol_gpg.import_key(store.export_public(session, ALICE).encode())
    alice = keystore_public(rt, ALICE)

    def forge(date: dt.datetime) -> None:
        header = autocrypt_header(CAROL, export(forger_gpg, forged))
        deliver_inbound(inbound, ctx, CAROL, plain_mail(CAROL, date, header))

    # The forgery arrives before the gateway ever asked Carol's domain. The header is
    # learnt (peer state follows the spec), but Alice's mail goes to the domain's key.
    now = dt.datetime.now(dt.UTC)
    forge(now - dt.timedelta(minutes=5))
    row = peer_row(rt)
    assert row is not None and row.fingerprint == forged
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    assert encrypted_to(rt, relayed) == {subkey_id(carol_gpg, carol)}
    assert "The secret answer." in open_with_gpg(carol_gpg, relayed, alice).get_content()
    report = last_report(rt)
    assert "found by WKD" in report and "Autocrypt" not in report
    assert len(wkd.requests_for(CAROL)) == 1

    # A newer forgery while the domain's answer is cached: still the domain's key.
    forge(dt.datetime.now(dt.UTC))
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    assert encrypted_to(rt, relayed) == {subkey_id(carol_gpg, carol)}

    # The cached answer is older than the cache time and the directory is out of reach
    # (HTTP 503): the header's key does not step in; the copy becomes a secure page.
    with db.transaction(rt.sessions) as session:
        session.execute(
            sa.update(ExternalKey).values(last_checked=now - dt.timedelta(seconds=2 * CACHE_TTL))
        )
    wkd.respond(*wkd_path(CAROL, "advanced"), status=503)
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    assert pgpmime.encrypted_payload(relayed) is None
    assert "secure page" in last_report(rt)

    # Back in reach: the domain's key again, however many forgeries came meanwhile.
    forge(dt.datetime.now(dt.UTC))
    wkd.publish(CAROL, export(carol_gpg, carol))
    with db.transaction(rt.sessions) as session:
        session.execute(sa.delete(WkdMiss))  # as if the failure time had passed
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    assert encrypted_to(rt, relayed) == {subkey_id(carol_gpg, carol)}


def test_a_domain_without_a_wkd_key_leaves_the_header_key_in_use(
    rt: Runtime, wkd: WkdServer, tmp_path: Path
) -> None:
    """Autocrypt keeps working where it is all there is: the domain is asked first (and
    answers 404), then the header's key is used, and the 404 is remembered."""
    carol_gpg = gpg_home(tmp_path, "carol")
    now = dt.datetime.now(dt.UTC)
    keys = Keys.make(rt, carol_gpg, now)
    with db.transaction(rt.sessions) as session:
        autocrypt_inbound.record(
            session, autocrypt_inbound.Observation(CAROL, now, keys.header), now
        )
    found = lookup_external_keys(rt, [CAROL], now)
    assert (found[CAROL].source, found[CAROL].fingerprint) == ("autocrypt", keys.header.fingerprint)
    assert len(wkd.requests_for(CAROL)) == 1
    lookup_external_keys(rt, [CAROL], now + dt.timedelta(seconds=FAILURE_TTL - 1))
    assert len(wkd.requests_for(CAROL)) == 1


def peer_row(rt: Runtime) -> AutocryptPeer | None:
    with db.read_only(rt.sessions) as session:
        return peers.peer(session, CAROL)


@dataclass(frozen=True)
class Keys:
    """Carol's key on her domain's directory, another key of hers (a second device
    whose header she sends), the forger's key, and the key an admin imports."""

    served: pgp.VettedKey
    header: pgp.VettedKey
    forged: pgp.VettedKey
    imported: pgp.VettedKey
    served_bytes: bytes

    @staticmethod
    def make(rt: Runtime, gpg: GnuPG, now: dt.datetime) -> Keys:
        budget = parse_budget(rt.settings.keys)
        made = {}
        for name in ("served", "header", "forged", "imported"):
            data = export(gpg, make_key(gpg, f"Carol {name} <{CAROL}>"))
            (made[name],) = untrusted.vet_keys(data, now, budget, address=CAROL).accepted
            if name == "served":
                served_bytes = data
        return Keys(served_bytes=served_bytes, **made)


Event = (
    tuple[Literal["header"], Literal["forged", "header", "served"], int]
    | tuple[Literal["domain"], Literal["serves", "404", "503"]]
    | tuple[Literal["import"]]
    | tuple[Literal["wait"], int]
)

events = st.lists(
    st.one_of(
        st.tuples(
            st.just("header"),
            st.sampled_from(["forged", "header", "served"]),
            st.integers(0, 40),  # days before now: its Date
        ),
        st.tuples(st.just("domain"), st.sampled_from(["serves", "404", "503"])),
        st.tuples(st.just("import")),
        st.tuples(st.just("wait"), st.sampled_from([60, int(CACHE_TTL) + 60, 3 * 86400])),
    ),
    min_size=1,
    max_size=7,
)


@dataclass
class World:
    now: dt.datetime
    domain: Literal["serves", "404", "503"] = "404"
    imported: bool = False
    seen: list[str] = field(default_factory=list)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=events)
def test_while_the_domain_serves_a_key_no_copy_goes_to_a_differing_header_key(
    rt: Runtime, wkd: WkdServer, keys_for_order: Keys, steps: list[Event]
) -> None:
    keys = keys_for_order
    with db.transaction(rt.sessions) as session:
        for table in (AutocryptPeer, ExternalKey, WkdMiss):
            session.execute(sa.delete(table))
    path = wkd_path(CAROL, "advanced")
    wkd.respond(*path, status=404)
    world = World(now=dt.datetime.now(dt.UTC))
    for step in steps:
        match step:
            case ("header", which, days):
                vetted = {"forged": keys.forged, "header": keys.header, "served": keys.served}
                observation = autocrypt_inbound.Observation(
                    CAROL, world.now - dt.timedelta(days=days), vetted[which], "mutual"
                )
                with db.transaction(rt.sessions) as session:
                    autocrypt_inbound.record(session, observation, world.now)
            case ("domain", state):
                # A change at the domain is seen once a remembered failure has run out.
                world.domain = state
                world.now += dt.timedelta(seconds=FAILURE_TTL + 1)
                if state == "serves":
                    wkd.respond(*path, body=keys.served_bytes)
                else:
                    wkd.respond(*path, status=int(state))
            case ("import",):
                with db.transaction(rt.sessions) as session:
                    directory.save(session, keys.imported, "import", world.now, events=audit_sink)
                world.imported = True
            case ("wait", seconds):
                world.now += dt.timedelta(seconds=seconds)
        world.seen.append(repr(step))
        found = lookup_external_keys(rt, [CAROL], world.now).get(CAROL)
        used = (found.source, found.fingerprint) if found is not None else None
        if world.imported:
            assert used == ("import", keys.imported.fingerprint), world.seen
        elif world.domain == "serves":
            assert used == ("wkd", keys.served.fingerprint), world.seen
        elif used is not None and used[0] == "autocrypt" and used[1] != keys.served.fingerprint:
            # The header's key only where the domain's last word was "no key".
            with db.read_only(rt.sessions) as session:
                assert directory.usable(session, CAROL, "wkd", world.now) is None, world.seen


@pytest.fixture
def keys_for_order(rt: Runtime, tmp_path: Path) -> Keys:
    return Keys.make(rt, gpg_home(tmp_path, "carol"), dt.datetime.now(dt.UTC))
