"""The email policies every message the gateway writes is serialized with.

A header value set on an `EmailMessage` is parsed, and its RFC 2047 encoded words
decoded; the Pythons before 3.11.10 and 3.12.5 (CVE-2024-6923) then fold a CR or LF
decoded from one into a real line break, so a value such as
`=?utf-8?q?hi=0D=0AReply-To:_x@evil.example?=` writes a header field of its own.
Values from outside reach these messages (a reply's subject and references, an
autoresponder's original subject, a secure-page reply), and each builder cleans its
own; these policies check the written form of every header field once more, as the
fixed Pythons do with `verify_generated_headers`: a field that would not end where it
should raises `HeaderInjection` instead of going out. The check is a fold of the
standard policies, so the written bytes of a sound message do not change.
"""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry
from email.policy import EmailPolicy, default


class HeaderInjection(ValueError):
    """A header value would have written a line break into the message's header."""


class _Verified(EmailPolicy):
    """The standard policy, refusing a folded field with a CR or LF that is not a fold.

    Stricter than the fixed Pythons, which let a bare CR through at the end of a
    field: a reader that takes a lone CR for a line end would see the header end
    there, and the fields after it as the body.
    """

    def fold(self, name: str, value: str) -> str:
        folded: str = super().fold(name, value)
        _verify(name, folded.encode("utf-8", "surrogateescape"), self.linesep.encode("ascii"))
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        folded: bytes = super().fold_binary(name, value)
        _verify(name, folded, self.linesep.encode("ascii"))
        return folded


def _verify(name: str, folded: bytes, linesep: bytes) -> None:
    """One field ending in `linesep`, every other line end a fold (followed by a space)."""
    inner = folded.removesuffix(linesep)
    unfolded = inner.replace(linesep + b" ", b"").replace(linesep + b"\t", b"")
    if inner == folded or b"\r" in unfolded or b"\n" in unfolded:
        raise HeaderInjection(f"the {name} header would contain a line break")


# The counterparts of email.policy.default, SMTP and SMTPUTF8.
DEFAULT = _Verified()
SMTP = DEFAULT.clone(linesep="\r\n")
SMTPUTF8 = SMTP.clone(utf8=True)


def no_encoded_words(text: str) -> str:
    """`text` with no `=?` left, so no part of it is read as an encoded word when it is
    set on a message: a value from outside stays the text it was shown as."""
    while "=?" in text:
        text = text.replace("=?", "= ?")
    return text


class _TolerantHeaders(HeaderRegistry):
    """The standard header classes, and something readable where their parser fails.

    Python's structured header parsers raise on some malformed values from outside:
    `Cc: :;:;` (AttributeError: a Group has no local_part), `Message-ID: <[>` and a
    Content-Disposition with an empty RFC 2231 parameter (IndexError), `Message-ID:
    <a@[b>` (AttributeError on a defect). Reading such a field made the webmail, a
    reply or forward of the message, and the secure page answer 500. Here the field is
    parsed again without its parameters (so a Content-Disposition keeps saying
    `attachment`), then empty, and else kept as unstructured text.
    """

    def __call__(self, name: str, value: str) -> BaseHeader:
        for attempt in (value, value.split(";", 1)[0], ""):
            try:
                return super().__call__(name, attempt)
            except Exception:  # noqa: BLE001, S112  (a parser bug on outside data)
                continue
        return self["x-unparsable"](name, value)  # unstructured text


# For reading mail from outside (the webmail, the secure page): email.policy.default,
# but no header field that its parsers fail on raises.
READING = default.clone(header_factory=_TolerantHeaders())
