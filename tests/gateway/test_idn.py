"""gateway.idn: A-label and U-label under IDNA 2008 with the UTS #46 mapping
(non-transitional), the form mail and DNS use; not Python's IDNA 2003 codec."""

from __future__ import annotations

import pytest

from gateway.idn import InvalidDomainName, a_label, u_label


@pytest.mark.parametrize(
    ("given", "ascii_form", "unicode_form"),
    [
        ("straße.test", "xn--strae-oqa.test", "straße.test"),
        ("xn--strae-oqa.test", "xn--strae-oqa.test", "straße.test"),
        ("BÜCHER.test.", "xn--bcher-kva.test", "bücher.test"),
        ("XN--BCHER-KVA.Test", "xn--bcher-kva.test", "bücher.test"),
        ("strasse.test", "strasse.test", "strasse.test"),
        # Labels that are no IDN (underscored DNS names) are kept as they are.
        ("_dmarc.bücher.test", "_dmarc.xn--bcher-kva.test", "_dmarc.bücher.test"),
        (
            "rsa1._domainkey.example.test",
            "rsa1._domainkey.example.test",
            "rsa1._domainkey.example.test",
        ),
    ],
)
def test_both_forms(given: str, ascii_form: str, unicode_form: str) -> None:
    assert a_label(given) == ascii_form
    assert u_label(given) == unicode_form


def test_sharp_s_is_not_ss() -> None:
    """IDNA 2003 mapped ß onto ss; under IDNA 2008 they are two domains."""
    assert a_label("straße.test") != a_label("strasse.test")
    assert u_label("xn--strae-oqa.test") != "strasse.test"


@pytest.mark.parametrize(
    "given",
    [
        "xn--zz.test",
        "a..test",
        "",
        ".",
        "a" * 64 + ".test",
        "x." * 130 + "test",
        "bad\u200d.test",
        "\u0308x.test",
    ],
)
def test_a_name_that_is_not_valid_idna_2008_is_refused(given: str) -> None:
    with pytest.raises(InvalidDomainName):
        a_label(given)
    with pytest.raises(ValueError):
        u_label(given)
