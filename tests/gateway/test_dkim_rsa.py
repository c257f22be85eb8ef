"""DKIM's RSA arithmetic by OpenSSL (gateway/dkim/openssl_rsa.py): dkimpy still makes the
whole DKIM-Signature and OpenSSL only computes its RSA value. RSASSA-PKCS1-v1_5 and
Ed25519 are deterministic, so the oracle is exact: for any message, what the relay prepends
is byte for byte what dkimpy's own arithmetic gives, and dkimpy and an independent
verifier (Perl's Mail::DKIM, keys fetched over the DNS wire protocol) accept it. The hook
is tied to the dkimpy release it was checked against: another release fails here."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import logging
import math
import subprocess
import types
from collections.abc import Iterator

import asn1crypto.keys
import dkim
import dkim.crypto
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.dkim import keys as dkim_keys
from gateway.dkim import openssl_rsa
from gateway.dkim import sign as dkim_sign
from gateway.dnsrecords import records
from gateway.relay import wire_form
from tests.fakes.dns_server import FakeDns

DOMAIN = "example.test"


class Published:
    """The domain's two keys as the relay gets them, and their TXT values by selector.

    Not a dataclass: hypothesis prints a failing example's arguments field by field,
    private keys included, whatever their repr says.
    """

    def __init__(self) -> None:
        self.signing: list[dkim_keys.SigningKey] = []
        self.txt: dict[str, str] = {}
        made = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
        for algorithm in dkim_keys.ALGORITHMS:
            private, public = dkim_keys._generate(algorithm)
            selector = dkim_keys.selector_for(algorithm, made)
            self.signing.append(dkim_keys.SigningKey(DOMAIN, selector, algorithm, private))
            self.txt[selector] = f"v=DKIM1; k={algorithm}; p={public}"

    def __repr__(self) -> str:
        return f"Published({sorted(self.txt)})"

    def lookup(self, name: bytes, timeout: float = 5, **_: object) -> bytes | None:
        """A `dnsfunc` for dkimpy: the TXT record at `name` (DNS is outside the machine)."""
        selector, _, rest = name.decode("ascii").partition("._domainkey.")
        found = self.txt.get(selector) if rest.rstrip(".") == DOMAIN else None
        return found.encode("ascii") if found else None

    def verifies(self, raw: bytes, index: int) -> bool:
        try:
            return bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=self.lookup))
        except dkim.ValidationError:
            return False


@pytest.fixture(scope="module")
def published() -> Published:
    return Published()


@contextlib.contextmanager
def dkimpy_clock(now: int) -> Iterator[None]:
    """dkimpy reads the clock itself for t=, which is signed: both runs must see one time."""
    real = dkim.time
    dkim.time = types.SimpleNamespace(time=lambda: float(now))
    try:
        yield
    finally:
        dkim.time = real


def outcome(raw: bytes, signing: list[dkim_keys.SigningKey]) -> tuple[str, bytes]:
    """What signing `raw` gives: the message, or the kind of error (the same either way)."""
    try:
        return "signed", dkim_sign.sign(raw, signing)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return type(exc).__name__, b""


header_names = st.sampled_from(
    [b"To", b"to", b"Cc", b"Subject", b"SUBJECT", b"Date", b"Message-ID", b"Reply-To",
     b"References", b"MIME-Version", b"Content-Type", b"Received", b"X-Odd", b"List-Id",
     b"DKIM-Signature", b"From"]
)  # fmt: skip
header_values = st.lists(
    st.sampled_from(
        [b"a", b"Z", b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b"\xc3\xa9", b"\xff", b":", b";",
         b"=?utf-8?q?caf=C3=A9?=", b"<a@example.test>", b"\x00", b"b=", b"h=from"]
    ),
    max_size=12,
).map(b"".join)  # fmt: skip
body_pieces = st.sampled_from(
    [b"x", b" ", b"\t", b"\r\n", b"\n", b"\r", b"\xe9", b".", b"  \r\n", b"\r\n\r\n", b"-- ",
     b"y" * 1000]
)  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Odd shapes: folded, 8-bit, repeated and empty fields, bare CR or LF, any body."""
    fields = draw(st.lists(st.tuples(header_names, header_values), max_size=8))
    if draw(st.integers(0, 9)):  # mostly one From (the domain's), somewhere among them
        at = draw(st.integers(0, len(fields)))
        fields.insert(at, (b"From", draw(st.sampled_from([b" ", b""])) + b"<a@example.test>"))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    head = b"".join(name + b":" + value + eol for name, value in fields)
    return head + eol + b"".join(draw(st.lists(body_pieces, max_size=60)))


