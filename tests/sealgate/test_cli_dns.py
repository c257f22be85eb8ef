"""`sealgate dns DOMAIN` prints the records to publish; `sealgate dns check` compares them
with a real DNS server (a fake name server on 127.0.0.1 speaking the wire protocol)."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype
import dns.zone
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway import db
from gateway.models import DkimKey
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from sealgate.cli import cli
from tests.fakes.dns_server import FakeDns
from tests.keystore.conftest import run_sealgate

DOMAIN = "example.test"
ENV = {
    "SEALGATE_SMTP_HOSTNAME": "mail.example.test",
    "SEALGATE_PORTAL_BASE_URL": "https://portal.example.test",
}


def run(test_env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={**test_env, **ENV})


def dkim_rows(runtime: Runtime) -> dict[str, DkimKey]:
    with db.read_only(runtime.sessions) as session:
        return {row.algorithm: row for row in session.scalars(sa.select(DkimKey))}


def rrsets(zone: dns.zone.Zone) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            key = (name.to_text(), dns.rdatatype.to_text(rdataset.rdtype))
            found[key] = sorted(rdata.to_text() for rdata in rdataset)
    return found


def txt(values: list[str]) -> str:
    [value] = values
    return "".join(re.findall(r'"([^"]*)"', value))


def test_dns_prints_every_record_as_a_zone_file(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    result = run(test_env, "dns", DOMAIN)
    assert result.exit_code == 0, result.output
    # The output is a valid zone file: dnspython reads it back record by record.
    zone = dns.zone.from_text(result.output, origin=DOMAIN + ".", relativize=False,
                              check_origin=False)  # fmt: skip
    records = rrsets(zone)
    keys = dkim_rows(runtime)
    month = utcnow().strftime("%Y%m")
    assert set(keys) == {"ed25519", "rsa"}
    assert records.pop(("example.test.", "MX")) == ["10 mail.example.test."]
    assert txt(records.pop(("example.test.", "TXT"))) == "v=spf1 mx -all"
    assert txt(records.pop((f"ed{month}._domainkey.example.test.", "TXT"))) == (
        f"v=DKIM1; k=ed25519; p={keys['ed25519'].public_key}"
    )
    rsa = records.pop((f"rsa{month}._domainkey.example.test.", "TXT"))
    assert txt(rsa) == f"v=DKIM1; k=rsa; p={keys['rsa'].public_key}"
    assert all(len(s) <= 255 + 2 for s in re.findall(r'"[^"]*"', rsa[0]))  # split for the wire
    assert txt(records.pop(("_dmarc.example.test.", "TXT"))) == (
        "v=DMARC1; p=quarantine; adkim=r; aspf=r"
    )
    assert records.pop(("openpgpkey.example.test.", "CNAME")) == ["portal.example.test."]
    assert records.pop(("autoconfig.example.test.", "CNAME")) == ["portal.example.test."]
    assert records.pop(("_submission._tcp.example.test.", "SRV")) == ["0 1 587 mail.example.test."]
    assert records.pop(("_submissions._tcp.example.test.", "SRV")) == ["0 1 465 mail.example.test."]
    assert records.pop(("_imaps._tcp.example.test.", "SRV")) == ["0 1 993 mail.example.test."]
    for service in ("_imap", "_pop3", "_pop3s"):
        assert records.pop((f"{service}._tcp.example.test.", "SRV")) == ["0 0 0 ."]
    assert records == {}
    # Every record says what it is for, and nothing secret is in the output.
    assert result.output.count("\n; ") >= 13
    assert "PRIVATE" not in result.output


def test_dns_refuses_a_domain_that_is_not_hosted(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    result = run(test_env, "dns", "elsewhere.test")
    assert result.exit_code == 1
    assert "elsewhere.test is not a hosted domain" in result.output
    assert "Traceback" not in result.output


def test_dns_check_finds_what_the_name_server_publishes_and_what_it_lacks(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    published = run(test_env, "dns", DOMAIN).output
    with FakeDns(published, origin=DOMAIN + ".") as server:
        result = run(test_env, "dns", "check", DOMAIN, "--nameserver", f"127.0.0.1:{server.port}")
        assert result.exit_code == 0, result.output
        assert "13 of 13 records as expected" in result.output
        asked = {(name, rtype) for name, rtype, _transport in server.queries}
        assert ("_dmarc.example.test.", "TXT") in asked and len(asked) == 13

    # A zone with an old SPF, no DMARC and the portal by address instead of CNAME.
    edited = [
        line for line in published.splitlines() if not line.startswith(("_dmarc.", "openpgpkey."))
    ]
    edited = [line.replace("v=spf1 mx -all", "v=spf1 a ~all") for line in edited]
    edited += [
        "openpgpkey.example.test. 300 IN A 192.0.2.7",
        "portal.example.test. 300 IN A 192.0.2.7",
    ]
    with FakeDns("\n".join(edited) + "\n", origin=DOMAIN + ".") as server:
        result = run(test_env, "dns", "check", DOMAIN, "--nameserver", f"127.0.0.1:{server.port}")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "MISSING   _dmarc.example.test. TXT" in lines
    assert "DIFFERENT example.test. TXT" in lines
    assert "          have: v=spf1 a ~all" in lines
    assert "OK        openpgpkey.example.test. CNAME" in lines  # same address as the portal
    assert "11 of 13 records as expected" in lines


def test_dns_check_says_when_dns_cannot_be_asked(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    with FakeDns("", origin=DOMAIN + ".") as server:
        port = server.port
    # Nothing listens there any more: every query times out.
    result = run(
        test_env, "dns", "check", DOMAIN, "--nameserver", f"127.0.0.1:{port}", "--timeout", "0.3"
    )
    assert result.exit_code == 2, result.output
    assert "ERROR" in result.output and "Traceback" not in result.output


def test_dns_check_stops_asking_a_name_server_that_does_not_answer(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """A name server that takes the queries and never answers: each of the 13 records
    waited its whole --timeout (a minute at the default 5 s) before anything was
    printed. The first silence now ends the asking; the rest are reported unasked."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as deaf:
        deaf.bind(("127.0.0.1", 0))
        port = deaf.getsockname()[1]
        result = run(
            test_env, "dns", "check", DOMAIN, "--nameserver", f"127.0.0.1:{port}", "--timeout", "1"
        )
        deaf.setblocking(False)
        asked = set()
        with contextlib.suppress(BlockingIOError):
            while True:
                asked.add(dns.message.from_wire(deaf.recv(4096)).question[0].name.to_text())
    assert result.exit_code == 2, result.output
    assert asked == {f"{DOMAIN}."}  # the MX, first in the list
    lines = result.output.splitlines()
    assert lines[:2] == [f"ERROR     {DOMAIN}. MX", "          want: 10 mail.example.test."]
    assert "          (no answer in time)" in lines
    assert (
        lines.count("          (not asked: the name server did not answer the query before)") == 12
    )
    assert lines[-1] == "0 of 13 records as expected"


