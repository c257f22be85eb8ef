"""The form of a message a relay can take (gateway.transport.sevenbit).

The promise, for any message and a relay with or without 8BITMIME: what
`convert` returns is valid data for that relay (no NUL, lines of at most 998
octets, CRLF line ends only; 7-bit, header fields included, without 8BITMIME),
and it says the same thing (each part decodes to the same bytes, each header
field to the same text, the preamble and epilogue are as they were or
quoted-printable for them); a message that fits already is not changed. Or it
raises Unconvertible, and only for what cannot be carried faithfully.
"""

from __future__ import annotations

import binascii
import email
import email.header
import email.message
from email.policy import compat32
from email.policy import default as default_policy

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.transport import sevenbit


def parsed(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def parsed_raw(raw: bytes) -> email.message.Message:
    """The message with header values as written (encoded words not decoded)."""
    return email.message_from_bytes(raw, policy=compat32)


def leaves(raw: bytes) -> list[tuple[str, bytes]]:
    found = []
    for part in parsed(raw).walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((part.get_content_type(), payload.replace(b"\r\n", b"\n")))
    return found


def header_texts(raw: bytes, name: str) -> list[str]:
    return [" ".join(str(v).split()) for p in parsed(raw).walk() for v in p.get_all(name, [])]


def valid_for(data: bytes, *, eightbit: bool) -> bool:
    """RFC 5321 / RFC 6152: CRLF line ends only, lines of at most 998 octets, no NUL, and
    7-bit unless the relay announced 8BITMIME."""
    lines = data.split(b"\r\n")
    return (
        b"\x00" not in data
        and not any(b"\r" in line or b"\n" in line or len(line) > 998 for line in lines)
        and (eightbit or data.isascii())
    )


def test_a_latin_1_subject_and_display_name_become_encoded_words() -> None:
    """Postfix sends such header bytes as they are; a 7-bit relay got them 8-bit."""
    raw = b"From: J\xf6rg <joerg@example.test>\r\nSubject: caf\xe9 cr\xe8me\r\n\r\nhello\r\n"
    out = sevenbit.downgrade(raw)
    assert sevenbit.is_7bit(out)
    assert b"=?unknown-8bit?" in out
    msg = parsed(out)
    assert msg["From"].addresses[0].addr_spec == "joerg@example.test"
    words = email.header.decode_header(str(parsed_raw(out)["Subject"]))
    assert b"".join(w if isinstance(w, bytes) else w.encode() for w, _ in words) == (
        b"caf\xe9 cr\xe8me"
    )
    assert out.endswith(b"\r\n\r\nhello\r\n")


def test_part_headers_are_encoded_too() -> None:
    raw = (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n'
        b"\r\n"
        b"--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="Gr\xc3\xbc\xc3\x9fe.pdf"\r\n'
        b"Content-Description: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"aGVsbG8=\r\n"
        b"--b--\r\n"
    )
    out = sevenbit.downgrade(raw)
    assert sevenbit.is_7bit(out)
    [_top, part] = parsed(out).walk()
    assert part.get_filename() == "Grüße.pdf"
    assert str(part["Content-Description"]) == "Grüße"
    assert leaves(out) == leaves(raw)


@pytest.mark.parametrize(
    ("field", "status"),
    [
        (b"To: j\xf6rg@example.test", sevenbit.NON_ASCII_ADDRESS),
        (b"Message-ID: <\xe9@example.test>", sevenbit.CONVERSION_NOT_SUPPORTED),
        (b"not a field \xe9", sevenbit.CONVERSION_NOT_SUPPORTED),
    ],
)
def test_what_encoded_words_cannot_carry_is_unconvertible(field: bytes, status: str) -> None:
    with pytest.raises(sevenbit.Unconvertible) as caught:
        sevenbit.downgrade(b"From: a@example.test\r\n" + field + b"\r\n\r\nhello\r\n")
    assert caught.value.status == status


def multipart(preamble: bytes, epilogue: bytes, boundary: bytes = b"b") -> bytes:
    return (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n'
        b"\r\n" + preamble + b"--" + boundary + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Gr\xc3\xbc\xc3\x9fe\r\n"
        b"--" + boundary + b"--\r\n" + epilogue
    )


def test_an_8bit_preamble_and_epilogue_are_quoted_printable_and_decode_back() -> None:
    """RFC 2046 5.1.1: readers ignore them, yet each 8-bit byte was a "?" for good."""
    preamble = b"Vorspann: Gr\xc3\xbc\xc3\x9fe = 1 \x00\r\n"
    epilogue = b"\xe9" * 1200 + b"\r\n"
    out = sevenbit.downgrade(multipart(preamble, epilogue))
    assert sevenbit.fits(out, eightbit=False)
    msg = parsed(out)
    assert isinstance(msg.preamble, str) and isinstance(msg.epilogue, str)
    assert binascii.a2b_qp(msg.preamble) == preamble.rstrip(b"\r\n")
    assert binascii.a2b_qp(msg.epilogue).replace(b"\r\n", b"\n") == b"\xe9" * 1200 + b"\n"


def test_a_7bit_preamble_stays_as_it_is() -> None:
    raw = multipart(b"This is a multi-part message in MIME format.\r\n", b"")
    assert b"\r\nThis is a multi-part message in MIME format.\r\n--b\r\n" in (
        sevenbit.downgrade(raw)
    )


def test_an_encoded_preamble_does_not_make_a_delimiter_line() -> None:
    """A "?" is a boundary character: a preamble line "--b\\xe9" became "--b?", the
    delimiter line of boundary "b?", and a hidden part appeared that was not there."""
    raw = multipart(b"--b\xe9\r\nContent-Type: text/html\r\n\r\n<b>hidden</b>\r\n", b"", b"b?")
    assert leaves(raw) == [("text/plain", "Grüße".encode())]
    out = sevenbit.downgrade(raw)
    assert leaves(out) == leaves(raw)
    assert binascii.a2b_qp(parsed(out).preamble).startswith(b"--b\xe9\r\n")


def test_for_an_8bitmime_relay_only_what_8bit_data_may_not_hold_is_converted() -> None:
    """RFC 6152 2: no NUL, no line over 998 octets; 8-bit bytes are fine."""
    valid = b"Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    nul = b"Content-Type: application/octet-stream\r\n\r\n\xff\x00\r\n"
    raw = (
        b"Subject: caf\xe9 \x00 cr\xe8me\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n'
        b"\r\n--b\r\n" + valid + b"--b\r\n" + nul + b"--b--\r\n"
    )
    assert not sevenbit.fits(raw, eightbit=True)
    out = sevenbit.convert(raw, eightbit=True)
    assert sevenbit.fits(out, eightbit=True)
    assert out.startswith(b"Subject: caf\xe9   cr\xe8me\r\n")
    assert b"\r\n--b\r\n" + valid + b"--b\r\n" in out
    assert leaves(out) == leaves(raw)
    assert sevenbit.convert(valid, eightbit=True) == valid


def test_a_long_header_line_is_folded_at_its_white_space() -> None:
    """A line over 998 octets is valid for no relay. Folding before white space changes
    nothing; a line without any (X-Note) is written in encoded words, which can break."""
    words = b" ".join([b"word%d" % n for n in range(300)])
    raw = b"Subject: " + words + b"\r\nX-Note: " + b"x" * 1200 + b"\r\n\r\nhello\r\n"
    for eightbit in (False, True):
        out = sevenbit.convert(raw, eightbit=eightbit)
        assert sevenbit.fits(out, eightbit=False)
        assert parsed_raw(out)["Subject"].replace("\r\n", "") == words.decode()
        assert header_texts(out, "X-Note") == ["x" * 1200]


def test_a_message_id_longer_than_a_line_is_unconvertible() -> None:
    """A message id may not be an encoded word, nor be folded inside: the mail is returned."""
    raw = b"Message-ID: <" + b"x" * 1200 + b"@example.test>\r\n\r\nhello\r\n"
    with pytest.raises(sevenbit.Unconvertible) as caught:
        sevenbit.convert(raw, eightbit=True)
    assert caught.value.status == sevenbit.CONVERSION_NOT_SUPPORTED


def test_a_bare_cr_in_the_header_section_is_a_space_not_a_line_end() -> None:
    """The gateway reads it as part of the line (gateway.rawheaders); sent as a line end it
    made a field no check had seen. In the body it is a line end, as DATA makes it."""
    raw = b"X-Note: x\rFrom: ceo@bank.example\r\nFrom: a@example.test\r\n\r\nb\rc\r\n"
    for eightbit in (False, True):
        assert not sevenbit.fits(raw, eightbit=eightbit)
        out = sevenbit.convert(raw, eightbit=eightbit)
        assert out == (
            b"X-Note: x From: ceo@bank.example\r\nFrom: a@example.test\r\n\r\nb\r\nc\r\n"
        )
    assert sevenbit.fits(b"X-Note: x\r\n\r\nb\rc\r\n", eightbit=False)


# -- generative ---------------------------------------------------------------------

header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# A display name as mail clients write one unquoted: no RFC 5322 specials.
display_names = st.lists(
    st.sampled_from([b"a", b"Z", b"0", b" ", b"\xe9", b"\xc3\xbc", b"\xff", b"\x80", b"-"]),
    max_size=20,
).map(b"".join)
# A header line past 998 octets: words to fold at, or one word too long to fold.
long_header_values = st.one_of(
    st.integers(170, 400).map(lambda n: b" ".join([b"w%d" % i for i in range(n)])),
    st.tuples(st.sampled_from([b"x", b"\xe9", b"\xc3\xbc"]), st.integers(999, 1400)).map(
        lambda t: t[0] * t[1]
    ),
)
# Lines past 998 octets, in any bytes: not 8bit data even for an 8BITMIME relay.
long_lines = st.tuples(
    st.binary(max_size=40), st.sampled_from([b"y", b"\xe9", b"\xc3\xbc"]), st.integers(500, 1400)
).map(lambda t: t[0] + t[1] * t[2])
body_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.binary(max_size=60), long_lines), max_size=3).map(b"\r\n".join),
)
# A multipart's preamble or epilogue: no line of it a delimiter.
outside_bytes = st.binary(max_size=80).filter(lambda b: b"--" not in b)
identity_cte = st.sampled_from([None, "7bit", "8bit", "binary"])
content_type = st.sampled_from(["text/plain; charset=utf-8", "application/octet-stream"])


