"""HTML to the text a reader sees (``HTMLText``), for the spam checks' sample
(``sample.py``): hidden text kept apart, links with their visible text, images counted. Plain markup (the
shapes every version of ``html.parser`` reads alike) is read by one regular expression
per run of text and the tag after it; from the first markup that isn't plain, the
standard parser reads the rest with the same handlers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser


@dataclass(frozen=True)
class Link:
    """An HTML anchor: where it goes and the text the reader sees."""

    href: str
    text: str


_HIDING = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:\.\d+)?\s*(?:px|pt)?\s*(?:;|$)"
    r"|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$)|(?:^|;)\s*color\s*:\s*(?:#fff(?:fff)?|white)\b",
    re.IGNORECASE,
)
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "wbr"})
_BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "td"})

# The markup ``HTMLText.read`` reads itself (see there): shapes that every version of
# ``html.parser`` reads the same way, as HTML5 does. White space is ASCII's (the parser's
# ``\s`` is Unicode's); names are printable ASCII; quoted values hold no ``<`` or ``>``; an
# unquoted value begins with no quote or ``=`` and is never directly followed by ``/>`` (it
# would take the ``/``).
_WS = r"[ \t\n\r\f]"
_NAME = r"[!#-&(-.0-;?-~]+"  # printable ASCII but for white space and "'/<=>
_VALUE = r""""[^"<>]*"|'[^'<>]*'|[^\s"'=<>`][^\s<>`]*(?!/)"""
_SIMPLE_ATTR = re.compile(rf"{_WS}+({_NAME})(?:{_WS}*={_WS}*({_VALUE}))?")
_SIMPLE_TAG = r"[a-zA-Z][-a-zA-Z0-9:_.]*"
_SIMPLE_MARKUP = re.compile(
    # 1: text, with any "<" that begins no markup (as the parser reads them)
    r"([^<]*+(?:<(?![a-zA-Z/!?])[^<]*+)*+)"
    rf"(?:<({_SIMPLE_TAG})((?:{_WS}+{_NAME}(?:{_WS}*={_WS}*(?:{_VALUE}))?)*){_WS}*(/?)>"  # 2-4
    rf"|</({_SIMPLE_TAG})>"  # 5: end tag
    # 6: a comment whose first close for every version ("--", white space, ">" in 3.11.7;
    # "--!>" and "<!--->" as HTML5 in later releases) is a plain "-->", <!DOCTYPE ...>,
    # <?xml ...>: nothing the handlers see
    r"|(<!--(?!-?>)(?:[^-]|-(?!-\s*>|-!>))*-->|<![dD][oO][cC][tT][yY][pP][eE][^<>]*>|<\?[^<>]*>)"
    r"|\Z)"
)


# Elements whose content is text up to their end tag, as this version of the parser reads
# them (script and style; in later releases also xmp, iframe, noembed, noframes, and title
# and textarea with their entities read; noscript only for a parser made with
# scripting=True, which this is not), and the end tags they look for. ``HTMLText._content``
# reads those whose content is the same text whether read as markup or not.
_ESCAPABLE = frozenset(getattr(HTMLParser, "RCDATA_CONTENT_ELEMENTS", ()))
_CONTENT_END = {
    tag: re.compile(rf"</\s*{tag}", re.IGNORECASE)
    for tag in {*HTMLParser.CDATA_CONTENT_ELEMENTS, *_ESCAPABLE}
}
_SCRIPT_START = re.compile(r"<script", re.IGNORECASE)
# Start tags ``HTMLText._content`` reads: those above, plaintext (HTML5: the rest is its
# content), and svg and math, whose content is "foreign" (where later parsers read
# <![CDATA[ ... ]]>, and may track the elements open to know it): left to the parser.
_SPECIAL = frozenset({*_CONTENT_END, "plaintext", "svg", "math"})


# Characters of never-ended markup at the end of an HTML part that the standard parser's
# ``close`` still reads (``HTMLText._parse``): its time grows with the square of their length.
UNENDED_KEPT = 1024