def test_the_hook_is_in_for_the_dkimpy_it_was_checked_against() -> None:
    """A new dkimpy fails here: read its gen_header and dkim/crypto.py, then move the number."""
    assert openssl_rsa.dkimpy_version() == openssl_rsa.CHECKED_DKIMPY
    assert openssl_rsa.installed()
    assert dkim.RSASSA_PKCS1_v1_5_sign is openssl_rsa.rsassa_pkcs1_v1_5_sign
    assert dkim.crypto.RSASSA_PKCS1_v1_5_sign is not openssl_rsa.rsassa_pkcs1_v1_5_sign
    assert openssl_rsa.install()  # again: a no-op
    with openssl_rsa.dkimpy_arithmetic():
        assert not openssl_rsa.installed()
    assert openssl_rsa.installed()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=messages(), now=st.integers(1_000_000_000, 4_000_000_000))
@example(raw=b"From: <a@example.test>\r\n\r\n", now=1_800_000_000)  # no body at all
@example(raw=b"From:<a@example.test>\nSubject:\n\t\n\n\r\r\n", now=1_800_000_000)
def test_signatures_are_the_bytes_dkimpys_own_arithmetic_makes(
    published: Published, raw: bytes, now: int
) -> None:
    """Both DKIM-Signature fields (rsa-sha256 through OpenSSL, ed25519-sha256 as before),
    for the message as stored and as it goes on the wire, equal dkimpy's own; what is
    signed verifies with dkimpy, and one changed body byte breaks it."""
    signing = published.signing
    for form in (raw, wire_form(raw)):
        with dkimpy_clock(now):
            assert openssl_rsa.installed()
            fast = outcome(form, signing)
            with openssl_rsa.dkimpy_arithmetic():
                slow = outcome(form, signing)
        assert fast == slow
    kind, signed = fast  # the wire form's
    assert kind == "signed"
    if signed == wire_form(raw):
        return  # dkimpy refused it: sent unsigned, as before (the same both ways, above)
    with dkimpy_clock(now):
        assert [published.verifies(signed, i) for i in (0, 1)] == [True, True]
        assert [published.verifies(signed + b"X\r\n", i) for i in (0, 1)] == [False, False]


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=64), sha1=st.booleans(), bits=st.sampled_from([1024, 2048, 3072]))
def test_the_rsa_value_is_dkimpys_for_any_digest_and_key_size(
    rsa_keys: dict[int, bytes], data: bytes, sha1: bool, bits: int
) -> None:
    """The hooked function itself, rsa-sha1 included (dkimpy still signs it when asked)."""
    parsed = dkim.crypto.parse_pem_private_key(rsa_keys[bits])
    hashed = (hashlib.sha1 if sha1 else hashlib.sha256)(data)
    fast = openssl_rsa.rsassa_pkcs1_v1_5_sign(hashed, parsed)
    assert bytes(fast) == bytes(dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashed, parsed))
    assert len(fast) == bits // 8


@pytest.fixture(scope="module")
def rsa_keys() -> dict[int, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return {
        bits: rsa.generate_private_key(public_exponent=65537, key_size=bits).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        for bits in (1024, 2048, 3072)
    }


def _numbers(p: int, q: int, e: int = 65537) -> dict[str, int]:
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    return {
        "version": 0, "modulus": p * q, "publicExponent": e, "privateExponent": d,
        "prime1": p, "prime2": q, "exponent1": d % (p - 1), "exponent2": d % (q - 1),
        "coefficient": pow(q, -1, p),
    }  # fmt: skip


def test_what_openssl_does_not_take_stays_dkimpys(rsa_keys: dict[int, bytes]) -> None:
    """A key too short for the digest still raises dkimpy's error (a DKIMException for the
    caller); an inconsistent key still gets dkimpy's value; so does a hash it has no
    OpenSSL name for."""
    tiny = _numbers(2**127 - 1, 2**107 - 1)  # two Mersenne primes: a 234-bit modulus
    for function in (openssl_rsa.rsassa_pkcs1_v1_5_sign, dkim.crypto.RSASSA_PKCS1_v1_5_sign):
        with pytest.raises(dkim.crypto.DigestTooLargeError):
            function(hashlib.sha256(b"m"), tiny)
    broken = dict(dkim.crypto.parse_pem_private_key(rsa_keys[1024]))
    broken["coefficient"] += 1
    hashed = hashlib.sha256(b"m")
    assert bytes(openssl_rsa.rsassa_pkcs1_v1_5_sign(hashed, broken)) == bytes(
        dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashed, broken)
    )
    good = dkim.crypto.parse_pem_private_key(rsa_keys[1024])
    with pytest.raises(KeyError):  # dkimpy's own answer to a hash it has no DigestInfo for
        openssl_rsa.rsassa_pkcs1_v1_5_sign(hashlib.sha512(b"m"), good)
    with pytest.raises(dkim.ParameterError):  # through dkim.sign, the error it always gave
        dkim.sign(
            b"From: a@example.test\r\n\r\nb\r\n",
            b"s",
            b"example.test",
            b"-----BEGIN RSA PRIVATE KEY-----\n"
            + base64.encodebytes(_der(tiny))
            + b"-----END RSA PRIVATE KEY-----\n",
        )


