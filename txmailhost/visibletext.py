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

_HTML_HIDDEN = re.compile(r"<(script|style|head)\b|<!--", re.I)  # where a hidden run begins
_ELEMENTS_HIDDEN = re.compile(r"<(script|style|head)\b", re.I)  # the same, comments not
_HIDDEN_END = {
    name: re.compile(rf"</{name}\s*>", re.I) for name in ("script", "style", "head")
}  # fmt: skip
_HTML_BLOCK = re.compile(
    r"</?(?:p|div|br|li|ul|ol|tr|td|th|table|h[1-6]|blockquote|pre|hr)\b[^>]*>", re.I
)
_HTML_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")


def html_text(markup: str) -> str:
    """HTML as a reader sees it: scripts, styles and comments gone, block elements as line
    breaks, other tags removed, entities decoded, runs of white space as one space."""
    text = _SPACES.sub(" ", without_hidden(markup))  # source line breaks are spaces
    text = html.unescape(without_tags(_before_last_close(_HTML_BLOCK, "\n", text)))
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n") if line.strip())


def without_hidden(markup: str, comments: bool = True) -> str:
    """Each script, style and head element and each comment (``comments``) as one space:
    what ``<(script|style|head)\\b.*?</\\1\\s*>|<!--.*?-->`` substituted, in one pass. That
    expression, where nothing closed what it opened, looked for the close to the end of the
    text from every opening: ``<!-`` 40,000 times took 2.9 s. Here each search for a close
    is made once: a close not found is not found from any later opening either."""
    out: list[str] = []
    at = 0
    unclosed: set[str] = set()  # names (and "--") found with no close after them
    openings = _HTML_HIDDEN if comments else _ELEMENTS_HIDDEN
    while (opening := openings.search(markup, at)) is not None:
        name = (opening.group(1) or "--").lower()
        end = -1
        if name not in unclosed:
            if name == "--":
                close = markup.find("-->", opening.end())
                end = close + 3 if close >= 0 else -1
            else:
                found = _HIDDEN_END[name].search(markup, opening.end())
                end = found.end() if found is not None else -1
        if end < 0:  # not hidden: the opening is read as markup or text, as it was
            unclosed.add(name)
            out.append(markup[at : opening.end()])
            at = opening.end()
            continue
        out.append(markup[at : opening.start()])
        out.append(" ")
        at = end
    out.append(markup[at:])
    return "".join(out)


def without_tags(text: str, replacement: str = "") -> str:
    """Every tag (``<[^>]*>``) replaced by ``replacement`` (see ``_before_last_close``)."""
    return _before_last_close(_HTML_TAG, replacement, text)


def _before_last_close(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    """``pattern.sub(replacement, text)`` for a pattern of markup that ends in ">" (a tag, a
    block element's tag). It scans for that ">": after the last ">" of the text none can
    match, and from every "<" there it would scan to the end (``<`` 40,000 times took 1.4
    s), so that tail is kept as it is without being searched."""
    last = text.rfind(">") + 1
    return pattern.sub(replacement, text[:last]) + text[last:]
