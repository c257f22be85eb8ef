"""The policies every built message is written with: no header value writes a field of its own.

Python 3.11.7 folds a CR or LF decoded from an encoded word into a real line break
(CVE-2024-6923); these policies refuse such a field instead. For any other value the
written bytes are those of the standard policies.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import mimepolicy

FIELDS = ["Subject", "In-Reply-To", "References", "X-Note"]
BREAKS = ["\r\n", "\n", "\r", "\r\n ", "\n\t"]


def encoded_word(text: str, how: str) -> str:
    """`text` as an RFC 2047 encoded word, the way a hostile sender writes one."""
    raw = text.encode()
    if how == "q":
        return "=?utf-8?q?" + "".join(f"={b:02X}" for b in raw) + "?="
    import base64

    return "=?utf-8?b?" + base64.b64encode(raw).decode() + "?="


values = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda before, brk, field, how: encoded_word(f"{before}{brk}{field}: yes", how),
        st.text(max_size=30),
        st.sampled_from(BREAKS),
        st.sampled_from(["Reply-To", "Bcc", "X-Sealgate-Password", "Content-Type"]),
        st.sampled_from(["q", "b"]),
    ),
)


def built(name: str, value: str, policy: email.policy.EmailPolicy) -> EmailMessage:
    message = EmailMessage(policy=policy)
    message["From"] = "alice@example.test"
    message[name] = value
    message.set_content("hello\n")
    return message


@given(name=st.sampled_from(FIELDS), value=values)
def test_a_value_never_writes_a_field_of_its_own(name: str, value: str) -> None:
    try:
        message = built(name, value, mimepolicy.DEFAULT)
    except ValueError:
        return  # the header parser refused the value itself (NUL, CR in a raw value)
    try:
        written = message.as_bytes(policy=mimepolicy.SMTP)
    except mimepolicy.HeaderInjection:
        return
    header = written.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].lower()
        for line in header.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]
    expected = [b"from", name.lower().encode(), b"content-type", b"content-transfer-encoding"]
    assert names == [*expected, b"mime-version"] or sorted(names) == sorted(
        [*expected, b"mime-version"]
    ), header
    assert b"\r" not in header.replace(b"\r\n", b"") and b"\n" not in header.replace(b"\r\n", b"")
    # Where it writes at all, it writes what the standard policy writes.
    standard = built(name, value, email.policy.default).as_bytes(policy=email.policy.SMTP)
    assert written == standard


@pytest.mark.parametrize("brk", BREAKS[:3])
def test_the_encoded_line_break_of_cve_2024_6923_is_refused(brk: str) -> None:
    message = built(
        "Subject", encoded_word(f"hi{brk}Reply-To: m@evil.example", "q"), mimepolicy.DEFAULT
    )
    with pytest.raises(mimepolicy.HeaderInjection, match="Subject"):
        message.as_bytes(policy=mimepolicy.SMTP)
    with pytest.raises(mimepolicy.HeaderInjection):
        message.as_string(policy=mimepolicy.DEFAULT)


@given(st.text(max_size=100))
def test_no_encoded_words_leaves_no_opener_and_changes_nothing_else(text: str) -> None:
    cleaned = mimepolicy.no_encoded_words(text)
    assert "=?" not in cleaned
    assert cleaned.replace(" ", "") == text.replace(" ", "")  # only spaces were added
    if "=?" not in text:
        assert cleaned == text
