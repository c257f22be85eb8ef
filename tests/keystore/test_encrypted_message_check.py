"""The packet check behind pass-through: real encrypted messages from GnuPG and Sequoia
(old and new header formats, partial lengths, v3/v6 PKESK, SKESK, SEIPD v1/v2) are
recognised; anything else shaped like OpenPGP is not, and a hostile length chain stops."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pysequoia as sq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.passthrough import is_already_encrypted
from gateway.timeutil import utcnow
from keystore import packets, pgp
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import make_key
from tests.openpgp import encrypt

PLAIN = b"Content-Type: text/plain\r\n\r\nthe text\r\n"


@pytest.fixture(scope="module")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GnuPG]:
    home = tmp_path_factory.mktemp("gpg")
    home.chmod(0o700)
    gpg = GnuPG(home)
    make_key(gpg, "bob@example.test")
    yield gpg


def split(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet with a definite length, either header format."""
    out, pos = [], 0
    while pos < len(data):
        first = data[pos]
        if first & 0x40:
            tag, octet = first & 0x3F, data[pos + 1]
            if octet < 192:
                start, size = pos + 2, octet
            elif octet < 224:
                start, size = pos + 3, ((octet - 192) << 8) + data[pos + 2] + 192
            else:
                assert octet == 255, "partial lengths are not split here"
                start, size = pos + 6, int.from_bytes(data[pos + 2 : pos + 6], "big")
        else:
            tag, width = (first >> 2) & 0x0F, (1, 2, 4)[first & 3]
            start = pos + 1 + width
            size = int.from_bytes(data[pos + 1 : start], "big")
        out.append((tag, data[start : start + size]))
        pos = start + size
    return out


def old_format(tag: int, body: bytes, width: int) -> bytes:
    kind = {1: 0, 2: 1, 4: 2}[width]
    return bytes([0x80 | (tag << 2) | kind]) + len(body).to_bytes(width, "big") + body


def new_format(tag: int, body: bytes, five: bool) -> bytes:
    size = len(body)
    if five:
        length = b"\xff" + size.to_bytes(4, "big")
    elif size < 192:
        length = bytes([size])
    else:
        assert size < 8384
        length = bytes([((size - 192) >> 8) + 192, (size - 192) & 0xFF])
    return bytes([0xC0 | tag]) + length + body


def gpg_messages(gpg: GnuPG) -> dict[str, bytes]:
    big = PLAIN * 20000  # streamed from stdin: gpg writes partial body lengths
    return {
        "gpg public key": gpg.run("--encrypt", "-r", "bob@example.test", input=PLAIN).stdout,
        "gpg partial lengths": gpg.run(
            "--encrypt", "-z", "0", "-r", "bob@example.test", input=big
        ).stdout,
        "gpg password": gpg.run(
            "--symmetric", "--passphrase", "pw", "--pinentry-mode", "loopback", input=PLAIN
        ).stdout,
    }


def sequoia_messages() -> dict[str, bytes]:
    found = {}
    for name, profile in (("rfc4880", sq.Profile.RFC4880), ("rfc9580", sq.Profile.RFC9580)):
        key = sq.Tsk.generate("carol@example.test", profile=profile)
        found[f"sequoia {name}"] = bytes(
            sq.encrypt(PLAIN, recipients=[key.extract_certificate()], armor=False)
        )
    found["sequoia password"] = bytes(sq.encrypt(PLAIN, passwords=["pw"], armor=False))
    return found


def test_real_encrypted_messages_are_recognised(gpg: GnuPG) -> None:
    key = pgp.generate("alice@example.test", utcnow())
    messages = {
        **gpg_messages(gpg),
        **sequoia_messages(),
        "the gateway's own": encrypt(PLAIN, [key.public], key, armor=False),
    }
    streamed = messages["gpg partial lengths"]
    assert streamed[0] == 0x84  # an old-format PKESK with a one-octet length ...
    after = 2 + streamed[1]
    assert streamed[after] == 0xD2 and 224 <= streamed[after + 1] < 255  # ... then partial SEIPD
    for name, data in messages.items():
        assert packets.is_encrypted_message(data), name
        armored = base64.encodebytes(data).decode()
        text = f"\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n{armored}-----END PGP MESSAGE-----\r\n"
        assert packets.dearmor_whole(text.encode()) == data, name


@pytest.mark.parametrize("style", ["old 1", "old 2", "old 4", "new", "new 5"])
def test_either_header_format_and_every_length_width(gpg: GnuPG, style: str) -> None:
    data = gpg_messages(gpg)["gpg public key"]
    rebuilt = b""
    for tag, body in split(data):
        if style.startswith("old") and tag < 16:  # the old format has four bits for the tag
            width = int(style[-1])
            if width == 1 and len(body) > 255:
                width = 2
            rebuilt += old_format(tag, body, width)
        else:
            rebuilt += new_format(tag, body, five=style == "new 5")
    assert packets.is_encrypted_message(rebuilt)


