"""gateway.addresses: an address is one address under both IDNA forms of its domain
(A-label and U-label), and never under the form of another domain."""

from __future__ import annotations

import contextlib
import unicodedata

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.addresses import other_domain, other_form, owned_form

# Letters IDNA 2003 maps, drops or folds (ß→ss, final sigma, soft hyphen, joiners,
# full-width, ligatures, dotted I, combining marks, ideographic full stop) among plain
# ones, so look-alikes of one domain are generated as often as its true forms.
TRICKY = [*"abcsz09-üßςσéöıİÜ日本", "\u00ad", "\u200d", "\u200c", "\u0308", *"ｅﬁⅣ。Ａ"]
labels = st.text(st.sampled_from(TRICKY), min_size=1, max_size=10) | st.text(
    st.characters(codec="utf-8", exclude_characters=".@"), min_size=1, max_size=10
)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "test"]))


def seen(domain: str) -> str:
    """What a reader is shown for `domain`: each `xn--` label's Punycode decoded as it is
    (no IDNA mapping), everything else code point for code point."""
    shown = []
    for label in domain.lower().split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label[4:].encode("ascii").decode("punycode")
        shown.append(label)
    return ".".join(shown)


def canonical(domain: str) -> str:
    """The A-label when `domain` has an exact one, else the domain itself."""
    domain = domain.lower()
    return domain if domain.isascii() else other_domain(domain) or domain


def variants(domain: str) -> list[str]:
    """`domain` and what a sender or the IDNA codec may make of it."""
    found = [domain, domain.upper(), unicodedata.normalize("NFKC", domain),
             unicodedata.normalize("NFD", domain)]  # fmt: skip
    try:
        a_label = domain.encode("idna").decode("ascii")
        found += [a_label, a_label.upper(), a_label.encode("ascii").decode("idna")]
    except UnicodeError:
        pass
    return found


@settings(max_examples=500)
@given(domains)
def test_both_forms_of_a_domain_the_codec_accepts_map_to_one(domain: str) -> None:
    try:
        a_label = domain.encode("idna").decode("ascii")
        u_label = a_label.encode("ascii").decode("idna")
    except UnicodeError:
        assume(False)
        return
    assert canonical(u_label) == canonical(a_label) == a_label.lower()
    address, other = f"anna@{u_label.lower()}", f"anna@{a_label.lower()}"
    assert owned_form(address, {other}) == other
    assert owned_form(other, {address}) == address
    if u_label.lower() != a_label.lower():
        assert other_form(other) == address and other_form(address) == other


@settings(max_examples=500)
@given(domains.flatmap(lambda d: st.tuples(st.just(d), st.sampled_from(variants(d)))))
def test_two_different_domains_never_map_to_one(pair: tuple[str, str]) -> None:
    one, two = (d.lower() for d in pair)
    if canonical(one) == canonical(two):
        assert seen(one) == seen(two), pair
    if owned_form(f"anna@{one}", {f"anna@{two}"}) is not None:
        assert seen(one) == seen(two), pair


def test_the_look_alikes_idna_2003_maps_together_stay_apart() -> None:
    assert other_domain("bücher.test") == "xn--bcher-kva.test"
    assert other_domain("XN--BCHER-KVA.test") == "bücher.test"
    for name in ("straße.test", "ex\u00adample.test", "ｅｘａｍｐｌｅ.test", "bu\u0308cher.test",
                 "example.test", "xn--strae-oqa.test", "xn--zz.test"):  # fmt: skip
        assert other_domain(name) is None, name
