"""Streamed DKIM body hashes equal dkimpy's, whatever the body and the chunking."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.mailauth import bodyhash
from txmailhost.mailauth.bodyhash import BodySpec, body_hashes, split_header

SPECS = {
    BodySpec("relaxed", "sha256"),
    BodySpec("simple", "sha256"),
    BodySpec("relaxed", "sha1"),
    BodySpec("simple", "sha256", 7),
    BodySpec("relaxed", "sha256", 0),
}


def _dkimpy(body: bytes, spec: BodySpec) -> bytes:
    canon = (Relaxed if spec.canonicalization == "relaxed" else Simple).canonicalize_body(body)
    if spec.length is not None:
        canon = canon[: spec.length]
    return hashlib.new(spec.hash_name, canon).digest()


LINE = st.lists(
    st.sampled_from([b"a", b"b c", b" ", b"\t", b"  x  ", b"", b"long" * 20, b"  \t  " * 9]),
    max_size=8,
).map(b"".join)


@given(lines=st.lists(LINE, max_size=20), chunk=st.integers(1, 9))
@settings(max_examples=300, deadline=None)
def test_streamed_body_hash_equals_dkimpy(lines, chunk):
    _hashes_as_dkimpy(b"".join(line + b"\r\n" for line in lines), chunk)


def _hashes_as_dkimpy(body: bytes, chunk: int) -> None:
    """Hashed in ``chunk``-octet reads (Hypothesis can't use monkeypatch), as dkimpy does."""
    old = bodyhash.CHUNK
    bodyhash.CHUNK = chunk
    try:
        got = body_hashes(b"", io.BytesIO(body), SPECS)
    finally:
        bodyhash.CHUNK = old
    for spec in SPECS:
        assert got[spec] == _dkimpy(body, spec), (spec, body)


def test_empty_body_hashes_as_rfc_6376_says():
    got = body_hashes(b"", io.BytesIO(b""), SPECS)
    # RFC 6376 3.4.3/3.4.4: simple -> one CRLF; relaxed -> nothing.
    assert got[BodySpec("simple", "sha256")] == hashlib.sha256(b"\r\n").digest()
    assert got[BodySpec("relaxed", "sha256")] == hashlib.sha256(b"").digest()


def test_split_header_keeps_the_start_of_the_body():
    stream = io.BytesIO(b"From: a@b\r\nSubject: x\r\n\r\nbody line\r\n")
    header, first = split_header(stream)
    assert header == b"From: a@b\r\nSubject: x\r\n\r\n"
    assert first + stream.read() == b"body line\r\n"


def test_split_header_of_a_large_message_reads_little_more_than_its_header():
    """Mail authentication reads a spilled message's header section in a pool thread: with
    256 KiB reads, every large message cost half a MiB there (the read, then the copy of the
    body's start), kept afterwards in that thread's malloc arena. Now 16 KiB at a time."""
    header = b"From: a@sender.test\r\nSubject: big\r\n\r\n"
    stream = io.BytesIO(header + b"y" * 998 + b"\r\n" + b"z" * (1 << 20))
    tracemalloc.start()
    try:
        found, first = split_header(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == header
    assert first == (b"y" * 998 + b"\r\n" + b"z" * (1 << 20))[: len(first)]
    assert peak < 128 * 1024, peak


@given(
    before=st.integers(0, 128 * 1024),  # the first few reads, whatever their size
    end=st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n\n"]),
    body=st.binary(max_size=40),
)
@settings(max_examples=200)
def test_split_header_finds_the_end_wherever_the_reads_cut_it(before, end, body):
    """Each read is searched once, from three octets before it (an end cut by a read)."""
    header = b"X: " + b"a" * before
    message = header + end + body
    whole = message.find(b"\r\n\r\n"), message.find(b"\n\n")
    expected = min(i + (4 if n == 0 else 2) for n, i in enumerate(whole) if i >= 0)
    stream = io.BytesIO(message)
    found, first = split_header(stream)
    assert found == message[:expected]
    assert first + stream.read() == message[expected:]


BLANKS = st.lists(
    st.sampled_from([b" " * 50, b"\t \t" * 20, b"x", b"y z", b"", b" "]), max_size=6
).map(b"".join)


@given(lines=st.lists(BLANKS, max_size=8), chunk=st.integers(1, 9), ended=st.booleans())
@settings(max_examples=300, deadline=None)
def test_long_runs_of_white_space_hash_as_dkimpy_hashes_them(lines, chunk, ended):
    # Runs longer than 4 chunks with no line end in sight are hashed before the line ends;
    # a last line without its CRLF (not in SMTP, where the body ends in one) counts as a line.
    _hashes_as_dkimpy(b"\r\n".join(lines) + (b"\r\n" if ended else b"x"), chunk)


def test_a_huge_line_of_white_space_is_hashed_in_flat_memory():
    # It was kept whole, each chunk copying all of it again: 45 MiB took 226 MiB and 14 s.
    body = b"a" + b" \t" * (3 << 20) + b"b" + b" " * (6 << 20) + b"\r\nend\r\n"
    specs = {BodySpec("relaxed", "sha256"), BodySpec("simple", "sha256")}
    tracemalloc.start()
    try:
        got = body_hashes(b"", io.BytesIO(body), specs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * bodyhash.CHUNK * 4, peak  # a few chunks, not the 12 MiB line
    # (dkimpy's own regular expressions take minutes on such a line: written out here)
    assert got[BodySpec("simple", "sha256")] == hashlib.sha256(body).digest()
    assert got[BodySpec("relaxed", "sha256")] == hashlib.sha256(b"a b\r\nend\r\n").digest()
