"""Files uploaded with the compose form: multipart/form-data parsed from disk, parts spooled to
disk, names made safe.

twisted.web writes a request body larger than 100 kB to a temporary file as it arrives, and
``site.WebRequest`` closes the connection past the server's message size limit; the body
is then parsed here, in the site's pool, by ``multipart`` (a streaming parser: a part larger
than ``SPOOL`` goes to a temporary file of its own), so a 30 MiB attachment never sits whole
in memory (DESIGN invariant 2). The form's text fields become ``request.args`` like a
urlencoded form's, so the CSRF gate and the handlers read them the same way; the files
become :class:`Upload`\\ s.

A file's name comes from the browser and ends up in a MIME header and, later, on someone's
disk: :func:`safe_filename` keeps its last path component only, without control characters,
quotes, separators or the ``=?`` that starts an encoded word, at most ``MAX_NAME``
characters.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, BinaryIO

import multipart

SPOOL = 64 * 1024  # a part larger than this is spooled to a temporary file
MAX_PARTS = 128  # fields and files of one form
MAX_FIELD = 1024 * 1024  # a text field (the message body) held in memory
MAX_NAME = 150
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")


class BadUpload(ValueError):
    """The multipart body could not be parsed (a 400 for the browser)."""


@dataclass
class Upload:
    """One uploaded file: its safe name, a MIME type we trust the syntax of, its size, and
    the open spool (memory or a temporary file) holding it."""

    filename: str
    content_type: str
    size: int
    file: BinaryIO

    def open(self) -> BinaryIO:
        self.file.seek(0)
        return self.file


def safe_filename(name: str) -> str:
    """The last path component of ``name``, printable, without quotes, separators or control
    characters, NFC, at most ``MAX_NAME`` characters (the extension kept); "attachment" when
    nothing is left."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    kept = "".join(
        c for c in name if unicodedata.category(c)[0] not in ("C", "Z") or c == " "
    ).strip(" .")
    # "=?" starts an RFC 2047 encoded word, which the MIME header would decode (a line
    # break in it would end the field: composing.folded)
    kept = kept.replace('"', "'").replace(";", "_").replace("=?", "=_")
    if len(kept) > MAX_NAME:
        stem, dot, extension = kept.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            kept = stem[: MAX_NAME - len(extension) - 1] + "." + extension
        else:
            kept = kept[:MAX_NAME]
    return kept or "attachment"


def safe_content_type(value: str | None) -> str:
    """The browser's type for a file when it is a plain ``type/subtype``; else octets."""
    kind = (value or "").split(";", 1)[0].strip().lower()
    if not _TOKEN.match(kind) or kind.startswith("multipart/") or kind == "message/rfc822":
        return "application/octet-stream"
    return kind


def parse_form(content: BinaryIO, content_type: str, length: int) -> tuple[dict, list[Upload]]:
    """(fields as ``request.args`` holds them, uploaded files) of a multipart/form-data body
    (blocking: run it in a pool). Raises ``BadUpload``."""
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise BadUpload("no multipart boundary")
    content.seek(0)
    fields: dict[bytes, list[bytes]] = {}
    uploads: list[Upload] = []
    try:
        parser = multipart.MultipartParser(
            content,
            boundary,
            content_length=length,
            part_limit=MAX_PARTS,
            spool_limit=SPOOL,
            memory_limit=MAX_FIELD * 4,
        )
        for part in parser:
            if part.filename is None:
                if part.size > MAX_FIELD:
                    raise BadUpload(f"field {part.name} too large")
                fields.setdefault(part.name.encode(), []).append(part.raw)
                part.close()
            elif part.filename or part.size:
                uploads.append(_upload(part))
            else:
                part.close()  # an empty file input: nothing chosen
    except multipart.MultipartError as e:
        for upload in uploads:
            upload.file.close()
        raise BadUpload(str(e)) from None
    return fields, uploads


def _upload(part: Any) -> Upload:
    part.file.seek(0)
    return Upload(
        filename=safe_filename(part.filename),
        content_type=safe_content_type(part.content_type),
        size=part.size,
        file=part.file,
    )


def content_length(request: Any) -> int:
    """How many octets of body the request brought (they are in ``request.content``)."""
    content = request.content
    here = content.tell()
    content.seek(0, os.SEEK_END)
    length = content.tell()
    content.seek(here)
    return length
