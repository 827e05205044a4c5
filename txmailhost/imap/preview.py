"""FETCH PREVIEW (RFC 8970): up to 256 characters of a message's text, for a message list.

The text is the first ``text/plain`` part that is not an attachment (else the first
``text/html`` one, its tags and the contents of ``<style>``/``<script>`` dropped and its
entities decoded), walking the MIME tree in order; encapsulated messages are not entered (their
text is not this message's). The transfer encoding is undone (``binary.decoded``), the charset
converted to Unicode, and every run of white space becomes one space (§3.1: the preview is
one line of plain text). A message without such a part has the empty preview ``""``; the
server always computes it, so ``PREVIEW (LAZY)`` gets the same answer (§3.2 lets a server
that can answer cheaply do so).
"""

from __future__ import annotations

import html
import re

from txmailhost.imap import binary, mime
from txmailhost.visibletext import without_hidden, without_tags

MAX_CHARS = 256  # RFC 8970 §3.1
_SCAN_OCTETS = 64 * 1024  # enough decoded text to fill 256 characters after tags are dropped
_WHITESPACE = re.compile(r"\s+")


def preview(root: mime.Part) -> str:
    """The preview text of a parsed message (``mime.parse``)."""
    plain = html_part = None
    stack = [root]
    while stack and plain is None:
        part = stack.pop(0)
        if part.children:
            stack[:0] = part.children
            continue
        if part.maintype != b"text" or _is_attachment(part):
            continue
        if part.subtype == b"plain":
            plain = part
        elif part.subtype == b"html" and html_part is None:
            html_part = part
    chosen = plain or html_part
    if chosen is None:
        return ""
    text = _text_of(chosen)
    if chosen is html_part:
        # in time linear in the text (visibletext): 64 KiB of "<" took seconds
        text = html.unescape(without_tags(without_hidden(text, comments=False), " "))
    return _WHITESPACE.sub(" ", text).strip()[:MAX_CHARS]


def _is_attachment(part: mime.Part) -> bool:
    disposition = (part.get(b"content-disposition") or b"").split(b";", 1)[0]
    return disposition.strip().lower() == b"attachment"


def _text_of(part: mime.Part) -> str:
    try:
        data = binary.decoded(part)
    except binary.UnknownCTE:
        data = part.body
    charset = dict((k.lower(), v) for k, v in part.params).get(b"charset", b"us-ascii")
    name = charset.decode("ascii", "replace").strip() or "us-ascii"
    if name.lower() in ("us-ascii", "ascii"):
        name = "utf-8"  # 8-bit text labelled ASCII is nearly always UTF-8 in practice
    try:
        return data[:_SCAN_OCTETS].decode(name, "replace")
    except LookupError:
        return data[:_SCAN_OCTETS].decode("utf-8", "replace")
