"""How much of a received header field the standard library's ``email`` package is given.

``policy.default`` parses structured fields (addresses, ``Content-Type``, ...) with
``email._header_value_parser``, which copies the rest of the value for every token it takes:
quadratic in a field's length, cubic in the ``;`` of a ``Content-Type`` (8,000 of them, an 8 KB
message, cost 5.7 s of a web thread a view; 20,000 minutes), and its RFC 2047 decoder keeps
the rest of the field in every encoded word (a 179 KB Subject of 10,000 words took 900 MiB to
show). A message in a folder is anyone's input, so every field is bounded before the library
sees it, at the one place its parser takes fields from the source (:class:`BoundedPolicy`,
for the message and every part and attached message in it):

- a field's value is at most :data:`MAX_FIELD` characters (:data:`MAX_MIME_FIELD` for the
  ``Content-*`` fields), with at most :data:`MAX_ENCODED_WORDS` ``=?`` (RFC 2047 encoded
  words, or what starts like one) and, in a structured field, at most :data:`MAX_PARAMETERS`
  ``;``; what is cut is shown as ``…``;
- a structured field longer than :data:`MAX_STRUCTURED`, or one the library's parser fails on
  (comments nested deeper than its recursion goes, ...), is given to the library as plain
  text (its encoded words decoded, its grammar not parsed): a long ``To`` is shown as
  received and still answers "reply to all" (``email.utils.getaddresses``, linear, reads it).

Real mail stays far inside these bounds (a line is at most 998 octets, RFC 5322 §2.1.1, and
fields are short but for recipient lists and ``References``), so it reads as before.
The list and sort keys decode a field's start only (:data:`MAX_LISTED`, ``sortkeys.py``).
"""

from __future__ import annotations

import functools
from email.headerregistry import UnstructuredHeader
from email.policy import EmailPolicy, default

# 16 KiB holds a To of some 400 addresses or a References of 200 message IDs, and the
# library's unstructured path decodes it in a millisecond.
MAX_FIELD = 16 * 1024
# A MIME field (Content-Type, Content-Disposition, ...) holds a type and a few parameters, and
# the library reads a part's again for each thing it asks of the part; 4 KiB keeps a file name
# of 255 characters in RFC 2231 pieces (RFC 2231 §3, percent-encoded UTF-8).
MAX_MIME_FIELD = 4 * 1024
# RFC 2047 §2: a word is at most 75 characters, so 256 fill MAX_FIELD; each costs the library
# a copy of the rest of the field.
MAX_ENCODED_WORDS = 256
# Parameters of Content-Type/Content-Disposition: a handful in real mail, a few more for an
# RFC 2231 file name in pieces.
MAX_PARAMETERS = 32
# Longer than this, a structured field is quadratic to parse (1 KiB: some 25 recipients).
MAX_STRUCTURED = 1024
# What a message list row or a sort key reads of a Subject or From (run on the reactor, for
# up to 200 rows a page): more than a row shows.
MAX_LISTED = 1024
ELLIPSIS = " \u2026"

STRUCTURED = frozenset(
    name
    for name, kind in default.header_factory.registry.items()
    if not issubclass(kind, UnstructuredHeader)
)
_AS_TEXT = default.header_factory["x-txm-unstructured"]  # UnstructuredHeader, any name


def _nth(value: str, needle: str, count: int) -> int:
    """Where the ``count + 1``-th ``needle`` of ``value`` starts, or -1 if there are fewer."""
    at = -1
    for _ in range(count + 1):
        at = value.find(needle, at + 1)
        if at < 0:
            return -1
    return at


def bounded(name: str, value: str) -> str:
    """``value`` of the field ``name`` cut at the first bound it crosses, with an ellipsis."""
    name = name.strip().lower()
    limit = MAX_MIME_FIELD if name.startswith("content-") else MAX_FIELD
    cuts = [limit] if len(value) > limit else []
    cuts.append(_nth(value, "=?", MAX_ENCODED_WORDS))
    if name in STRUCTURED:
        cuts.append(_nth(value, ";", MAX_PARAMETERS))
    cut = min((at for at in cuts if at >= 0), default=-1)
    return value if cut < 0 else value[:cut].rstrip() + ELLIPSIS


class BoundedPolicy(EmailPolicy):
    """``policy.default`` with every field bounded as it is read from the source."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return name, bounded(name, value)

    def header_fetch_parse(self, name: str, value: str) -> object:
        if hasattr(value, "name") or name.lower() not in STRUCTURED:
            return super().header_fetch_parse(name, value)  # or an object our code set
        text = value.replace("\r", "").replace("\n", "")
        if len(text) > MAX_STRUCTURED:
            return _AS_TEXT(name, text)
        return _structured(name, text)


@functools.lru_cache(maxsize=8)
def _structured(name: str, text: str) -> object:
    """A structured field parsed once for all the times the library asks for it (it parses
    again on each: a part's Content-Type some ten times while a page is made). Header objects
    are immutable strings; the few kept are the fields of the part being read."""
    try:
        return default.header_factory(name, text)
    except (RecursionError, IndexError, ValueError, TypeError):
        # comments nested deeper than the stack ("((((..."), or one of the parser's own
        # failures (an IndexError on a Message-ID of "@"): shown as received
        return _AS_TEXT(name, text)


POLICY = BoundedPolicy()
