"""The bounded, decoded sample every check reads."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.spam.sample import _URL, HEADER_CAP, find_urls, sample_of


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
