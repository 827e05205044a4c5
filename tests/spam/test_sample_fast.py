"""The sample's fast paths give what the general ones give.

``sample.py`` reads plain HTML markup, plain one-part header sections and plain
Content-Type/Content-Disposition parameters itself, and hands everything else to the standard
library's parsers. Each test here feeds the same input to both and asks for the same answer,
on inputs at the edge of "plain": non-ASCII text, entities, broken markup and MIME, bare CR and
LF, NUL octets, 8-bit fields, folded fields, huge fields.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import re
import sys
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.spam.htmltext import HTMLText as _HTMLText
from txmailhost.spam.sample import (
    _URL,
    FIELD_CAP,
    _parsed,
    _plain_content_fields,
    _plain_message,
    _raw_fields,
    find_urls,
    read_capped,
)


def _read_fast(html: str) -> tuple[object, ...]:
    page = _HTMLText()
    with contextlib.suppress(AssertionError, ValueError):  # as _read_part does
        page.read(html)
    return page.text(), page.hidden_text(), page.links, page.images


def _read_by_parser(html: str) -> tuple[object, ...]:
    """The general path: the standard parser drives the same handlers over all of it."""
    page = _HTMLText()
    try:
        HTMLParser.feed(page, html)
        HTMLParser.close(page)
    except (AssertionError, ValueError):
        pass
    return page.text(), page.hidden_text(), page.links, page.images


HTML_EDGES = [
    "",
    "plain text, no markup",
    "<p>Caf\u00e9 &amp; cr\u00e8me&nbsp;br\u00fbl\u00e9e</p>",  # non-ASCII, entities
    '<a href="http://x.test/?a=1&copy=2&amp;b">the &lt;link&gt;</a>',  # entities in a value
    "<a href=http://x.test/a/>unquoted, then /></a> <a href=x />closed</a>",
    "<A HREF='http://x.test/'>UPPER</A><br/><br /><p/>after",
    '<span style="display:none">hidden <b>bold</b></span> shown',
    '<div hidden><font size=0>tiny</font></div><font color="#FFFFFF">white</font> seen',
    "<font face=Arial, Helvetica, sans-serif size=2>names with commas</font>",
    '<font color=#FF0000">quote in an unquoted value</font>',
    "<script>var a = '<b>not markup</b>';</script>text<style>p {x: y}</style>more",
    "<script><!-- <script> </script> still script? --></script>after",
    "<SCRIPT >x</SCRIPT >y</ script>z",
    "<script/>self-closing script<p>after</p>",
    "<style>unclosed style, the rest is content <b>x</b>",
    "<title>A &amp; B</title><title>with <b>markup</b></title>",
    "<iframe src=x><script>inside</script></iframe>after",
    "<textarea>a &lt; b</textarea><xmp><b>raw</b></xmp><noscript>ns &amp;</noscript>",
    "<plaintext><b>the rest</b>",
    "<p>x</p><svg><![CDATA[<b>cdata</b>]]><text>in svg</text></svg><![CDATA[y]]>after",
    "<math><mi>x</mi></math><b>after</b>",
    "<!-- comment --><!----><!--><!--->x<!-- a -- b --><!-- c --!>d<!-- e -- >f",
    "<!DOCTYPE html PUBLIC \"-//W3C//DTD\"><?xml version='1.0'?><![if !supportLists]>x<![endif]>",
    "<!bogus comment>text<!>",
    "a < b and c <3 d <",
    "&amp",
    "text &",
    "<p>unclosed tag at the end <a href=",
    "<a href='x'><b>nested <i>deep</b> mis</i>matched</a>",
    "<a\xa0href=x>no-break space in a tag</a>",
    "<a\x00b>NUL in a tag</a>text\x00",
    "<a b=c=d e==f>equals</a>",
    "<x:y>namespaced</x:y><o:p></o:p>",
    "</>empty end tag</ p>spaced end tag",
    "<br<br>\r\n</td",
    "<table><tr><td>cell</td></tr></table>" * 50,
]


@pytest.mark.parametrize("html", HTML_EDGES)
def test_html_read_gives_what_the_parser_gives(html):
    assert _read_fast(html) == _read_by_parser(html)


_HTML_PIECES = st.sampled_from(
    [
        "<",
        ">",
        "/",
        "=",
        '"',
        "'",
        " ",
        "\n",
        "\t",
        "\x0b",
        "\xa0",
        "\u00e9",
        "text",
        "&amp;",
        "&",
        "&#",
        "&#x41;",
        "&lt",
        "&copy=",
        "<!--",
        "-->",
        "--",
        "<!",
        "<?",
        "<![if x]>",
        "<a href=x>",
        "<a href='h&amp;t'>",
        "</a>",
        "<b>",
        "</b>",
        "<br/>",
        "<p/>",
        "<x:y>",
        "<script>",
        "</script>",
        "</ script>",
        "</SCRIPT >",
        "<style>",
        "</style>",
        "<title>",
        "</title>",
        "<iframe>",
        "</iframe>",
        "<font size=0>",
        "<font color=white>",
        '<span style="display:none">',
        "<div hidden>",
        "</div>",
        "</span>",
        "<img src=x>",
        "<a href=x/>",
        "<a b=c=d>",
        "<!DOCTYPE html>",
        "<?xml?>",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_HTML_PIECES, max_size=40).map("".join))
def test_html_read_of_any_mix_of_markup_gives_what_the_parser_gives(html):
    assert _read_fast(html) == _read_by_parser(html)


def test_no_other_character_lowers_to_what_find_urls_looks_for():
    """find_urls finds "http" and "www." in the lower-case text: no character but the ASCII
    letters lowers to, or matches ignoring case, one of their characters."""
    ignoring_case = re.compile(r"[htpw.]", re.IGNORECASE)
    for code in range(128, sys.maxunicode + 1):
        char = chr(code)
        assert not any(c in "htpw." for c in char.lower()), hex(code)
        assert ignoring_case.match(char) is None, hex(code)


_URL_PIECES = st.sampled_from(
    ["http", "HTTP", "://", "www.", "WwW.", "x", "_", " ", "\xa0", "\u0130", "\u212a", "\u017f"]
    + ["\u00e9", "\u1e9e", "\u03a3", "\U0001d400", "/", "."]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_URL_PIECES, max_size=40).map("".join))
def test_find_urls_in_non_ascii_text_finds_what_the_regular_expression_finds(text):
    assert find_urls(text) == [m.group(0) for m in _URL.finditer(text)]


def _raw_fields_by_regex(header: bytes) -> list[tuple[str, str]]:
    """The obvious form of ``_raw_fields``, octet by octet."""
    fields: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n", header):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip().decode("latin-1"))
            continue
        name, colon, value = line.partition(b":")
        if colon and name and b" " not in name.strip():
            fields.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    return fields


HEADER_EDGES = [
    b"From: a@example.org\r\nSubject: plain\r\n\r\n",
    b"Subject: x\n\n",  # bare LF
    b"Subject: a\rb\r\nTo: c\r\n\r\n",  # a bare CR ends a line for the MIME parser
    b"Subject: a\r\r\n\r\n",
    b"Subject: folded\r\n  over\r\n\tthree lines\r\n\r\n",
    b" continues nothing\r\nSubject: x\r\n\r\n",
    b"From sender@example.org Mon Jan  1 00:00:00 2001\r\nSubject: x\r\n\r\n",
    b"Subject: x\r\nFrom misplaced\r\n\r\n",
    b"From: a\r\nbroken line\r\nSubject: x\r\n\r\n",
    b": no name\r\nSubject: x\r\n\r\n",
    b"Subject: \xff\xfe 8-bit\r\nX-\xe9: 8-bit name\r\n\r\n",
    b"Subject: =?utf-8?q?caf=C3=A9?= and =?bogus?b?AAAA?=\r\n\r\n",
    b"Subject: NUL \x00 inside\r\n\r\n",
    b"Subject: \x0b\x0c\x1c odd white space \x85\xa0\r\n\r\n",
    b"Subject: only header",
    b"Subject: no blank line\r\n",
    b"\r\n\r\n",
    b"",
    b"Name With Space: x\r\nX:\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n",
    b"Content-Type: text/plain; charset=" + b"x" * (FIELD_CAP + 10) + b"\r\n\r\n",
    b"".join(b"X-%d: %s\r\n" % (n, b"v" * 200) for n in range(300)) + b"\r\n",  # 60 KiB
]


@pytest.mark.parametrize("header", HEADER_EDGES)
def test_raw_fields_are_those_of_the_obvious_form(header):
    assert _raw_fields(header) == _raw_fields_by_regex(header)


def _model(message) -> tuple[object, ...]:
    """What sample.py reads of a message: its Content-* fields, payloads, parts."""
    payload = message.get_payload()
    return (
        [(k, v) for k, v in message.raw_items() if k.lower().startswith("content-")],
        message.get_default_type(),
        [_model(part) for part in payload] if message.is_multipart() else payload,
    )


MULTIPART_BODIES = [
    b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepilogue",
    b"preamble\n--b\nContent-Type: text/html\n\n<p>x</p>\n\n--b \t\n\n\n--b--",
    b"--b\r\n\r\none\r\n--b\r\n--b\r\n\r\ntwo\r\n--b--\r\n",  # two boundary lines
    b"--b\r\n\r\none\r\n--b--x\r\n--bx\r\n-- b\r\n--b--\r\n",  # not boundaries
    b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--",
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n--b--\r\n",
    b"--b\r\nno blank line\r\n--b--\r\n",
    b"--b\r\nContent-Type: text/plain\r\nbody without a blank line\r\n\r\nx\r\n--b--\r\n",
    b"--b\r\n\r\nno close\r\n",
    b"--b--\r\nclosed before a part\r\n",
    b"no boundary at all\r\n",
    b"--b\r\n\r\nlone\rCR\r\n--b--\r\n",
    b"--b\r\n\r\n8-bit \xff and NUL \x00\r\n--b--",
]


@pytest.mark.parametrize("body", MULTIPART_BODIES)
@pytest.mark.parametrize(
    "content_type",
    [
        b"multipart/mixed; boundary=b",
        b'multipart/alternative; boundary="b"',
        b"multipart/digest; boundary=b",
    ]
    + [b"multipart/mixed", b"multipart/mixed; boundary=b; charset=x"],
)
def test_a_multipart_message_is_built_as_the_mime_parser_builds_it(content_type, body):
    header = b"Subject: x\r\nContent-Type: " + content_type + b"\r\n\r\n"
    built = _plain_message(header, body, _raw_fields(header))
    if built is not None:
        assert _model(built) == _model(_parsed(header, body, _raw_fields(header)))


def test_a_plain_multipart_message_is_built_without_the_parser():
    header = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    built = _plain_message(header, MULTIPART_BODIES[0], _raw_fields(header))
    assert built is not None and len(built.get_payload()) == 2


@pytest.mark.parametrize("header", HEADER_EDGES)
def test_a_one_part_message_is_built_as_the_mime_parser_builds_it(header):
    body = b"line one\r\nline \xff two\r\n"
    built = _plain_message(header, body, _raw_fields(header))
    parsed = _parsed(header, body, _raw_fields(header))
    if built is not None:
        assert _model(built) == _model(parsed)


def test_a_plain_header_section_is_built_without_the_parser():
    for header in (b"Subject: x\r\n  folded\r\nContent-Type: text/plain\r\n\r\n", b"S: \xff\n\n"):
        assert _plain_message(header, b"body", _raw_fields(header)) is not None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"Subject: x", b"To: a", b"X-\xff: y", b" cont", b"\t", b"From x", b":", b"a b: c"]
            + [b"\r\n", b"\n", b"\r", b"\x00", b"\xa0", b"=?utf-8?q?a?=", b"Content-Type: "]
            + [b"multipart/mixed; boundary=q", b"text/html; charset=utf-8"]
        ),
        max_size=12,
    ).map(b"".join)
)
def test_any_header_section_is_split_and_built_as_the_general_path_does(header):
    header, body, _truncated = read_capped(io.BytesIO(header + b"\r\n\r\nbody\r\n"))
    assert _raw_fields(header) == _raw_fields_by_regex(header)
    built = _plain_message(header, body, _raw_fields(header))
    if built is not None:
        assert _model(built) == _model(_parsed(header, body, _raw_fields(header)))


CONTENT_EDGES = [
    None,
    "text/plain",
    "TEXT/HTML; CHARSET=UTF-8",
    'text/plain; charset="us-ascii"; format=flowed',
    "text/plain;\r\n\tcharset=iso-8859-1",
    "text/plain; charset=",
    'text/plain; charset=""',
    "text/plain; charset=a; charset=b",  # the first wins
    "text/plain; name=x.txt; charset=x",
    'application/octet-stream; name="my file.pdf"',
    'application/octet-stream; name=" padded "',
    'text/plain; name="<angle>"',
    "text/plain; name*=utf-8''%E2%82%AC",  # RFC 2231
    "text/plain; name*0=a; name*1=b",
    'text/plain; charset="a\\"b"',
    'text/plain; charset="a;b"',
    "text/plain; charset=a;",
    "charset=x",
    "name",
    "text",
    "text/plain/x",
    "text/plain (comment)",
    "text/plain; charset=\u00e9",
    "text/plain; charset=a=b",
    "text/plain; \x0bcharset=a",
]
DISPOSITION_EDGES = [
    None,
    "inline",
    "attachment",
    'ATTACHMENT; filename="a.exe"',
    "attachment; filename=",
    "attachment; filename=b.zip; filename=c.zip",
    "filename",
    "inline; filename*=utf-8''x",
    'attachment; filename="=?utf-8?q?caf=C3=A9?="',
]


def _part(content_type: str | None, disposition: str | None):
    fields = ""
    if content_type is not None:
        fields += f"Content-Type: {content_type}\r\n"
    if disposition is not None:
        fields += f"Content-Disposition: {disposition}\r\n"
    message = (fields + "\r\nbody\r\n").encode("utf-8")
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(message)


@pytest.mark.parametrize("content_type", CONTENT_EDGES)
@pytest.mark.parametrize("disposition", DISPOSITION_EDGES)
def test_plain_content_fields_are_what_the_message_methods_say(content_type, disposition):
    part = _part(content_type, disposition)
    fast = _plain_content_fields(part)
    if fast is not None:
        assert fast == (
            part.get_content_type(),
            part.get_filename(),
            (part.get("Content-Disposition") or "").lower(),
            part.get_content_charset(),
        )


def test_the_usual_content_fields_are_read_without_the_message_methods():
    assert _plain_content_fields(_part("text/plain; charset=us-ascii", None)) == (
        "text/plain",
        None,
        "",
        "us-ascii",
    )
    assert _plain_content_fields(_part("text/plain", 'attachment; filename="a b"')) is not None
