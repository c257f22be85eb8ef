"""The one header/body split: where the headers end for every shape, and clear fields rebuilt
from parsed values (never a raw line), as Python's MIME parser and Postfix's cleanup see it."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import compat32

import pytest

from gateway import rawheaders

SHAPES = {
    # shape: (message, header names, body)
    "empty line": (b"Subject: a\r\nTo: b\r\n\r\nbody\r\n", ["Subject", "To"], b"body\r\n"),
    "bare LF": (b"Subject: a\nTo: b\n\nbody\n", ["Subject", "To"], b"body\n"),
    "bare LF after CRLF headers": (
        b"Subject: a\r\n\nbody\r\n\r\nmore\r\n",
        ["Subject"],
        b"body\r\n\r\nmore\r\n",
    ),
    "first line no field": (b"Hello there\r\nSubject: a\r\n\r\nx\r\n", [], None),
    "no empty line": (
        b"Subject: a\r\nThe body, at once\r\n",
        ["Subject"],
        b"The body, at once\r\n",
    ),
    "whitespace-only line": (
        b"Subject: a\r\n \r\nbody line\r\n",
        ["Subject"],
        b"body line\r\n",
    ),
    "CR CR LF": (b"Subject: a\r\n\r\r\nbody\r\n", ["Subject"], b"\r\r\nbody\r\n"),
    "space before colon": (b"Subject : a\r\n\r\nbody\r\n", [], None),
    "mbox From line": (b"From alice Mon\r\nSubject: a\r\n\r\nx\r\n", [], None),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_where_the_headers_end(shape: str) -> None:
    raw, names, body = SHAPES[shape]
    assert [f.name for f in rawheaders.headers(raw)] == names
    block, sep, rest = rawheaders.split_message(raw)
    assert block + sep + rest == raw
    assert rest == (raw if body is None else body)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s not in ("CR CR LF", "mbox From line")])
def test_python_mime_parser_agrees(shape: str) -> None:
    """Python's parser finds the same fields. Two differences, both keeping more inside the
    encryption here: it reads a bare CR as a line end (Postfix does not), and it skips an
    mbox `From ` line to read fields after it (here that line is body, and so all after)."""
    raw, names, _body = SHAPES[shape]
    parsed = BytesParser(policy=compat32).parsebytes(raw)
    assert [n for n in parsed.keys() if n] == names  # noqa: SIM118  (Message has no __iter__ of names)


def test_canonical_field_has_no_bare_cr_and_no_blank_line() -> None:
    field = rawheaders.RawHeader("Subject", b"Subject: one\r\n \r\n two\rthree\r\n")
    assert field.canonical() == b"Subject: one  two three\r\n"


def test_long_values_fold_at_whitespace() -> None:
    value = b" ".join(b"<id%d@example.test>" % i for i in range(40))
    folded = rawheaders.fold(b"References", value)
    lines = folded.split(b"\r\n")[:-1]
    assert all(len(line) <= rawheaders.FOLD_AT for line in lines)
    assert all(line[:1] == b" " and line.strip() for line in lines[1:])
    assert b"".join(line.strip() + b" " for line in lines).strip() == b"References: " + value


def test_lenient_headers_also_take_obsolete_syntax_fields() -> None:
    """`From : x` ends our header section (as Python's parser reads it) but a lenient
    reader such as Postfix takes it as a field: the From check must see it."""
    raw = (
        b"Subject: a\r\nfRoM : ceo@example.org\r\n  (folded)\r\nTo: b@example.test\r\n\r\nbody\r\n"
    )
    assert [f.name for f in rawheaders.headers(raw)] == ["Subject"]
    lenient = rawheaders.lenient_headers(raw)
    assert [f.name for f in lenient] == ["Subject", "fRoM", "To"]
    assert lenient[1].value == "ceo@example.org  (folded)"
    plain = b"Subject: a\r\n\r\nFrom : not a field here\r\n"
    assert [f.name for f in rawheaders.lenient_headers(plain)] == ["Subject"]


def test_a_split_is_kept_until_forgotten_and_an_edited_block_is_split_anew() -> None:
    rawheaders.forget_cached()
    block = b"Subject: one\r\nTo: a@example.test\r\n"
    first = list(rawheaders.iter_headers(block))
    assert rawheaders.cached_blocks() == 1
    assert list(rawheaders.iter_headers(block)) == first  # the kept split, same fields
    edited = block.replace(b"one", b"two")
    assert [h.value for h in rawheaders.iter_headers(edited)] == ["two", "a@example.test"]
    assert rawheaders.cached_blocks() == 2
    rawheaders.forget_cached()
    assert rawheaders.cached_blocks() == 0
    assert list(rawheaders.iter_headers(block)) == first


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("C:\\u12 =?utf-8?q?caf=C3=A9?=", "C:\\u12 café"),  # once a UnicodeDecodeError
        ("Invoice \\u202efdp.exe =?utf-8?q?x?=", "Invoice \\u202efdp.exe x"),  # not an RLO
        ("=?utf-8?q?a\\b?= c\\d", "a\\b c\\d"),
        ("=?idna?q?abc?= =?undefined?q?def?=", "abcdef"),  # once a UnicodeError
    ],
)
def test_backslashes_and_odd_charsets_in_encoded_headers(value: str, shown: str) -> None:
    assert rawheaders.decode_words(value) == shown
