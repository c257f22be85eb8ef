"""The DATA reader (gateway.smtp_data) against the rules of RFC 5321 §4.5.2.

Invariants, over any text a client may send (bare LFs, lone CRs, lines that start
with dots, lines at and past the limit) cut into any TCP segments:
- the text a client dot-stuffs comes back byte for byte (COMPLETE) exactly when no
  line is longer than the line limit and the stuffed text is within the size limit;
  otherwise the outcome names the limit and no content is kept;
- the reader stops at the terminating dot: what the client pipelined after it (the
  next command) is still there for the command loop.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp_data import Outcome, read_data

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit, the stream limit of its reader


def stuff(text: bytes) -> bytes:
    """What a client sends for `text` (smtplib's quotedata for CRLF text)."""
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    stuffed = text.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def read(stream: bytes, cuts: list[int], size_limit: int | None) -> tuple[Outcome, bytes, bytes]:
    async def run() -> tuple[Outcome, bytes, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        pos = 0
        for cut in sorted(c % (len(stream) + 1) for c in cuts):
            reader.feed_data(stream[pos:cut])
            pos = max(pos, cut)
        reader.feed_data(stream[pos:])
        reader.feed_eof()
        text = await read_data(reader, size_limit=size_limit, line_limit=LINE_LIMIT)
        return text.outcome, text.content, await reader.read()

    return asyncio.run(run())


line = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\r\n", b"")),
    st.sampled_from(
        [b"", b".", b"..", b".\r", b". ", b"\n.", b"a\nb", b"\r", b"\r\r\r", b"\n.\r", b"x."]
    ),
    st.integers(min_value=995, max_value=1010).map(lambda n: b"x" * n),
)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(line, max_size=24),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=6),
    size_limit=st.one_of(st.none(), st.integers(min_value=1, max_value=3000)),
)
def test_the_text_comes_back_exactly_or_the_limit_is_named(
    lines: list[bytes], cuts: list[int], size_limit: int | None
) -> None:
    text = b"".join(line + b"\r\n" for line in lines)
    sent = stuff(text)
    after = b"QUIT\r\n"
    outcome, content, rest = read(sent + after, cuts, size_limit)

    assert rest == after
    stuffed_lines = sent[: -len(b".\r\n")].split(b"\r\n")[:-1] if text else []
    too_long = any(len(s) + 2 > LINE_LIMIT for s in stuffed_lines)
    too_much = bool(size_limit) and len(sent) - len(b".\r\n") > (size_limit or 0)
    if not (too_long or too_much):
        assert outcome is Outcome.COMPLETE
        assert content == text
    else:
        assert outcome in (Outcome.LINE_TOO_LONG, Outcome.TOO_MUCH)
        assert content == b""
        if too_long and not too_much:
            assert outcome is Outcome.LINE_TOO_LONG
        if too_much and not too_long:
            assert outcome is Outcome.TOO_MUCH


def test_an_empty_message_and_a_lone_dot_line_inside() -> None:
    assert read(b".\r\nNOOP\r\n", [], None) == (Outcome.COMPLETE, b"", b"NOOP\r\n")
    stream = b"a\r\n..\r\n.b\r\n.\r\n"
    assert read(stream, [1, 4, 9], None) == (Outcome.COMPLETE, b"a\r\n.\r\nb\r\n", b"")


def test_a_line_far_over_the_limit_is_drained_to_its_end() -> None:
    stream = b"ok\r\n" + b"y" * 50_000 + b"\r\nmore\r\n.\r\nRSET\r\n"
    assert read(stream, [3, 70, 4000], None) == (Outcome.LINE_TOO_LONG, b"", b"RSET\r\n")


def test_the_end_is_found_after_a_bare_lf_dot_line_and_a_run_of_crs() -> None:
    # Lines a search for LF, dot, CRLF meets before the end: none of them is the end.
    text = b"a\n.\r\n" + b"\r" * 3000 + b"\r\n.x\r\n"
    stream = stuff(text) + b"MAIL FROM:<a@b.example>\r\n"
    assert read(stream, [2, 3, 5, 1500], 10_000) == (
        Outcome.LINE_TOO_LONG,
        b"",
        b"MAIL FROM:<a@b.example>\r\n",
    )
    text = b"a\n.\r\n" + b"\r" * 900 + b"\r\n.\r\r\n"
    assert read(stuff(text) + b"QUIT\r\n", [1, 4, 6, 7], None) == (
        Outcome.COMPLETE,
        text,
        b"QUIT\r\n",
    )
