"""Every message the portal shows has a German and a French entry, with the same
`{fields}` as the English id; the catalogs hold nothing no page uses."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import jinja2
import pytest
from jinja2.ext import extract_from_ast

import webportal
from webportal import templates_dir
from webportal.i18n import CATALOGS, normalize_language, translate

GETTEXT_NAMES = ("_", "gettext", "gettext_noop", "noop")


def template_messages() -> set[str]:
    env = jinja2.Environment(autoescape=True)
    found: set[str] = set()
    for path in (templates_dir() / "portal").rglob("*.html"):
        tree = env.parse(path.read_text(encoding="utf-8"))
        for _line, _func, strings in extract_from_ast(
            tree, gettext_functions=GETTEXT_NAMES, babel_style=False
        ):
            # Non-babel style: a tuple of the literal arguments (the id comes first).
            found.update(strings[:1] if isinstance(strings, tuple) else [strings])
    return found


def python_messages() -> set[str]:
    found: set[str] = set()
    for path in Path(webportal.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in GETTEXT_NAMES
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_messages_are_found_in_templates_and_code() -> None:
    assert "Sign in" in template_messages()
    assert "Email or password is wrong." in python_messages()
    assert "Form expired" in python_messages()


@pytest.mark.parametrize("language", ["de", "fr"])
def test_every_message_is_translated(language: str) -> None:
    used = template_messages() | python_messages()
    catalog = CATALOGS[language]
    assert sorted(used - set(catalog)) == []
    assert sorted(set(catalog) - used) == []  # stale entries
    for message, translated in catalog.items():
        assert fields(translated) == fields(message), message


def test_translate_falls_back_to_english_and_fills_fields() -> None:
    assert translate("de", "Page {page} of {pages}", page=2, pages=5) == "Seite 2 von 5"
    assert translate("en", "Page {page} of {pages}", page=2, pages=5) == "Page 2 of 5"
    assert translate("it", "Sign in") == "Sign in"
    assert translate("fr", "not in any catalog") == "not in any catalog"
    # A field's value is inserted as it is, never parsed as a format string.
    assert translate("en", "Signed in as {email}", email="{0.__class__}") == (
        "Signed in as {0.__class__}"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("de", "de"), ("de-CH", "de"), ("FR_ca", "fr"), ("en-GB", "en"), ("it", None), ("", None)],
)
def test_normalize_language(value: str, expected: str | None) -> None:
    assert normalize_language(value) == expected
