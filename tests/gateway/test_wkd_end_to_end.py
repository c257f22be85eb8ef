"""Web Key Directory from the running gateway, end to end (issue 13, Must show 3).

A real HTTPS directory (tests/fakes/wkd_server.py: a certificate from the test
CA, which the gateway's WKD client trusts, and a resolver override in place of
DNS) publishes one correspondent by the advanced method (`openpgpkey.<domain>`)
and one by the direct method. Mail submitted over SMTP to the running
submission server is encrypted to the keys it finds; their gpg opens it. The
answer is remembered for `[keys] wkd_cache_ttl`; the refresh re-asks the
directory once that has passed and drops a key the directory now serves
revoked. A directory that never answers costs at most `[keys] wkd_timeout`: the
message still goes, as a secure page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trustme
from click.testing import CliRunner

from gateway import db, wkd_refresh
from gateway.models import AuditEvent
from gateway.pipeline import pgpmime
from gateway.pipeline.external_keys import lookup_external_keys
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.wkd_client import Transport
from keystore import store
from keystore.models import ExternalKey, WkdMiss
from sealgate.cli import cli
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.fakes.wkd_server import WkdServer, wkd_path
from tests.gateway.test_autocrypt import last_report
from tests.gateway.test_external_delivery import keystore_public, open_with_gpg, relay
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key, revoke_key

ALICE = "alice@example.test"
CAROL = "carol@partner.example"  # published by the advanced method
DAN = "dan@direct.example"  # published by the direct method
ERIN = "erin@slow.example"  # her directory never answers
TTL = 3600.0


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(
        tls_ca,
        [
            "openpgpkey.partner.example",
            "partner.example",
            "direct.example",
            "openpgpkey.slow.example",
            "slow.example",
        ],
    )
    yield server
    server.release.set()
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
        keys={"wkd_timeout": 2.0, "wkd_cache_ttl": TTL, "parse_timeout": 4.0}
    )
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    return dataclasses.replace(runtime, settings=settings, wkd_transport=transport)


@pytest.fixture
def server(rt: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    smtp = SubmissionServer(rt)
    loop_thread.run(smtp.start())
    yield smtp
    loop_thread.run(smtp.stop(grace=5))


def send(server: SubmissionServer, ctx: ssl.SSLContext, password: str, to: list[str]) -> None:
    raw = (
        f"From: {ALICE}\r\nTo: {', '.join(to)}\r\nSubject: figures\r\n"
        "X-Sealgate-Encrypt: yes\r\n\r\nThe quarterly figures.\r\n"
    ).encode()
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        assert client.sendmail(ALICE, to, raw) == {}


def wkd_row(rt: Runtime, address: str) -> ExternalKey | None:
    with db.read_only(rt.sessions) as session:
        return session.scalar(
            sa.select(ExternalKey).where(
                ExternalKey.address == address, ExternalKey.source == "wkd"
            )
        )


def test_the_running_gateway_finds_remembers_and_refreshes_wkd_keys(
    rt: Runtime,
    server: SubmissionServer,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
) -> None:
    ctx, password = client_ssl_context, mail_users[ALICE]
    carol, dan = make_key(partner, f"Carol <{CAROL}>"), make_key(partner, f"Dan <{DAN}>")
    wkd.publish(CAROL, export(partner, carol))
    wkd.publish(DAN, export(partner, dan), method="direct")
    with db.read_only(rt.sessions) as session:
        partner.import_key(store.export_public(session, ALICE).encode())
    alice = keystore_public(rt, ALICE)

    send(server, ctx, password, [CAROL, DAN])
    copies = relay(rt, smarthost, 2)
    for who in (CAROL, DAN):
        assert (
            "The quarterly figures."
            in open_with_gpg(partner, copies[who].content, alice).get_content()
        )
    assert wkd.requests_for(CAROL)[0] == wkd_path(CAROL, "advanced")
    assert wkd.requests_for(DAN)[-1] == wkd_path(DAN, "direct")
    report = last_report(rt)
    assert report.count("found by WKD") == 4  # both recipients, in the text and the HTML part

    # Within the cache time the directory is not asked again (nor by the refresh).
    refreshed = run_sealgate(test_env, "keys", "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "0 WKD key(s) checked" in refreshed.stdout
    asked = len(wkd.requests)
    send(server, ctx, password, [CAROL])
    relay(rt, smarthost, 3)
    assert len(wkd.requests) == asked

    # Carol revokes her key and her directory serves the revoked key. Within the
    # cache time nothing is re-checked; after it, the refresh drops Carol's key and
    # confirms Dan's.
    wkd.publish(CAROL, revoke_key(partner, carol))
    now = dt.datetime.now(dt.UTC)
    assert wkd_refresh.refresh(rt, now).checked == 0
    later = now + dt.timedelta(seconds=TTL + 60)
    result = wkd_refresh.refresh(rt, later)
    assert (result.checked, result.confirmed, result.dropped) == (2, 1, (CAROL,))
    carol_row, dan_row = wkd_row(rt, CAROL), wkd_row(rt, DAN)
    assert carol_row is not None and carol_row.revoked_at is not None
    assert dan_row is not None and dan_row.revoked_at is None
    assert dan_row.last_checked > later - dt.timedelta(seconds=1)

    # The revoked key is never used: Carol's next copy is a secure-page notification.
    send(server, ctx, password, [CAROL])
    notification = relay(rt, smarthost, 4)[CAROL].content
    assert pgpmime.encrypted_payload(notification) is None
    assert "secure page" in last_report(rt)


def test_a_refresh_run_by_hand_is_audited_with_who_ran_it_and_what_it_did(
    rt: Runtime,
    wkd: WkdServer,
    partner: GnuPG,
    test_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Threat: keys of correspondents changed or dropped by an admin nobody can name.
    Serve's hourly refresh is the gateway's own doing; `sealgate keys refresh` is an
    admin's, and its entry says who ran it and how many keys it checked, changed and
    dropped, without any key material."""
    carol, dan = make_key(partner, f"Carol <{CAROL}>"), make_key(partner, f"Dan <{DAN}>")
    wkd.publish(CAROL, export(partner, carol))
    wkd.publish(DAN, export(partner, dan), method="direct")
    now = dt.datetime.now(dt.UTC)
    assert set(lookup_external_keys(rt, [CAROL, DAN], now)) == {CAROL, DAN}
    # Carol revokes her key, Dan replaces his; the stored answers are two days old.
    wkd.publish(CAROL, revoke_key(partner, carol))
    dan_new = make_key(partner, f"Dan again <{DAN}>")
    wkd.publish(DAN, export(partner, dan_new), method="direct")
    with db.transaction(rt.sessions) as session:
        session.execute(sa.update(ExternalKey).values(last_checked=now - dt.timedelta(days=2)))
        first = int(session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0)
    real = wkd_refresh.refresh  # the command's own runtime, reaching the test directory

    def through_test_directory(runtime: Runtime, at: dt.datetime) -> wkd_refresh.RefreshResult:
        return real(dataclasses.replace(runtime, wkd_transport=rt.wkd_transport), at)

    monkeypatch.setattr(wkd_refresh, "refresh", through_test_directory)
    result = CliRunner(env=test_env).invoke(
        cli, ["--data-dir", str(rt.settings.data_dir), "keys", "refresh"]
    )
    assert result.exit_code == 0, result.output
    assert "2 WKD key(s) checked, 1 confirmed (1 changed), 1 dropped" in result.output
    with db.read_only(rt.sessions) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.id > first)).all()
    [run] = [e for e in events if e.action == "external-key.refresh"]
    assert run.actor == "cli" and getpass.getuser() in run.user_agent
    assert run.detail == f"2 checked, 1 confirmed, 1 changed, 1 dropped ({CAROL})"
    # The keys' own events stay the directory's, as in serve's hourly refresh.
    assert {(e.action, e.actor) for e in events if e.action != run.action} == {
        ("external-key.revoke", "wkd"),
        ("external-key.replace", "wkd"),
    }
    for fingerprint in (carol, dan, dan_new):
        assert fingerprint not in run.detail


