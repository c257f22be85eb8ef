"""Web Key Directory names as GnuPG computes them, for the keys we look up and the keys we serve.

Threat: a WKD name computed another way than GnuPG's finds no key where GnuPG (whose
gpg-wks tools publish most directories) put it, or serves ours where gpg does not
look. An outside probe expected a quoted local part (`"john doe"@example.com`) to be
hashed without its quotes; the draft (section 3.1) maps only A-Z to lower case, and
GnuPG hashes the local part as the mailbox writes it, quotes and backslashes
included (`gpg-wks-client --print-wkd-hash '<"John.Doe"@example.com>'` hashes
`"john.doe"`; gpg refuses a local part with a space or a second `@` outright). So
ours keeps them, and these tests hold both sides to gpg's own output, over
generated local parts: the lookup URLs we build, the names our directory answers
to, and a key GnuPG made for quoted user ids, published under the names gpg lists
for it and found by our client. One address has one name whichever way it was
typed: the compose page's recipient chips look an address up as the send does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from flask.testing import FlaskClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import accounts, db, recipients
from gateway.addresses import normalize_new_address
from gateway.runtime import Runtime
from gateway.wkd_client import Transport, WkdClient, wkd_urls
from keystore.wkd import address_hash, local_part_hash
from tests.fakes.wkd_server import WELL_KNOWN, WkdServer
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key
from webportal import create_app

PARTNER = "partner.example"


def _wks_client() -> str:
    libexec = subprocess.run(
        ["gpgconf", "--list-dirs", "libexecdir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(libexec) / "gpg-wks-client"
    if not path.is_file():
        pytest.fail(f"{path} is missing (apt-get install gnupg)")
    return str(path)


WKS_CLIENT = _wks_client()


def gpg_wkd_name(user_id: str) -> tuple[str, str] | None:
    """(WKD name, mailbox) as GnuPG computes them for `user_id`; None when gpg finds
    no mailbox in it."""
    done = subprocess.run(
        [WKS_CLIENT, "--print-wkd-hash", user_id], capture_output=True, timeout=30, check=False
    )
    line = done.stdout.decode("utf-8").strip()
    if done.returncode != 0 or not line:
        return None
    name, _, mailbox = line.partition(" ")
    return name, mailbox


# RFC 5321 local parts: a Dot-string (ASCII atext, and UTF-8 as RFC 6531 allows, in
# both cases), or a Quoted-string (printable ASCII and spaces, `"` and `\\` as pairs).
ATEXT = st.sampled_from(list("abcxyzABCXYZ0189!#$%&'*+-/=?^_`{|}~") + list("äöüÄÖÜßéÉİıøØ€中"))
atom = st.text(ATEXT, min_size=1, max_size=6)
dot_string = st.lists(atom, min_size=1, max_size=3).map(".".join)
QTEXT = st.sampled_from([chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\'])
quoted_pair = st.sampled_from([chr(c) for c in range(0x20, 0x7F)]).map(lambda c: "\\" + c)
quoted_string = st.lists(st.one_of(QTEXT, quoted_pair), max_size=10).map(
    lambda parts: '"' + "".join(parts) + '"'
)
local_parts = st.one_of(dot_string, quoted_string)


@settings(max_examples=300, deadline=None)
@given(local=local_parts)
@example(local='"John.Doe"')  # the quoted forms gpg hashes, always among the examples
@example(local='"a\\b"')
@example(local="Joe.Doe")  # the draft's own example
@example(local='"@!>"')  # gpg takes `"@!` for the mailbox in `<"@!>"@...>`
def test_our_lookup_urls_carry_the_name_gpg_computes(local: str) -> None:
    """For every address gpg computes a name for (its user-id form `<...>` and the bare
    address), both URLs we ask carry that name, quotes and case handled as gpg does."""
    address = f"{local}@{PARTNER}"
    advanced, direct = wkd_urls(address)
    for user_id in (f"<{address}>", address):
        found = gpg_wkd_name(user_id)
        if found is None:
            continue
        name, mailbox = found
        if mailbox.lower() != address.lower():
            # gpg read another mailbox out of it (`<"@!>"@x>` is `"@!` to gpg): no name
            # of this address to compare with.
            continue
        assert local_part_hash(local) == name
        assert f"/hu/{name}?" in advanced and f"/hu/{name}?" in direct
    if local.startswith('"'):
        # Never the unquoted content's name: a directory gpg filled has no key there.
        assert local_part_hash(local) != local_part_hash(local[1:-1])


@settings(max_examples=200, deadline=None)
@given(local=dot_string)
def test_the_names_our_directory_answers_to_are_gpgs(local: str) -> None:
    """A hosted address (its key's user id) has the name gpg lists for that user id,
    and the name gpg asks for when a user writes it with other ASCII case."""
    try:
        address = normalize_new_address(f"{local}@example.test")
    except ValueError:
        return  # not an address an admin can create
    found = gpg_wkd_name(f"<{address}>")
    assert found is not None, address
    assert address_hash(address) == found[0]
    if address.isascii():  # gpg lower-cases A-Z only, as the draft says; so do we
        asked = gpg_wkd_name(f"<{address.rpartition('@')[0].upper()}@example.test>")
        assert asked is not None and asked[0] == address_hash(address)


def test_our_directory_serves_a_hosted_key_at_gpgs_url(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The URL gpg fetches for a hosted address, written in other ASCII case, gets its key."""
    with db.transaction(runtime.sessions) as session:
        account = accounts.find_account(session, "alice@example.test")
        assert account is not None
        for address in ("jürgen.ölm@example.test", "o'neil+tag@example.test"):
            accounts.add_address(
                session, runtime.hasher, address, account, "x-pw-123456", actor="test"
            )
    client: FlaskClient = create_app(runtime, testing=True).test_client()
    for typed in ("JüRGEN.öLM@Example.test", "O'Neil+Tag@example.test"):
        found = gpg_wkd_name(f"<{typed}>")
        assert found is not None
        name, mailbox = found
        local = urllib.parse.quote(mailbox.rpartition("@")[0], safe="")
        for path in (f"{WELL_KNOWN}/hu/{name}?l={local}", f"{WELL_KNOWN}/hu/{name}"):
            answer = client.get(path, base_url="https://example.test")
            assert answer.status_code == 200, (typed, path)
    # A quoted spelling names another mailbox for gpg, and for us: nothing is there.
    quoted = gpg_wkd_name('<"alice"@example.test>')
    assert quoted is not None
    answer = client.get(f"{WELL_KNOWN}/hu/{quoted[0]}", base_url="https://example.test")
    assert answer.status_code == 404


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, [f"openpgpkey.{PARTNER}", PARTNER])
    yield server
    server.close()