def _der(numbers: dict[str, int]) -> bytes:
    """An RSAPrivateKey (RFC 8017) in DER, for a key too small for OpenSSL to make."""
    renamed = {"publicExponent": "public_exponent", "privateExponent": "private_exponent"}
    fields = {renamed.get(k, k): v for k, v in numbers.items()} | {"version": "two-prime"}
    return bytes(asn1crypto.keys.RSAPrivateKey(fields).dump())


def test_the_openssl_key_is_made_once_per_key_and_no_key_material_is_logged(
    published: Published,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signing = published.signing
    rsa_key = next(k for k in signing if k.algorithm == "rsa")
    numbers = dkim.crypto.parse_pem_private_key(rsa_key.private)
    openssl_rsa._private_key.cache_clear()
    caplog.set_level(logging.DEBUG)
    for n in range(5):
        dkim_sign.sign(f"From: a@{DOMAIN}\r\nSubject: {n}\r\n\r\nbody\r\n".encode(), signing)
    info = openssl_rsa._private_key.cache_info()
    assert (info.misses, info.hits) == (1, 4)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    pem_body = b"".join(rsa_key.private.splitlines()[1:-1]).decode()
    for secret in (str(numbers["prime1"]), f"{numbers['prime1']:x}", pem_body[40:80]):
        assert secret not in logged


# Perl's Mail::DKIM (Debian's libmail-dkim-perl): its own canonicalisation and header
# hashing, keys asked of the fake name server on `port`. Debian 12's release (1.20230212)
# verifies rsa-sha256 only; ed25519-sha256 it reports as an unsupported algorithm.
MAIL_DKIM = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Mail::DKIM::DNS; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $ARGV[0], recurse => 0, retry => 1,
    udp_timeout => 5, tcp_timeout => 5));
binmode STDIN;
my $verifier = Mail::DKIM::Verifier->new();
$verifier->load(*STDIN);
print $_->algorithm, " ", $_->result_detail, "\n" for $verifier->signatures;
"""


@pytest.fixture(scope="module")
def name_server(
    published: Published,
) -> Iterator[FakeDns]:
    zone = records.zone_text(
        [
            records.Record(f"{selector}._domainkey.{DOMAIN}.", "TXT", records.txt_value(v), "")
            for selector, v in published.txt.items()
        ],
        300,
    )
    with FakeDns(zone, origin=f"{DOMAIN}.") as server:
        yield server


def mail_dkim(raw: bytes, server: FakeDns) -> list[str]:
    done = subprocess.run(
        ["perl", "-e", MAIL_DKIM, str(server.port)],
        input=raw,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return sorted(done.stdout.decode().splitlines())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=messages())
def test_an_independent_verifier_accepts_both_signatures(
    published: Published,
    name_server: FakeDns,
    raw: bytes,
) -> None:
    """The rsa-sha256 signature of what the relay sends (CRLF on the wire, signed with the
    hook in) passes Mail::DKIM; with the body changed, it fails."""
    raw = wire_form(raw)
    signed = dkim_sign.sign(raw, published.signing)
    if signed == raw:
        return  # dkimpy refused it (see the test above): it leaves unsigned
    assert "rsa-sha256 pass" in mail_dkim(signed, name_server)
    failed = [line for line in mail_dkim(signed + b"X\r\n", name_server) if "rsa" in line]
    assert [line.split(" ", 2)[:2] for line in failed] == [["rsa-sha256", "fail"]]
