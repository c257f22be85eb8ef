"""LIST patterns (`gateway.imap.patterns`) match what pymap's regular expressions
matched, in time linear in the name: a pattern of many wildcards cannot hold the
event loop (the threat: tests/gateway/imap/test_hostile_clients.py)."""

from __future__ import annotations

import dataclasses

from hypothesis import example, given
from hypothesis import strategies as st
from pymap.listtree import ListTree

from gateway.imap.patterns import MAX_LITERALS, FolderTree, compile_pattern, matches

# Few characters, so that names and patterns meet often; "/" is the delimiter.
CHARS = st.sampled_from("ab/.&*%")
NAME_CHARS = st.sampled_from("ab/.&")


def reference(pattern: str, name: str) -> bool:
    """pymap's own answer (its regular expression), for short inputs only."""
    regex, _ = ListTree("/")._get_pattern(pattern)
    return regex.match(name) is not None


@given(pattern=st.text(CHARS, max_size=10), name=st.text(NAME_CHARS, max_size=12))
@example(pattern="*a*a*b", name="aaab")
@example(pattern="%", name="a/b")
@example(pattern="a%*%b", name="a/b")
@example(pattern="", name="")
@example(pattern="%%", name="")
def test_a_pattern_matches_what_pymap_matched(pattern: str, name: str) -> None:
    assert matches(compile_pattern(pattern, "/"), name) == reference(pattern, name)


@given(
    text=st.text(NAME_CHARS, max_size=6),
    wildcard=st.sampled_from(["", "*", "%", "%%", "*%", "%*"]),
    prefixed=st.booleans(),
    rest=st.text(NAME_CHARS, max_size=8),
)
@example(text="a", wildcard="%", prefixed=True, rest="/b")
@example(text="a/", wildcard="%", prefixed=True, rest="")
def test_the_common_shapes_are_matched_by_comparing_strings_with_the_same_answer(
    text: str, wildcard: str, prefixed: bool, rest: str
) -> None:
    """`*`, a name, a name and then `*` or `%`: what mail programs send, compared as
    strings (`Pattern.simple`) rather than walked, with the walk's and pymap's answer."""
    pattern = compile_pattern(text + wildcard, "/")
    assert pattern.simple is not None
    name = (text if prefixed else "") + rest
    walked = matches(dataclasses.replace(pattern, simple=None), name)
    assert matches(pattern, name) == walked == reference(text + wildcard, name)


@given(names=st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), max_size=6))
def test_inbox_matches_in_any_case_and_other_names_in_theirs(names: list[str]) -> None:
    tree = FolderTree("/").update("INBOX", *names)
    assert [e.name for e in tree.list_matching("", "inb%")] == ["INBOX"]
    assert list(tree.list_matching("", "*")) == list(ListTree("/").update("INBOX", *names).list())


def test_a_pattern_of_more_characters_than_any_name_matches_nothing() -> None:
    name = "a" * (MAX_LITERALS + 1)
    assert not matches(compile_pattern(name, "/"), name)
    assert matches(compile_pattern("*" * 100_000 + "a" * MAX_LITERALS, "/"), "a" * MAX_LITERALS)
