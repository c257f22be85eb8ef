"""Numbers from URLs, queries and forms, bounded before they reach the database.

An id the database cannot hold made the driver raise, and the user got a 500:
SQLite stops at 2^63-1, and every id column is an INTEGER, which PostgreSQL
stops at 2^31-1 (`integer out of range`). No row can have a larger id, so that
is the bound. Path ids therefore use the `id` URL converter (ASCII digits,
1..2^31-1: anything else is simply no route, so 404), attachment positions the
`index` converter, and query or form ids the helpers here: absent or empty is
"not given"; present but impossible is a 404 in a query (no such thing can
exist) and a 400 in a form (the form was not one the portal wrote). Only ASCII
digits count: `int()` also reads "١٢" and " 1", and an id has one spelling.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request
from werkzeug.routing import BaseConverter, Map, ValidationError

MAX_ID = 2**31 - 1  # the largest INTEGER on PostgreSQL; every id column is one
MAX_INDEX = 2**31 - 1  # a part's position in a message
MAX_PAGE = 10**9
_MAX_DIGITS = 19  # more digits than any bound here: refused before int() runs


def parse_int(text: str | None, low: int, high: int) -> int | None:
    """The number `text` spells in ASCII digits if it lies in low..high, else None."""
    if text is None or not text or len(text) > _MAX_DIGITS or not text.isascii():
        return None
    if not text.isdigit():
        return None
    number = int(text)
    return number if low <= number <= high else None


def parse_id(text: str | None) -> int | None:
    return parse_int(text, 1, MAX_ID)


class IdConverter(BaseConverter):
    """`<id:name>`: a row id, 1..MAX_ID; anything else does not match the route (404)."""

    regex = r"[0-9]{1,19}"
    part_isolating = True

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class IndexConverter(IdConverter):
    """`<index:name>`: a position in a list, 0..2^31-1."""

    regex = r"[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = parse_int(value, 0, MAX_INDEX)
        if number is None:
            raise ValidationError()
        return number


def query_id(name: str) -> int | None:
    """The id in query parameter `name`; None when absent or empty; 404 when no id."""
    text = request.args.get(name)
    if not text:
        return None
    number = parse_id(text)
    if number is None:
        abort(404)
    return number


def form_id(name: str) -> int | None:
    """The id in form field `name`; None when absent or empty; 400 when no id."""
    text = request.form.get(name)
    if not text:
        return None
    number = parse_id(text)
    if number is None:
        abort(400)
    return number


def page_number(name: str = "page") -> int:
    """A page number from the query: 1 unless it is a number; large ones are clamped
    (a listing clamps to its last page, as after deletions)."""
    text = request.args.get(name, "")
    if not (text.isascii() and text.isdigit()):
        return 1
    return MAX_PAGE if len(text) > 10 else max(1, min(int(text), MAX_PAGE))


def register(url_map: Map) -> None:
    url_map.converters["id"] = IdConverter
    url_map.converters["index"] = IndexConverter


def init_app(app: Flask) -> None:
    """Before any blueprint: their rules name these converters."""
    register(app.url_map)
