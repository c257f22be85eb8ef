"""The fast reading of SMTP paths agrees with aiosmtpd's, which it stands in for.

Invariant: for any argument of MAIL FROM / RCPT TO, `SubmissionSMTP._getaddr` gives
what aiosmtpd's own `_getaddr` (the email package's RFC 5322 parser) gives, with and
without a local-part limit, and "cannot be read" where that parser crashes;
`simple_path` answers only shapes it reads exactly.
"""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import smtp_server
from gateway.smtp_paths import simple_path
from gateway.smtp_server import SubmissionSMTP

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atom = st.text(ATEXT, min_size=1, max_size=8)
label = st.text("abz09-", min_size=1, max_size=6)
odd = st.sampled_from(
    ['"q"', "a b", "(c)", "é", "", ".", "..", "@", "<", ">", " ", "\\", "[1.2.3.4]"]
)
local = st.one_of(st.lists(atom, min_size=1, max_size=3).map(".".join), odd, st.text(max_size=6))
domain = st.one_of(st.lists(label, min_size=1, max_size=3).map(".".join), odd)
rest = st.one_of(
    st.sampled_from(
        ["", " SIZE=100", " BODY=8BITMIME SMTPUTF8", ">", "  x", " (c) x", "\t \u2003y"]
    ),
    st.text(" \t\r\n\x0b\u00a0(x)=", max_size=5),
)


def _protocol(limit: int) -> SubmissionSMTP:
    """A protocol object with only what `_getaddr` reads (no server, no connection)."""
    protocol = object.__new__(SubmissionSMTP)
    protocol.local_part_limit = limit
    return protocol


@pytest.mark.parametrize("limit", [0, 4, 64])
@settings(max_examples=400, deadline=None)
@given(
    local=local,
    domain=domain,
    rest=rest,
    shape=st.sampled_from(["<{l}@{d}>{r}", "{l}@{d}{r}", "<{l}@{d}{r}", " <{l}@{d}>{r}"]),
)
def test_the_fast_reading_gives_what_aiosmtpd_gives(
    limit: int, local: str, domain: str, rest: str, shape: str
) -> None:
    arg = shape.format(l=local, d=domain, r=rest)
    protocol = _protocol(limit)
    try:
        expected = SMTP._getaddr(protocol, arg)
    except IndexError:  # the email package's parser on `"q"@`: a syntax error for us
        expected = (None, None)
    if expected[0] not in (None, "<>") and smtp_server._malformed(expected[0]):
        expected = (None, None)  # read leniently by the parser, refused by RFC 5321
    assert protocol._getaddr(arg) == expected


qtext = st.characters(codec="utf-8").filter(lambda c: c >= " " and c not in '"\\\x7f')
quoted_local = st.lists(
    st.one_of(
        qtext,
        st.sampled_from(" !#~").map(str),
        st.characters(min_codepoint=32, max_codepoint=126).map(lambda c: "\\" + c),
    ),
    max_size=12,
).map(lambda chars: '"' + "".join(chars) + '"')


@given(
    local=st.one_of(st.lists(atom, min_size=1, max_size=3).map(".".join), quoted_local),
    domain=st.lists(label, min_size=1, max_size=3).map(".".join),
)
def test_every_path_rfc_5321_allows_is_kept(local: str, domain: str) -> None:
    """The refusal of malformed quoted paths never refuses a path the grammar produces."""
    assert not smtp_server._malformed(f"{local}@{domain}")
    address, _rest = _protocol(64)._getaddr(f"<{local}@{domain}>")
    assert address is not None


def test_only_the_plain_shape_is_read_fast() -> None:
    assert simple_path("<a.b+c@mail.example.org> SIZE=10") == ("a.b+c@mail.example.org", "SIZE=10")
    for other in [
        '<"a b"@x.org>',
        "<>",
        "<@r.org:a@x.org>",
        "<a@[1.2.3.4]>",
        "<é@x.org>",
        "a@x.org",
    ]:
        assert simple_path(other) is None


def test_a_path_the_parser_crashes_on_is_a_syntax_error() -> None:
    with pytest.raises(IndexError):
        SMTP._getaddr(_protocol(0), '"q"@')
    assert _protocol(0)._getaddr('"q"@') == (None, None)
