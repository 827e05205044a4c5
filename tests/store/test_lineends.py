"""The CRLF form of message files with bare-LF line ends (store/lineends.py).

Property tests by exhaustion: every text of up to eight octets over ``a``, CR and LF (9,841 of
them) covers every way line ends can mix, split and pile up, which is what the helpers are
about; random seeks and reads check the streaming view against the whole-text conversion.
"""

from __future__ import annotations

import io
import itertools
import os
import random

import pytest

from txmailhost.store import lineends

ALPHABET = b"a\r\n"
TEXTS = [bytes(t) for n in range(9) for t in itertools.product(ALPHABET, repeat=n)]


def reference(data: bytes) -> bytes:
    """The CRLF form, octet by octet: CR before every LF that has none; lone CR unchanged."""
    out = bytearray()
    for i, octet in enumerate(data):
        if octet == 10 and (i == 0 or data[i - 1] != 13):
            out += b"\r"
        out.append(octet)
    return bytes(out)


def test_crlf_form_adds_cr_before_bare_lf_only_and_keeps_lone_cr():
    for text in TEXTS:
        assert lineends.crlf_form(text) == reference(text), text


def test_crlf_form_of_a_crlf_text_is_the_same_object():
    text = b"Subject: x\r\n\r\nbody\r\n"
    assert lineends.crlf_form(text) is text


def test_crlf_form_has_no_bare_lf_and_is_stable():
    for text in TEXTS:
        form = lineends.crlf_form(text)
        assert lineends.bare_newlines(form) == 0
        assert lineends.crlf_form(form) == form


@pytest.mark.parametrize("split", [1, 2, 3, 5])
def test_chunks_converted_in_order_give_the_whole_form_and_its_size(split):
    for text in TEXTS:
        chunks = [text[i : i + split] for i in range(0, len(text), split)]
        converted, after_cr = [], False
        counter = lineends.SizeCounter()
        for chunk in chunks:
            converted.append(lineends.convert_chunk(chunk, after_cr))
            after_cr = chunk.endswith(b"\r")
            counter.feed(chunk)
        assert b"".join(converted) == reference(text), text
        assert counter.size == len(reference(text)), text


def test_crlf_size_of_a_file_counts_a_cr_lf_pair_split_across_reads():
    text = b"ab\r\ncd\n" * 3
    assert lineends.crlf_size(io.BytesIO(text), chunk_size=3) == len(reference(text))


def test_header_end_finds_the_blank_line_whatever_the_line_ends():
    cases = {
        b"A: 1\r\n\r\nbody": 8,
        b"A: 1\n\nbody": 6,
        b"A: 1\n\r\nbody": 7,  # an LF line, then a CRLF blank line
        b"A: 1\r\nB: 2\n\nbody\r\n\r\n": 12,  # the first blank line counts
        b"\nbody": 1,
        b"\r\nbody": 2,
        b"A: 1\r\nB: 2\r\n": -1,
        b"A: 1\r\rB\n": -1,  # a lone CR is not a line end
    }
    for text, end in cases.items():
        assert lineends.header_end(text) == end, text


def test_declared_size_reads_dovecots_w_field_before_the_flags():
    assert lineends.declared_size("1700000000.M1P2.host,S=100,W=104:2,S") == 104
    assert lineends.declared_size("1700000000.M1P2.host,W=7") == 7
    assert lineends.declared_size("1700000000.M1P2.host,S=100:2,S") is None
    assert lineends.declared_size("1700000000.M1P2.host,S=100:2,W=5") is None
    assert lineends.declared_size("1700000000.M1P2.host,W=12x") is None


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks and marks a few octets apart, so short texts cross many of them."""
    monkeypatch.setattr(lineends, "CHUNK", 4)
    monkeypatch.setattr(lineends, "MARK_EVERY", 8)


def opened(tmp_path, text: bytes | None) -> io.BufferedReader:
    """The CRLF view of a file holding ``text`` (``None``: the file as it is)."""
    path = tmp_path / "message"
    if text is not None:
        path.write_bytes(text)
    raw = open(path, "rb")  # noqa: SIM115 - the view closes it
    return lineends.open_crlf(raw, os.fstat(raw.fileno()))


def test_view_reads_the_crlf_form_of_a_file(tmp_path, small_chunks):
    rng = random.Random(13)
    for _ in range(200):
        text = bytes(rng.choice(ALPHABET) for _ in range(rng.randrange(60)))
        with opened(tmp_path, text) as view:
            assert view.read() == reference(text), text


def test_view_seeks_and_reads_at_any_crlf_offset(tmp_path, small_chunks):
    rng = random.Random(7)
    text = bytes(rng.choice(b"ab\r\n\n") for _ in range(400))
    form = reference(text)
    with opened(tmp_path, text) as view:
        for _ in range(3000):
            origin, count = rng.randrange(len(form) + 4), rng.randrange(30)
            assert view.seek(origin) == min(origin, len(form))
            assert view.read(count) == form[origin : origin + count], (origin, count)


def test_view_readline_splits_at_the_added_crs(tmp_path):
    with opened(tmp_path, b"From: a\nSubject: b\n\nbody\n") as view:
        assert list(view) == [b"From: a\r\n", b"Subject: b\r\n", b"\r\n", b"body\r\n"]


def test_view_learns_marks_once_per_file_and_shares_them(tmp_path, small_chunks):
    text = b"line\n" * 100
    with opened(tmp_path, text) as first:
        marks = first.raw._marks
        assert marks.complete and len(marks.points) == len(text) // 8 + 1
    with opened(tmp_path, None) as second:
        assert second.raw._marks is marks
        second.seek(300)
        assert second.read(6) == reference(text)[300:306]


def test_header_end_is_the_first_blank_line_for_every_short_text():
    for text in TEXTS:
        lines = text.split(b"\n")
        expected, at = -1, 0
        for line in lines[:-1]:  # each line that has its LF
            at += len(line) + 1
            if line in (b"", b"\r"):
                expected = at
                break
        assert lineends.header_end(text) == expected, text
