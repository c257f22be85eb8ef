"""Threat: a correspondent's Web Key Directory (or whoever controls it) serves hostile keys.

The directory is a real HTTPS server (tests/fakes/wkd_server.py) and the keys are
real GnuPG and Sequoia keys, some cut or spliced: another address's key at Carol's
hash, keys with no usable encryption subkey (signing only, ElGamal, brainpool, an
expired or revoked one, an unknown algorithm), a revoked primary, a key made in the
future, a version 6 key, a secret key, garbage, and an answer over the size limit.
Each send re-asks the directory, and the directory changes its answer between sends
(a key replaced by another, revoked, withdrawn), as in a key replacement attack.

The invariant, checked for any sequence of answers: the submission never raises (no
`451` for ever), Carol's copy is encrypted to exactly the good key the directory
serves now and never to one seen revoked, and otherwise it is a secure page; the text
is never in her copy in clear, and no secret key material is ever stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
from collections.abc import Iterator

import pysequoia
import pytest
import sqlalchemy as sa
import trustme
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import db, pipeline, queue
from gateway.models import Account, QueueItem
from gateway.pipeline import pgpmime
from gateway.pipeline.context import ClientInfo, Sender, Submission
from gateway.runtime import Runtime
from gateway.wkd_client import Transport
from keystore import packets as pgp_packets
from keystore import store
from keystore.models import ExternalKey, WkdMiss
from tests.fakes.wkd_server import WkdServer
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import (
    PUBLIC_SUBKEY,
    Packet,
    export,
    join,
    make_key,
    packets,
    revoke_key,
    revoke_subkey,
)

ALICE, CAROL = "alice@example.test", "carol@partner.example"
TEXT = b"The quarterly figures, for Carol only."
SECRET_KEY, SECRET_SUBKEY = 5, 7
SHAPES = (
    "good",
    "replacement",
    "good armored",
    "good revoked",
    "alice's key at carol's hash",
    "signing only",
    "elgamal subkey",
    "brainpool subkey",
    "revoked subkey",
    "expired key",
    "made in the future",
    "experimental subkey algorithm",
    "secret key",
    "version 6 key",
    "garbage",
    "too large",
)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the directory serves, and the subkey id a copy must be encrypted to (or
    None: Carol gets a secure page). `revokes`: the key this answer shows revoked."""

    body: bytes = dataclasses.field(repr=False)
    encrypts_to: str | None = None
    revokes: str | None = None
    fingerprint: str | None = None


def subkey_of(gpg: GnuPG, fingerprint: str) -> str:
    lines = gpg.run("--with-colons", "--list-keys", fingerprint).stdout.decode().splitlines()
    return next(line.split(":")[4] for line in lines if line.startswith("sub:")).upper()


def with_subkey_algorithm(data: bytes, algorithm: int) -> bytes:
    parts = packets(data)
    at = next(i for i, p in enumerate(parts) if p.tag == PUBLIC_SUBKEY)
    raw = bytearray(parts[at].raw)
    raw[2 + 5] = algorithm  # header (2), version (1), created (4), then the algorithm
    return join([*parts[:at], Packet(PUBLIC_SUBKEY, bytes(raw)), *parts[at + 1 :]])


class Answers(dict[str, Answer]):
    """The answer shapes by name; printed by their names only (hypothesis prints the
    fixtures of a failing example, and the bodies run to megabytes)."""

    def __repr__(self) -> str:
        return f"Answers({sorted(self)})"


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Answers:
    """Every answer shape, made once (GnuPG is slow) with keys valid for a year."""

    def gpg() -> GnuPG:
        home = tmp_path_factory.mktemp("partner")
        home.chmod(0o700)
        return GnuPG(home)

    shapes = Answers()
    good_gpg = gpg()
    for name in ("good", "replacement"):
        fpr = make_key(good_gpg, f"Carol {name} <{CAROL}>")
        shapes[name] = Answer(export(good_gpg, fpr), subkey_of(good_gpg, fpr), fingerprint=fpr)
    good = shapes["good"]
    assert good.fingerprint is not None
    shapes["good armored"] = dataclasses.replace(
        good, body=export(good_gpg, good.fingerprint, armor=True)
    )
    shapes["good revoked"] = Answer(
        revoke_key(good_gpg, good.fingerprint), revokes=good.fingerprint
    )
    other = gpg()
    shapes["alice's key at carol's hash"] = Answer(
        export(other, make_key(other, f"Alice <{ALICE}>"))
    )
    signing = make_key(other, f"Carol signing <{CAROL}>", algo="ed25519", usage="sign")
    shapes["signing only"] = Answer(export(other, signing))
    elgamal = make_key(other, f"Carol dsa <{CAROL}>", algo="dsa2048", usage="sign")
    other.run("--quick-add-key", elgamal, "elg2048", "encr", "1y")
    shapes["elgamal subkey"] = Answer(export(other, elgamal))
    brainpool = make_key(other, f"Carol bp <{CAROL}>", algo="ed25519", usage="sign")
    other.run("--quick-add-key", brainpool, "brainpoolP256r1", "encr", "1y")
    shapes["brainpool subkey"] = Answer(export(other, brainpool))
    cut = gpg()
    subkey_revoked = make_key(cut, f"Carol sub <{CAROL}>")
    shapes["revoked subkey"] = Answer(revoke_subkey(cut, subkey_revoked))
    expired = make_key(cut, f"Carol old <{CAROL}>", expire="1d", faked_time="20200101T000000")
    shapes["expired key"] = Answer(export(cut, expired))
    future = make_key(cut, f"Carol future <{CAROL}>", faked_time="20400101T000000")
    shapes["made in the future"] = Answer(export(cut, future))
    odd = make_key(cut, f"Carol odd <{CAROL}>")
    shapes["experimental subkey algorithm"] = Answer(with_subkey_algorithm(export(cut, odd), 100))
    shapes["secret key"] = Answer(cut.run("--armor", "--export-secret-keys", odd).stdout)
    v6 = pysequoia.Tsk.generate(f"Carol <{CAROL}>", profile=pysequoia.Profile.RFC9580)
    shapes["version 6 key"] = Answer(bytes(v6.extract_certificate()))
    shapes["garbage"] = Answer(b"\xc6\xff\xff\xff\xff\x04" + b"\x00" * 64)
    shapes["too large"] = Answer(b"\x99" * (600 * 1024))
    assert sorted(shapes) == sorted(SHAPES)
    return shapes


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example"])
    yield server
    server.close()


