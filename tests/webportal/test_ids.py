"""`webportal.ids`: one spelling per id (ASCII digits), bounded by what a column holds."""

from __future__ import annotations

import pytest
from flask import Flask, url_for
from werkzeug.exceptions import BadRequest, NotFound

from webportal import ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("007", 7),
        (str(ids.MAX_ID), ids.MAX_ID),
        (str(ids.MAX_ID + 1), None),
        ("0", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1_000", None),
        ("\u0661", None),  # int() reads Arabic-Indic digits
        ("\u00b9", None),  # isdigit() is true for a superscript one, int() fails
        ("9" * 5000, None),  # refused before int() (Python limits str-to-int digits)
        ("", None),
        (None, None),
    ],
)
def test_parse_id(text: str | None, expected: int | None) -> None:
    assert ids.parse_id(text) == expected


def test_query_and_form_ids_answer_404_and_400() -> None:
    app = Flask(__name__)
    with app.test_request_context("/?reply=5&forward=x&empty="):
        assert ids.query_id("reply") == 5
        assert ids.query_id("empty") is None
        assert ids.query_id("absent") is None
        with pytest.raises(NotFound):
            ids.query_id("forward")
    with app.test_request_context("/", method="POST", data={"a": "12", "b": str(2**64)}):
        assert ids.form_id("a") == 12
        with pytest.raises(BadRequest):
            ids.form_id("b")


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("", 1),
        ("page=3", 3),
        ("page=0", 1),
        ("page=-2", 1),
        ("page=x", 1),
        ("page=" + "9" * 40, ids.MAX_PAGE),
    ],
)
def test_page_numbers_are_clamped(query: str, page: int) -> None:
    with Flask(__name__).test_request_context("/?" + query):
        assert ids.page_number() == page


def test_converters_match_only_bounded_ascii_ids() -> None:
    app = Flask(__name__)
    ids.init_app(app)
    app.add_url_rule("/m/<id:item>", "m", lambda item: str(item))
    app.add_url_rule("/a/<index:item>", "a", lambda item: str(item))
    client = app.test_client()
    assert client.get("/m/42").text == "42"
    assert client.get("/a/0").text == "0"
    for path in ("/m/0", "/m/-1", f"/m/{2**31}", "/m/%D9%A1", "/a/-1", f"/a/{2**31}"):
        assert client.get(path).status_code == 404, path
    with app.test_request_context():
        assert url_for("m", item=42) == "/m/42"
