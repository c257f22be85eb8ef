"""gateway.addresses: an address is one address under both IDNA forms of its domain
(A-label and U-label), and never under the form of another domain."""

from __future__ import annotations

import contextlib
import unicodedata

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.addresses import one_form, other_domain, other_form, owned_form
from gateway.idn import InvalidDomainName, a_label, u_label

# Letters IDNA 2003 or UTS #46 maps, drops or folds (ß→ss, final sigma, soft hyphen, joiners,
# full-width, ligatures, dotted I, combining marks, ideographic full stop) among plain
# ones, so look-alikes of one domain are generated as often as its true forms.
TRICKY = [*"abcsz09-üßςσéöıİÜ日本", "\u00ad", "\u200d", "\u200c", "\u0308", *"ｅﬁⅣ。Ａ"]
labels = st.text(st.sampled_from(TRICKY), min_size=1, max_size=10) | st.text(
    st.characters(codec="utf-8", exclude_characters=".@"), min_size=1, max_size=10
)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "test"]))
# Letters IDNA 2008 takes as they are (ß and final sigma among them), so nearly every
# name drawn is valid: the properties of valid names are not starved by `assume`.
VALID = [*"abcsz09üßςσéöı日本"]
valid_domains = st.lists(
    st.text(st.sampled_from(VALID), min_size=1, max_size=10), min_size=1, max_size=3
).map(lambda ls: ".".join([*ls, "test"]))


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
    """`domain` and what a sender, IDNA 2003 or IDNA 2008 may make of it."""
    found = [domain, domain.upper(), unicodedata.normalize("NFKC", domain),
             unicodedata.normalize("NFD", domain)]  # fmt: skip
    with contextlib.suppress(UnicodeError):  # Python's codec: IDNA 2003 (ß -> ss)
        old = domain.encode("idna").decode("ascii")
        found += [old, old.upper(), old.encode("ascii").decode("idna")]
    with contextlib.suppress(InvalidDomainName):
        ascii_form = a_label(domain)
        found += [ascii_form, ascii_form.upper(), u_label(ascii_form), u_label(domain)]
    return found


@settings(max_examples=500)
@given(valid_domains | domains)
def test_both_forms_of_a_valid_idna_2008_domain_map_to_one(domain: str) -> None:
    try:
        ascii_form = a_label(domain)
        unicode_form = u_label(ascii_form)
    except InvalidDomainName:
        assume(False)
        return
    assert a_label(unicode_form) == ascii_form and u_label(domain) == unicode_form
    assert canonical(unicode_form) == canonical(ascii_form) == ascii_form
    address, other = f"anna@{unicode_form}", f"anna@{ascii_form}"
    assert owned_form(address, {other}) == other
    assert owned_form(other, {address}) == address
    if unicode_form != ascii_form:
        assert other_form(other) == address and other_form(address) == other


@settings(max_examples=500)
@given(domains.flatmap(lambda d: st.tuples(st.just(d), st.sampled_from(variants(d)))))
def test_two_different_domains_never_map_to_one(pair: tuple[str, str]) -> None:
    one, two = (d.lower() for d in pair)
    if canonical(one) == canonical(two):
        assert seen(one) == seen(two), pair
    if owned_form(f"anna@{one}", {f"anna@{two}"}) is not None:
        assert seen(one) == seen(two), pair
    # What lockout counts by: one key for both forms of one name, and only for those.
    if one_form(f"anna@{one}") == one_form(f"anna@{two}"):
        assert seen(one) == seen(two), pair


@settings(max_examples=500)
@given(valid_domains | domains)
def test_one_form_is_the_same_for_both_forms_of_a_name(domain: str) -> None:
    try:
        ascii_form = a_label(domain)
        unicode_form = u_label(ascii_form)
    except InvalidDomainName:
        assume(False)
        return
    key = one_form(f"Anna@{ascii_form.upper()}")
    assert key == one_form(f"anna@{unicode_form}") == f"anna@{ascii_form}"


def test_the_look_alikes_idna_maps_together_stay_apart() -> None:
    assert other_domain("bücher.test") == "xn--bcher-kva.test"
    assert other_domain("XN--BCHER-KVA.test") == "bücher.test"
    for name in ("ex\u00adample.test", "ｅｘａｍｐｌｅ.test", "bu\u0308cher.test",
                 "example.test", "strasse.test", "xn--zz.test"):  # fmt: skip
        assert other_domain(name) is None, name


def test_sharp_s_is_one_domain_under_both_forms_and_not_ss() -> None:
    """IDNA 2008: straße.test is xn--strae-oqa.test; strasse.test (IDNA 2003's mapping)
    is someone else's domain and its owner's addresses are not hers."""
    assert other_domain("straße.test") == "xn--strae-oqa.test"
    assert other_domain("xn--strae-oqa.test") == "straße.test"
    assert owned_form("anna@xn--strae-oqa.test", {"anna@straße.test"}) == "anna@straße.test"
    assert owned_form("anna@straße.test", {"anna@xn--strae-oqa.test"}) == "anna@xn--strae-oqa.test"
    assert owned_form("anna@straße.test", {"anna@strasse.test"}) is None
    assert owned_form("anna@strasse.test", {"anna@straße.test"}) is None
    assert owned_form("anna@strasse.test", {"anna@xn--strae-oqa.test"}) is None
    assert owned_form("anna@xn--strae-oqa.test", {"anna@strasse.test"}) is None


def test_an_over_long_value_is_cut_short_in_the_error() -> None:
    """A 5000-character argument came back whole in "not a valid mail address: ...",
    filling the admin's terminal (and any log of the command) with it."""
    import pytest

    from gateway.addresses import InvalidAddress, normalize_address

    with pytest.raises(InvalidAddress) as caught:
        normalize_address("a" * 5000 + "@example.org")
    assert len(str(caught.value)) < 400
    assert "(5012 characters)" in str(caught.value)
