"""A domain to host must be a valid IDNA 2008 name, in one of its two forms exactly.

Threat: `sealgate domain add` and the admin console took an emoji, a joiner out of place,
a label IDNA 2008 refuses or one over 63 octets once converted: a domain that cannot be
published, DKIM-signed or reached under its name, or that two rows then hold as two
domains (its A-label beside its U-label, or a full-width look-alike beside it)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings

from gateway import accounts, db
from gateway.accounts import AccountError
from gateway.addresses import InvalidAddress, normalize_hosted_domain
from gateway.admin import Actor, AdminError
from gateway.admin import domains as admin_domains
from gateway.idn import a_label, u_label
from gateway.runtime import Runtime
from tests.gateway.test_addresses import domains

REFUSED = {
    "\U0001f600.test": "U+1F600",  # an emoji
    "a\u200db.test": "joiner",  # ZWJ where CONTEXTJ does not allow it
    "a\u05d0.test": "direction",  # Latin and Hebrew in one label (the Bidi rule)
    "\u0661a.test": "directionality",
    "a" * 62 + "\u00fc.test": "too long",  # 63 characters, 70 octets as an A-label
    ".".join(["\u00e4bcdefgh"] * 27) + ".test": "over 253 octets",  # 248 characters
    ".".join(["abcdefghi"] * 26) + ".test": "over 253 characters",
    "xn--zz.test": "Invalid A-label",
    "\uff45xample.test": "example.test",  # full-width: IDNA 2008 folds it to another name
    "xn--bcher-kva.stra\u00dfe.test": "b\u00fccher.stra\u00dfe.test",  # both forms mixed
}


@pytest.mark.parametrize(("name", "why"), REFUSED.items())
def test_a_name_idna_2008_refuses_is_refused_with_one_clear_line(name: str, why: str) -> None:
    with pytest.raises(InvalidAddress) as refused:
        normalize_hosted_domain(name)
    message = str(refused.value)
    assert message.startswith("not a valid domain name: ") and "\n" not in message
    assert why.lower() in message.lower()


@settings(max_examples=500)
@given(domains)
def test_an_accepted_name_is_one_form_of_a_publishable_domain(domain: str) -> None:
    try:
        name = normalize_hosted_domain(domain)
    except InvalidAddress as exc:
        assert "\n" not in str(exc)
        return
    ascii_form = a_label(name)
    assert name in (ascii_form, u_label(name))
    assert len(ascii_form) <= 253 and all(len(x) <= 63 for x in ascii_form.split("."))
    assert a_label(u_label(ascii_form)) == ascii_form


def test_domain_add_refuses_them_and_the_other_form_of_a_hosted_domain(
    runtime: Runtime,
) -> None:
    actor = Actor("root@example.test", ip="192.0.2.1")
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "stra\u00dfe.test", actor="test")
        for name in REFUSED:
            with pytest.raises(InvalidAddress):
                accounts.add_domain(session, name, actor="test")
            with pytest.raises(AdminError, match="not a valid domain name"):
                admin_domains.add(session, name, actor=actor)
        with pytest.raises(AccountError, match=re.escape("domain stra\u00dfe.test exists already")):
            accounts.add_domain(session, "XN--STRAE-OQA.test", actor="test")
        accounts.add_domain(session, "strasse.test", actor="test")  # another domain
        names = [d.name for d in accounts.list_domains(session)]
    assert names == ["strasse.test", "stra\u00dfe.test"]