def test_a_key_the_directory_stops_serving_is_dropped_with_an_audit_event(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    """Threat: an outside recipient's mail silently stops being encrypted (their key
    dropped because the directory answers 404) and no admin can see when or why. Every
    other change of the keys mail is encrypted to is an event; so is this one."""
    carol = make_key(partner, f"Carol <{CAROL}>")
    wkd.publish(CAROL, export(partner, carol))
    now = dt.datetime.now(dt.UTC)
    assert set(lookup_external_keys(rt, [CAROL], now)) == {CAROL}
    wkd.respond(*wkd_path(CAROL, "advanced"), status=404)
    with db.transaction(rt.sessions) as session:
        first = int(session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0)
    later = now + dt.timedelta(seconds=TTL + 60)
    result = wkd_refresh.refresh(rt, later)
    assert result.dropped == (CAROL,)
    assert wkd_row(rt, CAROL) is None
    with db.read_only(rt.sessions) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.id > first)).all()
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("external-key.forget", "wkd", CAROL)
    ]
    assert "no longer served" in events[0].detail


def test_a_directory_that_never_answers_costs_the_timeout_and_the_mail_goes_as_a_secure_page(
    rt: Runtime,
    server: SubmissionServer,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    wkd.hang(*wkd_path(ERIN, "advanced"))
    # The SMTP client allows 60 s; the lookup gives up after wkd_timeout (2 s).
    send(server, client_ssl_context, mail_users[ALICE], [ERIN])
    notification = relay(rt, smarthost, 1)[ERIN].content
    assert pgpmime.encrypted_payload(notification) is None
    assert "secure page" in last_report(rt)
    with db.read_only(rt.sessions) as session:
        miss = session.get(WkdMiss, ERIN)
    assert miss is not None and "within 2 s" in miss.reason
