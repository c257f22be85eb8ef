"""Must show 1: sealgate behind Debian's real Postfix, both setups of docs/postfix.md, end
to end over real sockets. The Postfix is a private instance (own config, queue and free
ports in a temp dir, `postfix -c DIR start`, stopped afterwards); "the Internet" beyond it
is the recording fake smarthost, set as Postfix's relayhost.

(a) Postfix is the MX: mail for example.test goes through `transport_maps` to sealgate's
    inbound listener; sealgate's relay hands outbound mail to Postfix on localhost.
(b) Postfix takes submission (SASL from a private Dovecot, the sender tied to the login
    with `reject_sender_login_mismatch`) and passes the message to sealgate's content
    filter with XFORWARD; sealgate encrypts it and relays the external copy back
    through Postfix's re-injection port. The copy that reaches the Internet is PGP/MIME
    and its DKIM signatures still verify after Postfix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import shutil
import smtplib
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from gateway import accounts, db, rawheaders
from gateway.dkim import keys as dkim_keys
from gateway.dnsrecords import records
from gateway.inbound import InboundServer
from gateway.models import MailboxMessage
from gateway.pipeline import pgpmime
from gateway.postfix.filter import FilterServer
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.fakes.dns_server import FakeDns
from tests.fakes.postfix import (
    PrivateDovecot,
    PrivatePostfix,
    ensure_installed,
    free_port,
    private_root,
)
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_secure_page import decrypt_as, folder
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key

pytestmark = pytest.mark.slow

ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL = "carol@partner.example"  # on the Internet, with an imported key
DOVECOT_PASSWORD = "alice-sasl-password"


@dataclasses.dataclass
class Stack:
    """Postfix in front, sealgate behind it, and the Internet as a fake smarthost."""

    runtime: Runtime  # relaying to Postfix's re-injection port
    postfix: PrivatePostfix
    mx_port: int
    submission_port: int
    internet: FakeSmarthost
    zone: FakeDns


def wait_until(what: str, check: object, postfix: PrivatePostfix, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        postfix.flush()
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen; Postfix log:\n{postfix.log[-4000:]}")


@pytest.fixture
def stack(
    runtime: Runtime,
    mail_users: dict[str, str],
    loop_thread: LoopThread,
    smarthost: FakeSmarthost,
    test_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Stack]:
    ensure_installed()
    # Carol's public key is known, so her copies go out as PGP/MIME.
    home = tmp_path / "carol"
    home.mkdir(mode=0o700)
    carol = GnuPG(home)
    fingerprint = make_key(carol, f"Carol <{CAROL}>")
    (tmp_path / "carol.asc").write_bytes(export(carol, fingerprint, armor=True))
    assert run_sealgate(test_env, "keys", "import", str(tmp_path / "carol.asc")).returncode == 0

    # sealgate's listeners: inbound (behind transport_maps) and the content filter.
    served = dataclasses.replace(
        runtime, settings=runtime.settings.replace(filter={"enabled": True, "port": 0})
    )
    inbound, content_filter = InboundServer(served), FilterServer(served)
    loop_thread.run(inbound.start())
    loop_thread.run(content_filter.start())

    mx, submission, reinject = free_port(), free_port(), free_port()
    dovecot = PrivateDovecot(private_root("sealgate-dovecot-"), {ALICE: DOVECOT_PASSWORD})
    dovecot.start()
    root = private_root("sealgate-postfix-")
    (root / "etc").mkdir()
    (root / "etc" / "transport").write_text(f"example.test smtp:[127.0.0.1]:{inbound.port}\n")
    (root / "etc" / "sender_logins").write_text(f"{ALICE} {ALICE}\n{BOB} {BOB}\n")
    etc = root / "etc"
    postfix = PrivatePostfix(
        root,
        main={
            "myhostname": "mx.example.test",
            "mynetworks": "127.0.0.0/8",
            # (a) the MX: hosted domains go to sealgate's inbound listener.
            "relay_domains": "example.test",
            "transport_maps": f"texthash:{etc}/transport",
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
            ),
            # Everything else goes to "the Internet".
            "relayhost": f"[127.0.0.1]:{smarthost.port}",
            "smtp_tls_security_level": "may",
        },
        services=[
            # The MX (port 25 in production): takes mail for the hosted domains only.
            f"127.0.0.1:{mx} inet n - n - - smtpd",
            "  -o smtpd_relay_restrictions=reject_unauth_destination",
            # (b) submission: SASL, sender tied to login, then the content filter.
            f"127.0.0.1:{submission} inet n - n - - smtpd",
            "  -o syslog_name=postfix/submission",
            "  -o smtpd_sasl_auth_enable=yes",
            "  -o smtpd_sasl_type=dovecot",
            f"  -o smtpd_sasl_path={dovecot.socket}",
            "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject",
            f"  -o smtpd_sender_login_maps=texthash:{etc}/sender_logins",
            "  -o smtpd_sender_restrictions=reject_sender_login_mismatch",
            "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
            f"  -o content_filter=sealgate-filter:[127.0.0.1]:{content_filter.port}",
            "sealgate-filter unix - - n - 10 smtp",
            "  -o syslog_name=postfix/sealgate-filter",
            "  -o smtp_send_xforward_command=yes",
            "  -o disable_mime_output_conversion=yes",
            "  -o smtp_tls_security_level=none",
            # Where sealgate's relay hands mail back: no filter, local clients only.
            f"127.0.0.1:{reinject} inet n - n - - smtpd",
            "  -o syslog_name=postfix/reinject",
            "  -o content_filter=",
            "  -o smtpd_client_restrictions=permit_mynetworks,reject",
            "  -o smtpd_relay_restrictions=permit_mynetworks,reject",
        ],
        ports=[mx, submission, reinject],
    )
    with db.read_only(runtime.sessions) as session:
        domain = accounts.find_domain(session, "example.test")
        assert domain is not None
        published = records.domain_records(
            runtime.settings, domain.name, dkim_keys.current_keys(session, domain.id)
        )
    relaying = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            relay={"host": "127.0.0.1", "port": reinject, "security": "none", "timeout": 10.0}
        ),
    )
    try:
        postfix.start()
        with FakeDns(records.zone_text(published, 300), origin="example.test.") as zone:
            yield Stack(relaying, postfix, mx, submission, smarthost, zone)
    finally:
        postfix.stop()
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(dovecot.root, ignore_errors=True)
        loop_thread.run(content_filter.stop(grace=5))
        loop_thread.run(inbound.stop(grace=5))


def relay_once(runtime: Runtime) -> None:
    async def sweep() -> None:
        await Relay(runtime).sweep()
        await asyncio.sleep(0.2)

    asyncio.run(sweep())


def verify_dkim(raw: bytes, zone: FakeDns) -> None:
    signatures = [f for f in rawheaders.headers(raw) if f.name.lower() == "dkim-signature"]
    assert len(signatures) == 2
    for index in range(2):
        assert dkim.DKIM(raw).verify(idx=index, dnsfunc=zone.txt_lookup)


def message(to: str, subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def inbox(runtime: Runtime, address: str) -> list[MailboxMessage]:
    return folder(runtime, address)


def test_a_postfix_mx_in_front_and_outbound_through_postfix(
    stack: Stack,
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    mail_users: dict[str, str],
) -> None:
    """(a): inbound through transport_maps, outbound through Postfix on localhost."""
    # Inbound: someone on the Internet writes to bob; Postfix is the MX.
    with smtplib.SMTP("127.0.0.1", stack.mx_port, timeout=30) as client:
        client.ehlo("client.partner.example")
        raw = message(BOB, "Hello Bob", "Mail from the Internet.\n").replace(
            f"From: {ALICE}".encode(), f"From: {CAROL}".encode()
        )
        assert client.sendmail(CAROL, [BOB], raw) == {}
        # The MX relays for nobody else.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(CAROL, ["someone@elsewhere.example"], raw)
    wait_until("delivery to bob's inbox", lambda: inbox(stack.runtime, BOB), stack.postfix)
    [stored] = inbox(stack.runtime, BOB)
    received = [h.value for h in rawheaders.headers(stored.raw) if h.name == "Received"]
    assert "(sealgate)" in received[0] and "mx.example.test" in received[1]
    assert b"Mail from the Internet." in stored.raw and stored.envelope_from == CAROL

    # Outbound: alice writes to carol with encryption on; sealgate relays through Postfix.
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        raw = message(CAROL, "[encrypt] Contract", "The secret terms.\n")
        assert client.sendmail(ALICE, [CAROL], raw) == {}
    relay_once(stack.runtime)
    wait_until("arrival on the Internet", lambda: stack.internet.messages, stack.postfix)
    [out] = stack.internet.messages
    assert out.mail_from == ALICE and out.rcpt_tos == (CAROL,)
    assert pgpmime.encrypted_payload(out.content) is not None
    assert b"The secret terms." not in out.content
    assert "mx.example.test" in out.content.decode()  # it went through Postfix
    verify_dkim(out.content, stack.zone)


def test_postfix_submission_hands_authenticated_mail_to_the_content_filter(
    stack: Stack,
) -> None:
    """(b): Postfix does SASL, sealgate gets the message with XFORWARD and encrypts it."""
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=30) as client:
        client.ehlo("laptop.example")
        client.login(ALICE, DOVECOT_PASSWORD)
        # Postfix ties the envelope sender to the login: alice cannot send as bob.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(BOB, [CAROL], message(CAROL, "x", "x\n"))
        [(code, reply)] = refused.value.recipients.values()
        assert code == 553 and b"not owned by user alice@example.test" in reply
        raw = message(f"{BOB}, {CAROL}", "[encrypt] Quarterly figures", "Revenue: 42.\n")
        assert client.sendmail(ALICE, [BOB, CAROL], raw) == {}
    # Without AUTH, Postfix's submission port takes nothing.
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=30) as client:
        client.ehlo("stranger.example")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(ALICE, [BOB], raw)

    # Bob's copy: stored by sealgate, encrypted to his key, with the real client in Received.
    wait_until("the filtered copy in bob's inbox", lambda: inbox(stack.runtime, BOB),
               stack.postfix)  # fmt: skip
    [stored] = inbox(stack.runtime, BOB)
    assert stored.encrypted and b"Revenue: 42." not in stored.raw
    assert b"Revenue: 42." in decrypt_as(stack.runtime, BOB, stored.raw)
    received = rawheaders.get(stored.raw, "Received") or ""
    assert "from laptop.example ([127.0.0.1])" in received and "ESMTPSA" in received
    assert "sealgate content filter" not in received
    # Alice's Sent copy exists: the whole submission pipeline ran for her.
    assert folder(stack.runtime, ALICE, "Sent")

    # Carol's copy: relayed back through Postfix to the Internet, PGP/MIME, DKIM-signed.
    relay_once(stack.runtime)
    wait_until("arrival on the Internet", lambda: stack.internet.messages, stack.postfix)
    [out] = stack.internet.messages
    assert out.rcpt_tos == (CAROL,) and pgpmime.encrypted_payload(out.content) is not None
    assert b"Revenue: 42." not in out.content
    verify_dkim(out.content, stack.zone)
    # The filter transport really carried it, and sealgate's 250 named its queue id.
    handed = [line for line in stack.postfix.log.splitlines() if "postfix/sealgate-filter" in line]
    assert any("status=sent (250 2.0.0 Ok: queued as" in line for line in handed), handed
