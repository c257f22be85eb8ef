"""FETCH answers for a folder listing, written from kept bytes instead of pymap's object tree.

A listing (FLAGS, UID, ENVELOPE, sizes, dates of every message of a folder) is what a
mail program asks for most. pymap answers each message with a tree of objects
(`MessageAttributes`, one `FetchValue` per attribute, a `FetchResponse`) formatted
through bytes interpolation and runtime `Protocol` checks: about half a millisecond
a message, several seconds for a folder of 10,000. Here each message's answer is
one bytes line: the envelope as kept in the database (serialized once by pymap
itself, see `backend.envelope_bytes`), the flags rendered by pymap's own `List`
once per distinct flag set, numbers formatted as pymap formats them.

Flags are never kept with the envelope: they are read with the folder's state at
every command, so a flag change shows at once. A message whose envelope is not
kept, or that was expunged meanwhile, gets pymap's own answer; so does any FETCH
asking for more than these attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pymap.bytes import WriteStream
from pymap.fetch import MessageAttributes
from pymap.flags import SessionFlags
from pymap.parsing.primitives import List
from pymap.parsing.response import UntaggedResponse
from pymap.parsing.response.specials import FetchResponse
from pymap.parsing.specials import DateTime, FetchAttribute
from pymap.parsing.specials.flag import Flag
from pymap.selected import SelectedMailbox

from gateway.imap.backend import Message

# Attributes answered from the folder's state and the kept envelopes alone.
KEPT_ATTRIBUTES = frozenset({b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"})
MAX_FLAG_SETS = 4096

_flag_sets: dict[frozenset[Flag], bytes] = {}


def flags_bytes(flags: frozenset[Flag]) -> bytes:
    """The FLAGS value exactly as pymap writes it, rendered once per distinct set."""
    out = _flag_sets.get(flags)
    if out is None:
        out = bytes(List(flags, sort=True))
        if len(_flag_sets) < MAX_FLAG_SETS:  # keywords come from clients: bounded
            _flag_sets[flags] = out
    return out


def answerable(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether a FETCH asks only for what a listing keeps (no section, no partial)."""
    return bool(attributes) and all(
        a.value in KEPT_ATTRIBUTES and a.section is None and a.partial is None for a in attributes
    )


_Value = Callable[[Message, SessionFlags], bytes | None]


def _uid(msg: Message, _flags: SessionFlags) -> bytes:
    return b"%d" % msg.uid


def _flags(msg: Message, session_flags: SessionFlags) -> bytes:
    return flags_bytes(msg.get_flags(session_flags))


def _internal_date(msg: Message, _flags: SessionFlags) -> bytes:
    return bytes(DateTime(msg.internal_date))


def _size(msg: Message, _flags: SessionFlags) -> bytes:
    return b"%d" % msg.size


def _envelope(msg: Message, _flags: SessionFlags) -> bytes | None:
    return msg.kept_envelope


_VALUES: dict[bytes, _Value] = {
    b"UID": _uid,
    b"FLAGS": _flags,
    b"INTERNALDATE": _internal_date,
    b"RFC822.SIZE": _size,
    b"ENVELOPE": _envelope,
}


class KeptFetchResponse(UntaggedResponse):
    """One message's FETCH answer, already written out: `write` is one bytes copy.

    Unlike pymap's `FetchResponse` it does not merge with a flag update for the same
    message that the command's end may add: the update follows as a FETCH of its own,
    which IMAP allows (RFC 3501 7.4.2) and clients apply in order.
    """

    def __init__(self, seq: int, line: bytes) -> None:
        super().__init__()
        self.seq = seq
        self._line = line

    @property
    def text(self) -> bytes:
        return b"%d FETCH" % self.seq

    def write(self, writer: WriteStream) -> None:
        writer.write(self._line)

    async def async_write(self, writer: WriteStream) -> None:
        writer.write(self._line)


def responses(
    messages: Iterable[tuple[int, Message]],
    selected: SelectedMailbox,
    attributes: Sequence[FetchAttribute],
) -> tuple[list[UntaggedResponse], bool]:
    """The FETCH answers of `messages`, and whether one of them was expunged.

    `attributes` must be `answerable`; messages without kept values get pymap's answer.
    """
    session_flags = selected.session_flags
    wanted = [(bytes(attr.for_response) + b" ", _VALUES[attr.value]) for attr in attributes]
    out: list[UntaggedResponse] = []
    expunged = False
    for seq, msg in messages:
        if msg.expunged:
            expunged = True
        parts: list[bytes] = []
        for prefix, value_of in wanted:
            value = None if msg.expunged else value_of(msg, session_flags)
            if value is None:
                out.append(_pymap_answer(seq, msg, selected, attributes))
                break
            parts.append(prefix + value)
        else:
            line = b"* %d FETCH (%b)\r\n" % (seq, b" ".join(parts))
            out.append(KeptFetchResponse(seq, line))
    return out, expunged


def _pymap_answer(
    seq: int, msg: Message, selected: SelectedMailbox, attributes: Sequence[FetchAttribute]
) -> UntaggedResponse:
    attrs = MessageAttributes(msg, selected, attributes)
    hook: Any = attrs.load_hook()
    return FetchResponse(seq, attrs, writing_hook=hook)
