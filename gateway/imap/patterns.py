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

The patterns mail programs send are nearly all of four shapes: `*`, a name, or a
name followed by `*` or `%`. Those are answered by string comparison (`Pattern.simple`),
not a step per character: at the folder limit, with names of 200 characters, the
steps were most of a LIST's time on the event loop.
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
    # (text, wildcard) when the pattern is `text` and then at most one wildcard ("" if
    # none): matched by comparing strings (`matches`).
    simple: tuple[str, str] | None = None


def _collapse(pattern: str) -> str:
    return _WILDCARD_RUN.sub(lambda run: STAR if STAR in run.group() else PERCENT, pattern)


def compile_pattern(pattern: str, delimiter: str) -> Pattern:
    """`pattern` ready for `matches`."""
    literal_count = len(pattern) - pattern.count(STAR) - pattern.count(PERCENT)
    if literal_count > MAX_LITERALS:
        return Pattern(0, {}, 0, 0, delimiter, literal_count, impossible=True)
    tokens = _collapse(pattern)
    text, last = (tokens[:-1], tokens[-1]) if tokens[-1:] in (STAR, PERCENT) else (tokens, "")
    simple = (text, last) if STAR not in text and PERCENT not in text else None
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
    return Pattern(len(tokens), literals, stars, percents, delimiter, literal_count, simple=simple)


def matches(pattern: Pattern, name: str) -> bool:
    """Whether `name` is matched by `pattern`, in one pass over the name."""
    if pattern.impossible or len(name) < pattern.minimum:
        return False
    if pattern.simple is not None:
        text, wildcard = pattern.simple
        if not wildcard:
            return name == text
        if not name.startswith(text):
            return False
        return wildcard == STAR or pattern.delimiter not in name[len(text) :]
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
    """pymap's folder tree, with LIST patterns matched by `matches`, and walked without
    pymap's generator per level (a name three levels deep passed through three)."""

    __slots__ = ()

    def list(self) -> Iterable[ListEntry]:
        """pymap's `ListTree.list`: each node, then its children in the order added."""
        delimiter, marked = self._delimiter, self._marked
        stack = [(child, child.name) for child in reversed(self._root.children.values())]
        while stack:
            node, name = stack.pop()
            yield ListEntry(name, node.exists, marked.get(name), bool(node.children))
            stack.extend(
                (child, name + delimiter + child.name if name else child.name)
                for child in reversed(node.children.values())
            )

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
