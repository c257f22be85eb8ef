"""Request bodies: a form the portal cannot read is a bad request, never an empty form.

Werkzeug reads a form body it cannot parse (a multipart body with a wrong or missing
boundary, a truncated part or a part without its disposition; url-encoded bytes that
are not UTF-8) as an empty form, silently. The CSRF check then found no token and the
visitor was told the form had expired. The portal's request class raises
`UnreadableForm` instead, and `webportal.errors` answers it with a page that says what
went wrong. Nothing in such a body is acted on either way.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Request
from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser

if TYPE_CHECKING:
    from werkzeug.formparser import t_parse_result


class UnreadableForm(BadRequest):
    """A form body that cannot be parsed."""


class _StrictFormDataParser(FormDataParser):
    """Werkzeug's form parser, raising `UnreadableForm` for a body it cannot parse."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "silent": False})

    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> t_parse_result:
        try:
            return super().parse(stream, mimetype, content_length, options)
        except ValueError:  # every parse failure (UnicodeDecodeError included)
            raise UnreadableForm() from None


class PortalRequest(Request):
    form_data_parser_class = _StrictFormDataParser


def init_app(app: Flask) -> None:
    app.request_class = PortalRequest