def test_dns_prints_an_internationalized_domain_as_its_a_label(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """A zone file holds names in their A-label (RFC 5890): `dns show bücher.test` once
    printed `bücher.test.` and `rsa…._domainkey.bücher.test.`, which a name server
    either refuses or publishes under a name no resolver asks for."""
    # The mail host may be an IDN too: MX and SRV name it.
    env = {**test_env, **ENV, "SEALGATE_DNS_MAIL_HOST": "mail.bücher.test"}
    added = CliRunner().invoke(cli, ["domain", "add", "bücher.test"], env=env)
    assert added.exit_code == 0, added.output
    result = CliRunner().invoke(cli, ["dns", "bücher.test"], env=env)
    assert result.exit_code == 0, result.output
    records = [line for line in result.output.splitlines() if not line.startswith(";")]
    assert records and all(line.isascii() for line in records), result.output
    zone = dns.zone.from_text(result.output, origin="xn--bcher-kva.test.", relativize=False,
                              check_origin=False)  # fmt: skip
    found = rrsets(zone)
    month = utcnow().strftime("%Y%m")
    assert ("xn--bcher-kva.test.", "MX") in found
    assert (f"rsa{month}._domainkey.xn--bcher-kva.test.", "TXT") in found
    assert ("_dmarc.xn--bcher-kva.test.", "TXT") in found
    assert found[("_submission._tcp.xn--bcher-kva.test.", "SRV")] == [
        "0 1 587 mail.xn--bcher-kva.test."
    ]
    assert "bücher.test" in result.output  # the comment names it as the admin typed it
    # `dns check` asks for the same A-label names, and finds them all.
    with FakeDns(result.output, origin="xn--bcher-kva.test.") as server:
        checked = CliRunner().invoke(
            cli, ["dns", "check", "bücher.test", "--nameserver", f"127.0.0.1:{server.port}"],
            env=env,
        )  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert "13 of 13 records as expected" in checked.output


def test_dns_prints_a_sharp_s_domain_under_its_idna_2008_a_label(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """`straße.test` is `xn--strae-oqa.test` (IDNA 2008); Python's IDNA 2003 codec made it
    `strasse.test`, another domain, so the records were published for someone else's name."""
    env = {**test_env, **ENV}
    added = CliRunner().invoke(cli, ["domain", "add", "straße.test"], env=env)
    assert added.exit_code == 0, added.output
    result = CliRunner().invoke(cli, ["dns", "show", "straße.test"], env=env)
    assert result.exit_code == 0, result.output
    records = [line for line in result.output.splitlines() if not line.startswith(";")]
    assert records and all(line.isascii() for line in records), result.output
    assert "strasse" not in result.output
    zone = dns.zone.from_text(result.output, origin="xn--strae-oqa.test.", relativize=False,
                              check_origin=False)  # fmt: skip
    found = rrsets(zone)
    month = utcnow().strftime("%Y%m")
    assert ("xn--strae-oqa.test.", "MX") in found
    assert (f"rsa{month}._domainkey.xn--strae-oqa.test.", "TXT") in found
    assert ("_dmarc.xn--strae-oqa.test.", "TXT") in found


def test_dns_finds_a_domain_under_either_form(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """`dns show xn--strae-oqa.test` for a domain added as `straße.test` said "not a
    hosted domain": both forms name it and print the same records; a look-alike does not."""
    env = {**test_env, **ENV}
    for added in ("straße.test", "xn--bcher-kva.test"):
        assert CliRunner().invoke(cli, ["domain", "add", added], env=env).exit_code == 0
    for one, two in [("straße.test", "XN--STRAE-OQA.test."), ("xn--bcher-kva.test", "bücher.test")]:
        shown = [CliRunner().invoke(cli, ["dns", "show", name], env=env) for name in (one, two)]
        assert all(result.exit_code == 0 for result in shown), [r.output for r in shown]
        records = [
            [line for line in result.output.splitlines() if not line.startswith(";")]
            for result in shown
        ]
        assert records[0] and records[0] == records[1]
    refused = CliRunner().invoke(cli, ["dns", "show", "strasse.test"], env=env)
    assert refused.exit_code == 1 and "not a hosted domain" in refused.output


@pytest.mark.usefixtures("runtime")
@pytest.mark.parametrize(
    "bad",
    [
        "mail host.example.test",
        "-mx.example.test",
        "mail..example.test",
        "☃.example.test",
        "xn--zz.example.test",
        "ｍａｉｌ.example.test",
    ],
)
def test_a_mail_host_that_is_no_host_name_is_refused(bad: str, test_env: dict[str, str]) -> None:
    """`[dns] mail_host` is the MX and SRV target `sealgate dns` prints: a bad one was
    printed unchanged, a record no resolver can follow."""
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    (data_dir / "sealgate.toml").write_text(f'[dns]\nmail_host = "{bad}"\n', encoding="utf-8")

    done = run_sealgate({**test_env, **ENV}, "dns", "show", DOMAIN)

    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert "configuration error: [dns] mail_host:" in done.stderr, done.stderr


@pytest.mark.usefixtures("mail_users")
def test_an_idn_mail_host_is_printed_as_its_a_label(test_env: dict[str, str]) -> None:
    env = {**test_env, **ENV, "SEALGATE_DNS_MAIL_HOST": "mäil.example.test"}
    done = run_sealgate(env, "dns", "show", DOMAIN)
    assert done.returncode == 0, done.stderr
    assert "MX 10 xn--mil-qla.example.test." in " ".join(done.stdout.split()), done.stdout
