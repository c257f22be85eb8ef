"""Request bodies: a form the portal cannot read is a bad request, never an empty form.

Werkzeug reads a form body it cannot parse (a multipart body with a wrong or missing
boundary, a truncated part or a part without its disposition; url-encoded bytes that
are not UTF-8) as an empty form, silently. The CSRF check then found no token and the
visitor was told the form had expired. The portal's request class raises
`UnreadableForm` instead, and `webportal.errors` answers it with a page that says what
went wrong. Nothing in such a body is acted on either way.

A form that carries uploads (the webmail's compose form) may also be read past the
app's MAX_CONTENT_LENGTH, up to a larger bound of its own, for a signed-in user
(`read_uploads_past_the_limit`): Werkzeug answered a larger body with a bare 413
before the view ran, and everything the user had typed was lost. Its uploads are
held in memory (never spooled to a temporary file) while a budget for them lasts;
an upload past the budget is read and dropped, and named in `dropped_uploads`, so
the view can say the message is too large and give the rest of the form back.

Every other form's uploads are held in memory too: Werkzeug would spool one past
500 KB to a temporary file, and an upload may be the clear attachment of a message
to be encrypted.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Request, current_app, request
from flask_login import current_user
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


class UploadBudget:
    """The bytes this request's uploads may still hold together, and the uploads."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.uploads: list[_HeldUpload] = []

    @property
    def dropped(self) -> list[tuple[str, int]]:
        """(filename, size) of each upload dropped past the budget."""
        return [(upload.filename, upload.size) for upload in self.uploads if upload.dropped]


class _HeldUpload(io.BytesIO):
    """One upload, in memory while the budget lasts; past it, emptied and only counted."""

    def __init__(self, budget: UploadBudget, filename: str) -> None:
        super().__init__()
        self.budget = budget
        self.filename = filename
        self.size = 0
        self.dropped = False
        budget.uploads.append(self)

    def write(self, data: Any) -> int:
        length = len(data)
        self.size += length
        if self.dropped:
            return length
        if length > self.budget.left:
            self.dropped = True
            self.budget.left += self.tell()
            self.seek(0)
            self.truncate()
            return length
        self.budget.left -= length
        return super().write(data)


class PortalRequest(Request):
    form_data_parser_class = _StrictFormDataParser
    upload_budget: UploadBudget | None = None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        """Every upload in memory, never Werkzeug's temporary file past 500 KB: an upload
        may be the clear attachment of a message to be encrypted (an outside
        recipient's answer on the secure page), which must not reach disk. The body
        is bounded (MAX_CONTENT_LENGTH, or a large form's own bound)."""
        if self.upload_budget is None:
            return io.BytesIO()
        return _HeldUpload(self.upload_budget, filename or "")


@dataclass(frozen=True)
class LargeForm:
    """How far past MAX_CONTENT_LENGTH a POST to one endpoint is read, and how many
    bytes its uploads may hold together."""

    body_limit: Callable[[], int]
    upload_budget: Callable[[], int]


_LARGE_FORMS = "sealgate.large_forms"


def read_uploads_past_the_limit(app: Flask, endpoint: str, form: LargeForm) -> None:
    """Read a signed-in user's POST to `endpoint` up to `form.body_limit()` bytes, its
    uploads held as `form.upload_budget()` allows (see the module docstring)."""
    app.extensions.setdefault(_LARGE_FORMS, {})[endpoint] = form


def over_the_limit() -> bool:
    """Whether this request's body is larger than the app's MAX_CONTENT_LENGTH (read
    anyway, as `read_uploads_past_the_limit` allowed)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return limit is not None and (request.content_length or 0) > int(limit)


def dropped_uploads() -> list[tuple[str, int]]:
    """The uploads of this request dropped past its budget: (filename, size) each."""
    budget = getattr(request, "upload_budget", None)
    return list(budget.dropped) if isinstance(budget, UploadBudget) else []


def drain(limit: int) -> None:
    """Read and forget what is left of this request's body, when that is at most `limit`
    bytes (or its length is unknown: then `limit` bytes at most).

    A 413 makes cheroot close the connection after the answer; with bytes of the body
    still unread, closing resets it, and the browser (still sending) shows a connection
    error instead of the page. Read first, the page arrives."""
    if (request.content_length or 0) > limit:
        return
    stream = request.environ.get("wsgi.input")
    left = limit
    while stream is not None and left > 0:
        chunk = stream.read(min(64 * 1024, left))
        if not chunk:
            return
        left -= len(chunk)


def _allow_large_form() -> None:
    form: LargeForm | None = current_app.extensions.get(_LARGE_FORMS, {}).get(
        request.endpoint or ""
    )
    if form is None or request.method != "POST" or not current_user.is_authenticated:
        return
    assert isinstance(request, PortalRequest)
    request.max_content_length = form.body_limit()
    request.upload_budget = UploadBudget(form.upload_budget())


def init_app(app: Flask) -> None:
    """The portal's request class; registered first, so its hook runs before any other
    (CSRF protection reads the form)."""
    app.request_class = PortalRequest
    app.before_request(_allow_large_form)
