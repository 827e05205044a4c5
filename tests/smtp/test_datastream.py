"""The DATA reader against a plain reference: the same message, the same leftover bytes and the
same bare-newline verdict however the client's bytes are split into chunks."""

from __future__ import annotations

import random

import pytest

from txmailhost.smtp.datastream import DataReader


def reference(stream: bytes) -> tuple[bytes, bytes, bool] | None:
    """(message, bytes after the end marker, bare CR/LF seen) by the book, or None if the
    stream has no end marker yet."""
    end = (b"\r\n" + stream).find(b"\r\n.\r\n")
    if end < 0:
        return None
    text, rest = stream[:end], stream[end + 3 :]
    lines = text.split(b"\r\n")[:-1]  # the text ends with the CRLF before the dot
    unstuffed = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)
    bare = unstuffed.count(b"\n") != unstuffed.count(b"\r\n") or unstuffed.count(
        b"\r"
    ) != unstuffed.count(b"\r\n")
    return unstuffed, rest, bare


def read(stream: bytes, sizes: list[int]) -> tuple[bytes, bytes, bool] | None:
    out: list[bytes] = []
    reader = DataReader(out.append, max_size=10**9)
    pos = 0
    for size in sizes:
        rest = reader.feed(stream[pos : pos + size])
        pos += size
        if rest is not None:
            return b"".join(out), rest + stream[pos:], reader.bare_newline
    return None


_PIECES = [b"a", b"hello world", b".", b"..", b"\r\n", b"\r", b"\n", b".\r\n", b"\r\n.\r\n", b" "]


@pytest.mark.parametrize("seed", range(300))
def test_any_split_reads_what_the_reference_reads(seed):
    rng = random.Random(seed)
    stream = b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))
    stream += rng.choice([b"\r\n.\r\n", b"\r\n.\r\nQUIT\r\n", b""])
    sizes, left = [], len(stream)
    while left > 0:
        sizes.append(rng.choice([1, 2, 3, 5, 8, 64, 4096]))
        left -= sizes[-1]
    expected = reference(stream)
    got = read(stream, sizes)
    if expected is None:
        assert got is None
    else:
        message, rest, bare = expected
        assert got is not None
        assert got[1] == rest
        assert got[2] == bare
        if not bare:
            assert got[0] == message


def test_a_plain_message_reaches_the_writer_in_one_piece():
    out: list[bytes] = []
    reader = DataReader(out.append, max_size=10**9)
    body = b"Subject: x\r\n\r\n" + b"line of text\r\n" * 300
    assert reader.feed(body + b".\r\n") == b""
    assert out == [body]