def test_old_format_indeterminate_length_for_the_encrypted_data(gpg: GnuPG) -> None:
    """The old SED packet (tag 9) fits the old format, whose last packet may run to the end."""
    (pkesk_tag, pkesk), (_, seipd) = split(gpg_messages(gpg)["gpg public key"])
    data = old_format(pkesk_tag, pkesk, 1) + bytes([0x80 | (packets.SED << 2) | 3]) + seipd
    assert packets.is_encrypted_message(data)
    assert not packets.is_encrypted_message(old_format(pkesk_tag, pkesk, 1) + b"\x87" + seipd)


def literal(text: bytes) -> bytes:
    return new_format(11, b"b\x00\x00\x00\x00\x00" + text, five=False)


def test_what_is_not_an_encrypted_message(gpg: GnuPG) -> None:
    data = gpg_messages(gpg)["gpg public key"]
    (_, pkesk), (_, seipd) = split(data)
    esk = new_format(packets.PKESK, pkesk, five=False)
    encrypted = new_format(packets.SEIPD, seipd, five=False)
    partial_esk = bytes([0xC1, 0xE0 + 5]) + pkesk[:32] + bytes([len(pkesk) - 32]) + pkesk[32:]
    cases = {
        "empty": b"",
        "literal data": literal(b"clear text"),
        "session key, then literal data": esk + literal(b"clear text"),
        "session key alone": esk,
        "encrypted data without a session key": encrypted,
        "a byte after the encrypted data": data + b"\x00",
        "truncated": data[:-1],
        "text": b"not packets at all",
        "partial length on a session-key packet": partial_esk + encrypted,
        "unknown PKESK version": new_format(packets.PKESK, b"\x09" + pkesk[1:], False) + encrypted,
        "padding after the encrypted data": data + new_format(21, b"\x00" * 8, False),
        "signature before": new_format(2, b"\x04" * 20, False) + data,
    }
    for name, case in cases.items():
        assert not packets.is_encrypted_message(case), name


def test_a_hostile_chain_of_partial_lengths_gives_up() -> None:
    """Two-octet chunks, more than MAX_CHUNKS of them: refused without walking them all."""
    chunk = bytes([0xE1]) + b"\x00\x00"
    data = new_format(packets.PKESK, b"\x03" + b"\x00" * 40, False) + bytes([0xD2])
    data += b"\x01\x00" + chunk * (packets.MAX_CHUNKS + 10) + b"\x01\x00"
    assert not packets.is_encrypted_message(data)


@pytest.mark.parametrize(
    "text",
    [
        b"> -----BEGIN PGP MESSAGE-----\n> \n> wcBMA\n> -----END PGP MESSAGE-----\n",
        b"Hi\n-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----\n",
        b"-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----\nBye\n",
        b"-----BEGIN PGP MESSAGE-----\nComment: a note\n\nwcBMA\n-----END PGP MESSAGE-----\n",
        b"-----BEGIN PGP MESSAGE-----\n\nwcBMA\n",
        b"-----BEGIN PGP MESSAGE-----\n\nwc!MA\n-----END PGP MESSAGE-----\n",
    ],
    ids=["quoted", "text before", "text after", "comment", "no end", "not base64"],
)
def test_only_a_whole_armored_message_is_dearmored(text: bytes) -> None:
    assert packets.dearmor_whole(text) is None


def test_armor_headers_and_checksum_are_read() -> None:
    text = (
        b"  \n-----BEGIN PGP MESSAGE-----\r\nVersion: GnuPG v2\r\n\r\n"
        b"wcBMA0AA\r\nAAAA\r\n=njUN\r\n-----END PGP MESSAGE-----\r\n\r\n"
    )
    assert packets.dearmor_whole(text) == base64.b64decode(b"wcBMA0AAAAAA")


@settings(derandomize=True, database=None, max_examples=500, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from([b"\x84", b"\xc1", b"\xd2", b"\xe0", b"\xff", b"\x03", b"\x01"])
        ).map(b"".join),
    )
)
def test_any_bytes_get_an_answer_not_an_exception(data: bytes) -> None:
    """Outside data: the checks answer True or False for any input, never raise."""
    assert packets.is_encrypted_message(data) in (True, False)
    armored = b"-----BEGIN PGP MESSAGE-----\n\n" + base64.encodebytes(data)
    assert packets.dearmor_whole(armored + b"-----END PGP MESSAGE-----\n") in (data, None)
    for head in (b"Content-Type: multipart/encrypted; boundary=x\r\n\r\n--x\r\n", b""):
        assert is_already_encrypted(head + data) in (True, False)