class HTMLText(HTMLParser):
    """HTML to text, as a reader would see it, with what a reader wouldn't see kept apart:
    text inside an element styled invisible (or ``hidden``, or a ``<font size=0>``), and
    ``<script>``/``<style>`` dropped. Links keep their visible text for the mismatch rule."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self._hiding = 0  # elements on the stack that hide their content
        self._skip = 0  # inside script/style
        self._visible: list[str] = []
        self._hidden: list[str] = []
        self._anchor: tuple[str, list[str]] | None = None
        self.links: list[Link] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in ("script", "style"):
            self._skip += 1
            return
        if tag == "img":
            self.images += 1
        if tag in _BLOCK:
            self._visible.append("\n")
        if tag == "a" and values.get("href"):
            self._anchor = (values["href"].strip(), [])
        if tag in _VOID:
            return
        hides = (
            "hidden" in values
            or bool(_HIDING.search(values.get("style", "")))
            or (tag == "font" and values.get("size", "").strip() in ("0", "-5", "-4"))
            or (tag == "font" and values.get("color", "").lower() in ("#ffffff", "#fff", "white"))
        )
        self._stack.append((tag, hides))
        self._hiding += hides

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
            return
        if tag == "a" and self._anchor is not None:
            href, words = self._anchor
            self.links.append(Link(href, " ".join("".join(words).split())))
            self._anchor = None
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                self._hiding -= sum(hides for _tag, hides in self._stack[depth:])
                del self._stack[depth:]
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._hiding:  # inside an element that hides its content
            self._hidden.append(data)
            return
        self._visible.append(data)
        if self._anchor is not None:
            self._anchor[1].append(data)

    def read(self, html: str) -> None:
        """``feed(html)`` and ``close()``, at less than half the cost for the markup mail
        holds (all the corpus's HTML: 1.5 s to 0.67).

        The standard library's parser tries a dozen regular expressions per tag, parses every
        attribute and counts lines as it goes. Here one regular expression reads a run of
        text and the simple markup after it (``_SIMPLE_MARKUP``), and the same handlers see
        the same things: the text (the parser's pieces of it joined: it splits text only at
        "<", which no entity spans, so entities read the same), tags, and attributes where
        the handlers look at them (``a``, ``font``, and elements whose attributes say
        "hidden" or "style"); the handlers' common cases are written out in the loop. At the
        first markup that is not simple the standard parser reads the rest: it would be in
        the same state there (outside ``<script>``/``<style>``, nothing buffered)."""
        match = _SIMPLE_MARKUP.match
        visible = self._visible
        stack = self._stack
        at = 0
        end = len(html)
        while at < end:
            found = match(html, at)
            if found is None:
                self._parse(html[at:])
                return
            data, name, markup, closes, end_tag, _other = found.groups()
            if data:
                if "&" in data:
                    data = unescape(data)
                if self._hiding:
                    self._hidden.append(data)
                else:
                    visible.append(data)
                    if self._anchor is not None:
                        self._anchor[1].append(data)
            if name is not None:
                tag = name.lower()
                if tag in _SPECIAL:
                    after = self._content(html, tag, found)
                    if after < 0:
                        self._parse(html[found.start(2) - 1 :])
                        return
                    if after > found.end():  # script or style, read to its end
                        at = after
                        continue
                if markup and (
                    tag in ("a", "font")
                    or (
                        tag not in _VOID
                        and ("hidden" in markup.lower() or "style" in markup.lower())
                    )
                ):
                    tag_start = found.start(2) - 1
                    self.handle_starttag(
                        tag, self._attributes(html[tag_start : found.end()], markup)
                    )
                else:  # handle_starttag(tag, []) without the call
                    if tag == "img":
                        self.images += 1
                    elif tag in _BLOCK:
                        visible.append("\n")
                    if tag not in _VOID:
                        stack.append((tag, False))
                if closes:
                    self.handle_endtag(tag)
            elif end_tag is not None:
                tag = end_tag.lower()
                if stack and stack[-1][0] == tag and tag != "a":
                    self._hiding -= stack.pop()[1]  # handle_endtag(tag) without the call
                else:
                    self.handle_endtag(tag)
            at = found.end()

    def _parse(self, html: str) -> None:
        """The standard parser's reading of ``html``, from where ``read`` got to.

        What ``feed`` leaves unread is markup that never ends: a tag, an end tag, a comment
        or a declaration with no ``>`` after it, up to the end. ``close`` reads that as text
        one ``<`` at a time, searching to the end from each: ``<a `` 8,000 times took 6 s
        (CPython's gh-135462, fixed in later releases by dropping it, as HTML5 does at the
        end of the file: such markup is no text). Past ``UNENDED_KEPT`` characters it is
        dropped so here too; a short one is read as before."""
        self.rawdata = ""
        HTMLParser.feed(self, html)
        if len(self.rawdata) > UNENDED_KEPT:
            self.rawdata = ""
        HTMLParser.close(self)

    def _content(self, html: str, tag: str, start: re.Match[str]) -> int:
        """For a start tag in ``_SPECIAL``: where script or style ends (the handlers drop it
        all), the end of the start tag for an element whose content reads the same as text
        and as markup, or -1 for the standard parser to read (the rest of the text)."""
        if tag not in _CONTENT_END:  # plaintext, svg, math
            return -1
        end = start.end()
        close = _CONTENT_END[tag].search(html, end)
        if start.group(4) or close is None or close.end() - close.start() != len(tag) + 2:
            return -1
        if html[close.end() : close.end() + 1] != ">":
            return -1
        if tag in ("script", "style"):
            if tag == "script" and _SCRIPT_START.search(html, end, close.start()):
                return -1  # HTML5: "<!-- <script>" inside may hide that end tag
            self.handle_starttag(tag, [])  # from here to the end tag, text is dropped
            self.handle_endtag(tag)
            return close.end() + 1
        if html.find("<", end) != close.start():
            return -1
        if tag not in _ESCAPABLE and html.find("&", end, close.start()) >= 0:
            return -1
        return end

    @staticmethod
    def _attributes(start_tag: str, markup: str) -> list[tuple[str, str | None]]:
        """The attributes of a simple start tag, as the parser gives them."""
        if "&" in markup:  # entities in values: as this version's parser reads them
            return _attributes(start_tag)
        return [
            (name.lower(), value[1:-1] if value[:1] in ('"', "'") else value or None)
            for name, value in _SIMPLE_ATTR.findall(markup)
        ]

    def updatepos(self, i: int, j: int) -> int:
        """The parser's line counting, not done: nothing here asks where a tag was."""
        return j

    def text(self) -> str:
        return re.sub(r"[ \t\r\f\v]+", " ", "".join(self._visible)).strip()

    def hidden_text(self) -> str:
        return " ".join("".join(self._hidden).split())


class _StartTag(HTMLParser):
    """One start tag's attributes as this version's parser reads them (entities in values
    are read differently from one Python version to the next)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs = attrs


def _attributes(start_tag: str) -> list[tuple[str, str | None]]:
    parser = _StartTag()
    parser.feed(start_tag)
    parser.close()
    return parser.attrs
