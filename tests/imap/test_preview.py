"""FETCH PREVIEW (RFC 8970): which part gives the text, decoding, HTML reduced to text, the
256-character bound, and the FETCH syntax (``PREVIEW``, ``PREVIEW (LAZY)``) on every backend."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.imap.support import ALICE, Session, deliver, make_factory
from txmailhost.imap import mime
from txmailhost.imap.preview import MAX_CHARS, preview

MULTI = (
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe  aus\r\n\r\n  K=F6ln=\r\n!\r\n--a\r\n"
    b"Content-Type: text/html\r\n\r\n<p>html</p>\r\n--a--\r\n--b\r\n"
    b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached\r\n--b--\r\n"
)


def test_first_plain_part_decoded_and_whitespace_folded():
    assert preview(mime.parse(MULTI)) == "Grüße aus Köln!"


def test_html_only_is_reduced_to_text():
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>p {}</style>"
        b"</head><body><p>Caf&eacute;&nbsp;<b>open</b></p><script>x()</script></body></html>"
    )
    assert preview(mime.parse(raw)) == "Café\xa0open".replace("\xa0", " ")


def test_an_attachment_only_message_has_an_empty_preview():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: image/png\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--b--\r\n"
    )
    assert preview(mime.parse(raw)) == ""


@pytest.mark.parametrize("unclosed", ["<", "<style>", "<head ", "<!--"])
def test_html_that_never_closes_what_it_opens_is_previewed_in_linear_time(unclosed):
    """A complexity check, not a speed target: the preview's expressions searched from
    every unclosed opening to the end of the 64 KiB scanned (``<`` 40,000 times: seconds);
    ten times the markup now takes about ten times as long."""

    def seconds(count: int) -> float:
        raw = b"Content-Type: text/html\r\n\r\nhello " + unclosed.encode() * count
        part = mime.parse(raw)
        started = time.perf_counter()
        assert preview(part).startswith("hello")
        return time.perf_counter() - started

    small = min(seconds(1_000) for _ in range(3))
    large = min(seconds(10_000) for _ in range(3))
    assert large < 40 * small + 0.01, (small, large)


@given(st.text(max_size=600))
def test_preview_is_one_line_of_at_most_256_characters(text):
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode("utf-8", "replace")
    result = preview(mime.parse(raw))
    assert len(result) <= MAX_CHARS
    assert "\r" not in result and "\n" not in result


@pytest.fixture
def alice(world):
    s = Session(make_factory(world))
    assert b"PREVIEW" in s.login()
    deliver(world, ALICE, b"Subject: hi\r\n\r\nHello there,\r\nsee you.\r\n")
    deliver(world, ALICE, MULTI)
    s.cmd("b SELECT INBOX")
    yield s
    s.close()


def test_fetch_preview(alice):
    assert alice.cmd("c FETCH 1 (UID PREVIEW)") == (
        b'* 1 FETCH (UID 1 PREVIEW "Hello there, see you.")\r\nc OK FETCH completed\r\n'
    )


def test_fetch_preview_lazy_and_non_ascii_as_literal(alice):
    text = "Grüße aus Köln!".encode()
    assert alice.cmd("c UID FETCH 2 PREVIEW (LAZY)") == (
        b"* 2 FETCH (UID 2 PREVIEW {%d}\r\n%s)\r\nc OK FETCH completed\r\n" % (len(text), text)
    )


def test_fetch_preview_does_not_set_seen(alice):
    alice.cmd("c FETCH 1 PREVIEW")
    assert (
        alice.cmd("d FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS (\\Recent))\r\nd OK FETCH completed\r\n"
    )


def test_unknown_preview_modifier_is_bad(alice):
    assert alice.cmd("c FETCH 1 (PREVIEW (EAGER))").startswith(b"c BAD ")