QUOTED_UIDS = ['"John.Doe"', '"a..b"', '"x\\"y"', "Mary.Smith"]


def publish_as_gnupg(server: WkdServer, gpg: GnuPG, fingerprint: str) -> dict[str, str]:
    """Publish the key under each name `gpg --with-wkd-hash` lists for its user ids (as
    gpg-wks-server would); local part -> name."""
    lines = gpg.run("--with-wkd-hash", "--list-keys", fingerprint).stdout.decode().splitlines()
    names: dict[str, str] = {}
    for uid, listed in itertools.pairwise(lines):
        if uid.startswith("uid"):
            local = uid.partition("<")[2].rpartition("@")[0]
            names[local] = listed.strip().partition("@")[0]
    assert sorted(names) == sorted(QUOTED_UIDS), lines
    key = export(gpg, fingerprint)
    for name in names.values():
        server.respond(f"openpgpkey.{PARTNER}", f"{WELL_KNOWN}/{PARTNER}/hu/{name}", body=key)
    return names


def test_a_key_gnupg_publishes_for_quoted_user_ids_is_found(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext, tmp_path: Path
) -> None:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    first, *others = [f"<{local}@{PARTNER}>" for local in QUOTED_UIDS]
    fingerprint = make_key(gpg, first)
    for uid in others:
        gpg.run("--quick-add-uid", fingerprint, uid)
    names = publish_as_gnupg(wkd, gpg, fingerprint)
    client = WkdClient(
        resolver=wkd.resolver, ssl_context=client_ssl_context, timeout=10.0, max_bytes=65536
    )
    for local, name in names.items():
        assert local_part_hash(local) == name
        answer = client.fetch(f"{local}@{PARTNER}")
        assert answer.method == "advanced" and answer.body == export(gpg, fingerprint)


def test_the_chips_look_an_address_up_as_the_send_spells_it(
    runtime: Runtime,
    wkd: WkdServer,
    client_ssl_context: ssl.SSLContext,
    mail_users: dict[str, str],
    tmp_path: Path,
) -> None:
    """`"Mary.Smith"@partner.example` is mary.smith@partner.example (RFC 5322 3.2.4):
    the send looks that up, where gpg-wks published the key of `<Mary.Smith@...>`;
    the chip looked up the quoted spelling instead and said "needs a password"."""
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    fingerprint = make_key(gpg, f"<Mary.Smith@{PARTNER}>")
    found = gpg_wkd_name(f"<Mary.Smith@{PARTNER}>")
    assert found is not None
    wkd.respond(
        f"openpgpkey.{PARTNER}",
        f"{WELL_KNOWN}/{PARTNER}/hu/{found[0]}",
        body=export(gpg, fingerprint),
    )
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    rt = dataclasses.replace(runtime, wkd_transport=transport)
    now = dt.datetime.now(dt.UTC)
    typed = [f'"Mary.Smith"@{PARTNER}', f"Mary.Smith@{PARTNER}"]
    classes = recipients.classify(rt, typed, now, timeout=30.0)
    assert [(c.address, c.kind) for c in classes] == [(typed[0], "key"), (typed[1], "key")]
    assert {c.fingerprint.replace(" ", "") for c in classes} == {fingerprint}
    quoted_name = local_part_hash('"Mary.Smith"')
    assert not any(path.endswith(f"/hu/{quoted_name}") for _host, path in wkd.requests)
