"""HTML as a reader sees it: what searches look in (IMAP SEARCH's BODY and TEXT, Sieve's
``body :text``), so that words in tags and attributes (a link's ``href``, a ``title``) are not
found and words split by markup (``<b>garden</b>ing``) are.

A regular expression reading, not a parser: it runs on every message a search or a script
reads, and what it must do is bounded (drop scripts, styles, comments and tags, decode
entities, keep block boundaries as line breaks).
"""

from __future__ import annotations

import html
import re

_HTML_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_HTML_BLOCK = re.compile(
    r"</?(?:p|div|br|li|ul|ol|tr|td|th|table|h[1-6]|blockquote|pre|hr)\b[^>]*>", re.I
)
_HTML_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")


def html_text(markup: str) -> str:
    """HTML as a reader sees it: scripts, styles and comments gone, block elements as line
    breaks, other tags removed, entities decoded, runs of white space as one space."""
    text = _SPACES.sub(" ", _HTML_HIDDEN.sub(" ", markup))  # source line breaks are spaces
    text = html.unescape(_HTML_TAG.sub("", _HTML_BLOCK.sub("\n", text)))
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n") if line.strip())
