"""Read and edit a message's header block as bytes, leaving everything else untouched.

Unencrypted mail must leave byte for byte as it came (DKIM signatures cover the
body and chosen headers), so control headers are removed by cutting their lines
out of the raw header block rather than by re-serialising a parsed message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header


@dataclass(frozen=True)
class RawHeader:
    name: str
    raw: bytes  # the whole field, folded lines and final line ending included

    @property
    def value(self) -> str:
        """Unfolded, with RFC 2047 encoded words decoded."""
        text = self.raw.decode("utf-8", "surrogateescape")
        value = text.split(":", 1)[1] if ":" in text else ""
        value = value.replace("\r\n", "").replace("\n", "").strip()
        try:
            return str(make_header(decode_header(value)))
        except (ValueError, LookupError, UnicodeDecodeError):
            return value


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body); the separator is the empty line ending the headers."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(sep)
        if index != -1:
            return raw[: index + len(sep) // 2], sep[len(sep) // 2 :], raw[index + len(sep) :]
    return raw, b"", b""


def iter_headers(header_block: bytes) -> Iterator[RawHeader]:
    current: list[bytes] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            yield _field(current)
        current = [line]
    if current:
        yield _field(current)


def _field(lines: list[bytes]) -> RawHeader:
    raw = b"".join(lines)
    name = raw.split(b":", 1)[0].decode("ascii", "replace").strip()
    return RawHeader(name=name, raw=raw)


def headers(raw: bytes) -> list[RawHeader]:
    return list(iter_headers(split_message(raw)[0]))


def get(raw: bytes, name: str) -> str | None:
    """The first header called `name` (case-insensitive), decoded; None when absent."""
    lowered = name.lower()
    for field in iter_headers(split_message(raw)[0]):
        if field.name.lower() == lowered:
            return field.value
    return None


def edit(
    raw: bytes,
    *,
    drop: Callable[[str], bool] = lambda _name: False,
    replace: dict[str, bytes] | None = None,
) -> bytes:
    """Drop fields whose name matches `drop`; swap whole fields named in `replace`.

    `replace` maps a lower-cased name to the new complete field (with line ending).
    Nothing else changes, byte for byte.
    """
    replace = replace or {}
    block, sep, body = split_message(raw)
    kept: list[bytes] = []
    changed = False
    for field in iter_headers(block):
        key = field.name.lower()
        if drop(field.name):
            changed = True
            continue
        if key in replace:
            kept.append(replace[key])
            changed = True
            continue
        kept.append(field.raw)
    if not changed:
        return raw
    return b"".join(kept) + sep + body
