"""LIST and LSUB patterns (RFC 9051 §6.3.9) matched in time linear in the folder name.

pymap turns a pattern into a regular expression with one lazy `.*?` per wildcard, and
Python's backtracking engine then takes time exponential in the number of wildcards:
`LIST "" "*a*a*a*a*a*a*b"` against one folder named with 200 a's held the event loop,
and with it every listener of serve, for hours. Here the pattern runs as the set of
its positions reached so far, all advanced together by each character of the name
(Thompson's construction), the set kept in the bits of one integer: a name costs a few
integer operations per character, whatever the pattern.

`*` matches any characters, `%` any but the hierarchy delimiter, as in pymap; a run of
wildcards is one wildcard (`*` if it holds one). A pattern with more characters that
are no wildcard than `MAX_LITERALS` matches nothing: no folder name is that long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pymap.listtree import ListEntry, ListTree

from gateway.imap.folders import INBOX

STAR, PERCENT = "*", "%"
# Far beyond any folder name (gateway.imap.folders.MAX_NAME_LENGTH): bounds the work
# of a pattern sent as a literal of megabytes.
MAX_LITERALS = 1000
_WILDCARD_RUN = re.compile(r"[*%]{2,}")


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern: for each position, what the name's next character must be."""

    length: int  # positions; reaching position `length` is a match
    literals: dict[str, int]  # character -> bits of the positions that want it
    stars: int  # bits of the positions holding `*`
    percents: int  # bits of the positions holding `%`
    delimiter: str
    minimum: int  # characters a matching name has at least
    impossible: bool = False


def _collapse(pattern: str) -> str:
    return _WILDCARD_RUN.sub(lambda run: STAR if STAR in run.group() else PERCENT, pattern)


def compile_pattern(pattern: str, delimiter: str) -> Pattern:
    """`pattern` ready for `matches`."""
    literal_count = len(pattern) - pattern.count(STAR) - pattern.count(PERCENT)
    if literal_count > MAX_LITERALS:
        return Pattern(0, {}, 0, 0, delimiter, literal_count, impossible=True)
    tokens = _collapse(pattern)
    literals: dict[str, int] = {}
    stars = percents = 0
    for position, char in enumerate(tokens):
        bit = 1 << position
        if char == STAR:
            stars |= bit
        elif char == PERCENT:
            percents |= bit
        else:
            literals[char] = literals.get(char, 0) | bit
    return Pattern(len(tokens), literals, stars, percents, delimiter, literal_count)


def matches(pattern: Pattern, name: str) -> bool:
    """Whether `name` is matched by `pattern`, in one pass over the name."""
    if pattern.impossible or len(name) < pattern.minimum:
        return False
    wildcards = pattern.stars | pattern.percents
    # Bit i: the first i tokens match what was read. A wildcard may match nothing, so
    # reaching it reaches the next position too (runs were collapsed: one step does).
    reached = 1 | (1 & wildcards) << 1
    for char in name:
        stay = pattern.stars if char == pattern.delimiter else wildcards
        reached = ((reached & pattern.literals.get(char, 0)) << 1) | (reached & stay)
        reached |= (reached & wildcards) << 1
        if not reached:
            return False
    return bool(reached >> pattern.length & 1)


class FolderTree(ListTree):
    """pymap's folder tree, with LIST patterns matched by `matches`."""

    __slots__ = ()

    def list_matching(self, ref_name: str, filter_: str) -> Iterable[ListEntry]:
        wanted = ref_name + filter_
        pattern = compile_pattern(wanted, self._delimiter)
        for entry in self.list():
            if entry.name == INBOX:
                # INBOX is INBOX in any case (RFC 9051 §5.1).
                if matches(compile_pattern(wanted.upper(), self._delimiter), INBOX):
                    yield entry
            elif matches(pattern, entry.name):
                yield entry