@st.composite
def parts(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A MIME part (its header section, its body) with 8-bit bytes where they fit."""
    cte = draw(identity_cte)
    head = b"Content-Type: " + draw(content_type).encode() + b"\r\n"
    head += b"Content-Description: " + draw(header_bytes) + b"\r\n"
    head += (
        b'Content-Disposition: attachment; filename="'
        + draw(header_bytes).replace(b'"', b"").replace(b"\\", b"")
        + b'"\r\n'
    )
    if cte:
        head += b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n"
    body = draw(body_bytes)
    assume(b"--" not in body)  # no line of the body is taken for a boundary
    return head, body


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    top = b"From: " + draw(display_names)
    top += b" <alice@example.test>\r\nSubject: " + draw(header_bytes) + b"\r\n"
    top += b"X-Note: " + draw(header_bytes) + b"\r\nMIME-Version: 1.0\r\n"
    if draw(st.booleans()):
        top += b"X-Long: " + draw(long_header_values) + b"\r\n"
    chosen = draw(st.lists(parts(), min_size=1, max_size=3))
    if len(chosen) == 1:
        head, body = chosen[0]
        return top + head + b"\r\n" + body
    top += b'Content-Type: multipart/mixed; boundary="=b="\r\n\r\n'
    preamble = draw(outside_bytes)
    top += preamble + b"\r\n" if preamble else b""
    for head, body in chosen:
        top += b"--=b=\r\n" + head + b"\r\n" + body + b"\r\n"
    return top + b"--=b=--\r\n" + draw(outside_bytes)


def outside(raw: bytes) -> tuple[bytes | None, bytes | None]:
    """The preamble and epilogue of `raw`, as bytes (None where there is none)."""
    msg = parsed(raw)

    def as_bytes(text: str | None) -> bytes | None:
        return None if text is None else text.encode("ascii", "surrogateescape")

    return as_bytes(msg.preamble), as_bytes(msg.epilogue)


def filenames(raw: bytes) -> list[str | None]:
    """Each part's filename, white space (a NUL among it) as single spaces: a filename
    written again is folded and unfolded so, one that is 7-bit already is not."""
    return [
        name and " ".join(name.replace("\x00", " ").split())
        for name in (p.get_filename() for p in parsed(raw).walk())
    ]


@given(messages(), st.booleans())
def test_what_a_relay_gets_is_valid_for_it_and_says_the_same(raw: bytes, eightbit: bool) -> None:
    """For a relay with or without 8BITMIME: the converted message is valid for it (no
    NUL, lines of at most 998 octets, CRLF only, 7-bit without 8BITMIME), its parts
    decode to the same bytes, header fields to the same text (a NUL a space), and the
    preamble and epilogue are as they were or quoted-printable for them; a message
    that fits already is not changed."""
    wire = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    out = sevenbit.convert(raw, eightbit=eightbit)
    assert valid_for(out, eightbit=eightbit)
    assert sevenbit.fits(out, eightbit=eightbit)
    if sevenbit.fits(raw, eightbit=eightbit):
        assert out == wire
    assert leaves(out) == leaves(wire)
    for name in ("Subject", "X-Note", "X-Long", "Content-Description"):
        before = header_texts(wire, name)
        assert header_texts(out, name) == [" ".join(t.replace("\x00", " ").split()) for t in before]
    assert filenames(out) == filenames(wire)
    for after, before in zip(outside(out), outside(wire), strict=True):
        assert after == before or (after is not None and binascii.a2b_qp(after) == before)


@pytest.mark.parametrize(
    ("cte", "body", "decoded"),
    [
        ("quoted-printable", b"Gr\xc3\xbc=C3=9Fe =\r\nhier\r\n", "Grüße hier\n"),
        ("base64", b"R3L\xc3\xbc\xc3\x9fDvMOfZQ==\r\n", "Grüße"),
        ("base64", b"R3LDvMOfZ\xff\r\n", "Grüß"),  # 1 letter past the last block: dropped
    ],
)
def test_a_part_declared_encoded_that_holds_8bit_bytes_is_encoded_again(
    cte: str, body: bytes, decoded: str
) -> None:
    """Such a part is not 7-bit data; it went to a 7-bit relay as it was. Now it is
    decoded as a lenient reader decodes it and encoded again, in the same encoding."""
    raw = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body
    )
    out = sevenbit.downgrade(raw)
    assert sevenbit.is_7bit(out)
    part = parsed(out)
    assert part["Content-Transfer-Encoding"] == cte
    assert part.get_content().replace("\r\n", "\n") == decoded


def test_8bit_data_in_an_encoding_not_known_is_unconvertible() -> None:
    raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 \xe9\r\n"
    with pytest.raises(sevenbit.Unconvertible) as caught:
        sevenbit.downgrade(raw)
    assert caught.value.status == sevenbit.CONVERSION_NOT_SUPPORTED
