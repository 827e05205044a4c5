"""The bounded, decoded sample every check reads."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.spam.sample import (
    _URL,
    HEADER_CAP,
    find_urls,
    read_capped,
    sample_of,
    sample_of_bytes,
)


class CountingStream(io.BytesIO):
    """Counts the octets read, to show a large message is not read whole."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def test_a_50_mib_message_costs_a_bounded_read():
    body = b"x" * 78 + b"\r\n"
    stream = CountingStream(b"Subject: big\r\n\r\n" + body * (50 * 1024 * 1024 // 80))
    sample = sample_of(stream, body_cap=256 * 1024)
    assert sample.truncated
    assert stream.taken < HEADER_CAP + 256 * 1024 + 32 * 1024


def test_a_header_section_without_end_is_capped():
    stream = CountingStream(b"X-Long: " + b"a" * (10 * 1024 * 1024))
    sample_of(stream)
    assert stream.taken < HEADER_CAP + 32 * 1024


def test_encoded_words_quoted_printable_and_charsets_are_decoded():
    message = (
        b"Subject: =?iso-8859-1?q?caf=E9?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"cr=E8me br=FBl=E9e\r\n"
    )
    sample = sample_of(io.BytesIO(message))
    assert sample.header("subject") == "café"
    assert "crème brûlée" in sample.text
    assert "iso-8859-1" in sample.charsets


@pytest.mark.parametrize(
    "content_type",
    [b"TEXT/PLAIN charset=US-ASCII", b"text/plain charset=us-ascii; format=flowed", b"text"],
)
def test_a_syntactically_invalid_content_type_is_read_as_plain_text(content_type):
    """RFC 2045 5.2, as mail readers do: the text is scored, not skipped as an unknown type
    (the standard library keeps "text/plain charset=us-ascii", a value with one "/")."""
    message = b"MIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n\r\nBuy cheap pills\r\n"
    sample = sample_of(io.BytesIO(message))
    assert sample.content_types == ["text/plain"]
    assert "Buy cheap pills" in sample.text


def test_a_multipart_whose_boundary_never_comes_is_read_as_text():
    """Seen in spam: the boundary parameter and the delimiter lines differ ("=X" and "= X");
    the parser finds no part, and the body's words are still scored."""
    message = (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="=Multipart 07"\r\n'
        b"\r\nThis is a multipart MIME message.\r\n\r\n--= Multipart 07\r\n"
        b"Content-Type: text/plain\r\n\r\nNEED A PROFESSIONAL LOOKING WEBSITE?\r\n--= Multipart 07--\r\n"
    )
    sample = sample_of(io.BytesIO(message))
    assert sample.content_types == ["multipart/alternative"]
    assert "NEED A PROFESSIONAL LOOKING WEBSITE?" in sample.text


def test_html_becomes_text_with_links_and_hidden_parts_apart():
    message = (
        b"Content-Type: text/html\r\n\r\n<html><style>p{}</style><script>var x</script>"
        b'<p>Visible <a href="http://a.example/x">here</a></p>'
        b'<span style="font-size:0px">secret words</span></html>'
    )
    sample = sample_of(io.BytesIO(message))
    assert "Visible here" in sample.text and "var x" not in sample.text
    assert sample.hidden_text == "secret words"
    assert [(link.href, link.text) for link in sample.links] == [("http://a.example/x", "here")]


def test_the_digest_ignores_what_servers_add_on_the_way():
    message = b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"
    traced = b"Return-Path: <a@b.example>\r\nReceived: from x by y\r\nX-Spam-Score: 1.0\r\n"
    assert sample_of(io.BytesIO(message)).digest == sample_of(io.BytesIO(traced + message)).digest
    assert sample_of(io.BytesIO(message)).digest != sample_of(io.BytesIO(message + b"!")).digest


_URL_PIECES = st.sampled_from(
    ["http", "HTTP", "https", "://", "www.", "WwW.", "x", "_", "é", " ", "\n", "<", "/", ".", "a1"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_URL_PIECES, max_size=40).map("".join))
def test_find_urls_finds_what_the_regular_expression_finds(text):
    assert find_urls(text) == [m.group(0) for m in _URL.finditer(text)]


def test_find_urls_examples():
    text = "see https://Example.com/x and WWW.foo.org/bar, xhttp://no http://a.b_www.c"
    assert find_urls(text) == ["https://Example.com/x", "WWW.foo.org/bar,", "http://a.b_www.c"]


@pytest.mark.parametrize(
    "message",
    [
        b"From: a@example.org\r\nSubject: plain\r\n\r\nline one\r\nline two\r\n",
        b"From: a\r\nbroken line\r\nSubject: x\r\n\r\nbody\r\n",  # ends the fields early
        b"\r\n\r\nno fields at all\r\n",
        b"Subject: x\n\nbare LF line ends\n",
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aGVsbG8gd29ybGQ=\r\n",
        b"Subject: \xff 8-bit\r\n\r\n\xff\xfe body\r\n",
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nhi\r\n--zz--\r\n",
    ],
)
def test_a_one_part_message_reads_as_the_full_parse_does(message):
    """One-part messages skip the MIME parser's pass over the body (its payload is the body
    as is); what the sample holds is what the full parse gives."""
    import email.parser
    import email.policy

    header, body, truncated = read_capped(io.BytesIO(message))
    full = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)

    def text(octets: bytes) -> str:  # undeclared 8-bit: UTF-8 when it is, else Latin-1
        try:
            return octets.decode("utf-8")
        except UnicodeDecodeError:
            return octets.decode("latin-1")

    texts = [text(part.get_payload(decode=True)) for part in full.walk() if not part.is_multipart()]
    sample = sample_of_bytes(header, body, truncated)
    assert [t.strip() for t in sample.text.split("\n") if t.strip()] == [
        line.strip() for t in texts for line in t.split("\n") if line.strip()
    ]


def _nested(levels: int) -> bytes:
    head = b"From: a@b.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nclick here now\r\n" + closing


def test_mime_nested_deeper_than_the_parser_goes_is_read_as_text():
    """1,500 levels made the standard library's parser raise RecursionError: the spam check
    failed, a 451 the sender's server would retry for days. The body is read as text."""
    sample = sample_of(io.BytesIO(_nested(1500)))
    assert "click here now" in sample.text
    assert "click here now" in sample_of(io.BytesIO(_nested(50))).text


def test_a_long_header_section_hides_neither_its_fields_nor_the_body():
    """Padding the header past what was read (64 KiB) once hid the Subject, the From and the
    whole body from every check; all of what SMTP takes (1 MiB) is read now."""
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 90) for n in range(3200))
    message = pad + b"From: deals@spam.test\r\nSubject: cheap pills\r\n\r\nbuy cheap pills now\r\n"
    sample = sample_of(io.BytesIO(message))
    assert sample.header("subject") == "cheap pills" and not sample.truncated
    assert "buy cheap pills now" in sample.text
