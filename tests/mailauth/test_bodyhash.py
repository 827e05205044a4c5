"""Streamed DKIM body hashes equal dkimpy's, whatever the body and the chunking."""

from __future__ import annotations

import hashlib
import io

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
    body = b"".join(line + b"\r\n" for line in lines)
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
