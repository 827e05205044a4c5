"""``visibletext.html_text``: what the old regular expressions gave, in time linear in the
markup (they searched from every unclosed opening to the end of the text)."""

from __future__ import annotations

import html
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.visibletext import html_text, without_hidden, without_tags

# The expressions html_text was, as they were: the reference the one-pass reading must match.
_OLD_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_OLD_BLOCK = re.compile(
    r"</?(?:p|div|br|li|ul|ol|tr|td|th|table|h[1-6]|blockquote|pre|hr)\b[^>]*>", re.I
)
_OLD_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")


# imap/preview.py's, as they were
_OLD_PREVIEW_HIDDEN = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.S | re.I)
_OLD_PREVIEW_TAG = re.compile(r"<[^>]*>|<!--.*?-->", re.S)


def _old(markup: str) -> str:
    text = _SPACES.sub(" ", _OLD_HIDDEN.sub(" ", markup))
    text = html.unescape(_OLD_TAG.sub("", _OLD_BLOCK.sub("\n", text)))
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n") if line.strip())


_PIECES = st.sampled_from(
    [
        "<script>", "</script>", "</SCRIPT >", "<style type=x>", "</style>", "<head>", "</head>",
        "<headx>", "<!--", "-->", "<!-->", "<p>", "</p>", "<br/>", "<div class='a>b'>", "<b>",
        "</b>", "<", ">", "&amp;", "&lt;", "word", " ", "\n", "<h1>", "<scriptx>", "</script",
        "<a href='x'>", "</a>", "\xa0", "İ", "<P", "<TD ", "--",
    ]
)  # fmt: skip


@settings(max_examples=4000, deadline=None)
@given(st.lists(_PIECES, max_size=16).map("".join))
def test_the_same_text_as_the_expressions_it_replaced(markup: str) -> None:
    assert html_text(markup) == _old(markup)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=16).map("".join))
def test_the_preview_s_text_is_what_its_expressions_gave(markup: str) -> None:
    old = _OLD_PREVIEW_TAG.sub(" ", _OLD_PREVIEW_HIDDEN.sub(" ", markup))
    assert without_tags(without_hidden(markup, comments=False), " ") == old


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="<>/!-apshdbrcitxyle \n&;", max_size=80))
def test_the_same_text_for_any_markup_soup(markup: str) -> None:
    assert html_text(markup) == _old(markup)


@pytest.mark.parametrize(
    "piece", ["<", "<!-", "<!--", "<script>", "<head>", "<p ", "<a ", "</s", "<style"]
)
def test_unclosed_markup_takes_linear_time(piece: str) -> None:
    """A complexity check, not a speed target: 40,000 unclosed openings took 1.4-2.9 s
    (each searched to the end of the text); twenty times the markup now takes about twenty
    times as long."""

    def seconds(count: int) -> float:
        markup = piece * count + " text"
        started = time.perf_counter()
        html_text(markup)
        return time.perf_counter() - started

    small = min(seconds(2_000) for _ in range(3))
    large = min(seconds(40_000) for _ in range(3))
    assert large < 70 * small + 0.01, (small, large)
