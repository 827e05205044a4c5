"""Content-Transfer-Encoding for BINARY (imap/binary.py): decoding as RFC 2045 says (and as
sloppy mail needs), and APPEND's re-encoding of binary parts as base64 that decodes back to
the same octets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost.imap import binary, mime


def part(cte: bytes, body: bytes) -> mime.Part:
    return mime.parse(b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


@pytest.mark.parametrize(
    ("cte", "body", "expected"),
    [
        (b"base64", b"aGVsbG8=", b"hello"),
        (b"BASE64 (comment)", b" aGVs\r\n bG8 \t\r\n", b"hello"),  # spaces, no padding
        (b"base64", b"aGVsbG8gd29ybGQ", b"hello world"),
        (b"quoted-printable", b"a=3Db  \r\nsoft=\r\nbreak= \r\n", b"a=b\r\nsoftbreak"),
        (b"quoted-printable", b"bad=zz=\r\n", b"bad=zz"),
        (b"7bit", b"as is\r\n", b"as is\r\n"),
        (b"binary", b"\x00\xff", b"\x00\xff"),
    ],
)
def test_decoded(cte, body, expected):
    assert binary.decoded(part(cte, body)) == expected


def test_an_unknown_encoding_is_unknown_cte():
    with pytest.raises(binary.UnknownCTE):
        binary.decoded(part(b"x-uuencode", b"begin 644 x\r\n"))


def test_base64_parts_leaves_a_seven_bit_message_alone():
    raw = b"Subject: x\r\n\r\nplain\r\n"
    assert binary.base64_parts(raw) is raw


@given(st.binary(max_size=300), st.binary(max_size=100))
def test_base64_parts_round_trips_binary_parts(first, second):
    raw = (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + first + b"\r\n--zz\r\n"
        b"Content-Type: text/plain\r\n\r\nA\x00" + second + b"\r\n--zz--\r\n"
    )
    if b"--zz" in first or b"--zz" in second or b"\r\n\r\n" in first:
        return  # would change the structure itself, not just the parts' contents
    converted = binary.base64_parts(raw)
    assert b"\x00" not in converted
    root = mime.parse(converted)
    assert binary.decoded(mime.find_part(root, [1])) == first
    assert binary.decoded(mime.find_part(root, [2])) == b"A\x00" + second