@pytest.fixture
def rt(runtime: Runtime, wkd: WkdServer, client_ssl_context: ssl.SSLContext) -> Runtime:
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    return dataclasses.replace(runtime, wkd_transport=transport)


def submit(rt: Runtime, account_id: int, at: dt.datetime) -> Submission:
    raw = (
        (
            f"From: {ALICE}\r\nTo: {CAROL}\r\nSubject: figures\r\nX-Sealgate-Encrypt: yes\r\n\r\n"
        ).encode()
        + TEXT
        + b"\r\n"
    )
    submission = Submission(
        sender=Sender(account_id, ALICE),
        envelope_from=ALICE,
        recipients=[CAROL],
        raw=raw,
        client=ClientInfo("test", "127.0.0.1", "ESMTPSA"),
        received_at=at,
    )
    pipeline.submit(rt, submission)
    return submission


def carol_copy(rt: Runtime, submission: Submission) -> bytes:
    """What the relay would send Carol, as committed to the outbound queue."""
    with db.read_only(rt.sessions) as session:
        (row,) = session.scalars(
            sa.select(QueueItem).where(
                QueueItem.queue_id == submission.queue_id, QueueItem.rcpt_to == CAROL
            )
        ).all()
        return queue.open_raw(rt.ring.get(), row)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4))
# Replaced, revoked, the old copy served again, then another key, then a secret key.
@example(names=["good revoked", "good"])
@example(names=["good", "replacement", "good revoked", "good", "replacement", "secret key"])
def test_any_sequence_of_directory_answers_encrypts_to_the_good_key_or_seals(
    names: list[str],
    rt: Runtime,
    wkd: WkdServer,
    answers: Answers,
    mail_users: dict[str, str],
) -> None:
    with db.transaction(rt.sessions) as session:  # each example starts with no memory
        session.execute(sa.delete(ExternalKey))
        session.execute(sa.delete(WkdMiss))
    with db.read_only(rt.sessions) as session:
        account_id = session.scalar(sa.select(Account.id).where(Account.email == ALICE))
        alice = store.public_key(session, ALICE)
    assert account_id is not None
    alice_ids = set(alice.subkey_ids) if alice is not None else set()
    keys = rt.settings.keys
    step = dt.timedelta(seconds=max(keys.wkd_cache_ttl, keys.wkd_failure_ttl) + 1)
    revoked: set[str] = set()
    at = dt.datetime.now(dt.UTC)
    for name in names:
        answer = answers[name]
        wkd.publish(CAROL, answer.body)
        submission = submit(rt, account_id, at)  # never raises
        at += step  # the next send asks the directory again
        if answer.revokes:
            revoked.add(answer.revokes)
        copy = carol_copy(rt, submission)
        assert TEXT not in copy, name
        payload = pgpmime.encrypted_payload(copy)
        usable = answer.encrypts_to is not None and answer.fingerprint not in revoked
        if not usable:
            assert payload is None, f"{name}: encrypted although no good key is served"
            continue
        assert payload is not None, f"{name}: a secure page although a good key is served"
        with db.read_only(rt.sessions) as session:
            alice = store.public_key(session, ALICE)
        assert alice is not None
        recipients = pgp_packets.recipient_key_ids(payload) - set(alice.subkey_ids) - alice_ids
        assert recipients == {answer.encrypts_to}, name
    with db.read_only(rt.sessions) as session:
        stored = session.scalars(sa.select(ExternalKey.public_key)).all()
    for key in stored:  # our minimal re-serialisation: public packets only
        assert not {p.tag for p in packets(key)} & {SECRET_KEY, SECRET_SUBKEY}


def test_each_refused_answer_says_why_and_leaks_nothing(
    rt: Runtime, wkd: WkdServer, answers: Answers, mail_users: dict[str, str]
) -> None:
    """The reason kept for a refused answer (shown to admins, logged) is short, plain,
    and holds no key material, for a secret key least of all."""
    with db.read_only(rt.sessions) as session:
        account_id = session.scalar(sa.select(Account.id).where(Account.email == ALICE))
    assert account_id is not None
    at = dt.datetime.now(dt.UTC)
    step = dt.timedelta(seconds=rt.settings.keys.wkd_failure_ttl + 1)
    for name, answer in answers.items():
        if answer.encrypts_to is not None:
            continue
        wkd.publish(CAROL, answer.body)
        submit(rt, account_id, at)
        at += step
        with db.read_only(rt.sessions) as session:
            miss = session.get(WkdMiss, CAROL)
        assert miss is not None, name
        assert miss.reason.isprintable() and len(miss.reason) <= 200, name
        assert "BEGIN PGP" not in miss.reason, name
        if name == "secret key":
            assert "secret key" in miss.reason
