"""Reading an mbox file (``ops/mbox.py``, ``ops/mbox_tree.py``): where messages start and end,
what a Content-Length may do, what is taken out, and that memory stays bounded."""

from __future__ import annotations

import calendar
import io
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txmailhost.ops.mbox import PIECE, MboxError, messages, parse_from_line, scan
from txmailhost.ops.mbox_tree import read_folder
from txmailhost.ops.sourcefiles import SourceFileError

# What Postfix's local(8) appends: its From line, Return-Path and Delivered-To, the message
# with its "From " lines quoted mboxo-style, an empty line.
POSTFIX = (
    b"From alice@example.org  Sat Dec  5 09:30:01 2026\n"
    b"Return-Path: <alice@example.org>\n"
    b"X-Original-To: carol@audit.test\n"
    b"Delivered-To: carol@audit.test\n"
    b"Subject: quoting\n"
    b"\n"
    b">From the start, this line began with From.\n"
    b">>From a line that began >From stays so.\n"
    b"\n"
    b"last line\n"
    b"\n"
    b"From MAILER-DAEMON  Sat Dec  5 09:31:00 2026\n"
    b"Subject: two\n"
    b"\n"
    b"second\n"
    b"\n"
)


def bodies(path: Path, unquote: str | None = None) -> list[bytes]:
    return [m.source.read() for m in read_folder(str(path), unquote).messages]


def test_postfix_mbox_messages_are_read_as_written_with_quoted_from_lines_kept(
    tmp_path: Path,
) -> None:
    """Dovecot served ``>From`` as it is: the bytes under a kept UID must not change."""
    (tmp_path / "inbox").write_bytes(POSTFIX)
    assert bodies(tmp_path / "inbox") == [
        POSTFIX[POSTFIX.index(b"Return-Path") : POSTFIX.index(b"last line\n") + 10],
        b"Subject: two\n\nsecond\n",
    ]


@pytest.mark.parametrize(
    ("unquote", "lines"),
    [
        ("mboxo", b"From the start, this line began with From.\n>>From a line"),
        ("mboxrd", b"From the start, this line began with From.\n>From a line"),
    ],
)
def test_unquoting_takes_one_quote_off_as_asked(tmp_path: Path, unquote: str, lines: bytes) -> None:
    (tmp_path / "inbox").write_bytes(POSTFIX)
    first = bodies(tmp_path / "inbox", unquote)[0]
    assert lines in first
    assert b"Subject: quoting\n" in first  # the header is never unquoted


def test_from_lines_dovecot_left_unquoted_stay_in_their_message(tmp_path: Path) -> None:
    """Dovecot writes a body's From lines as they are and a Content-Length: a line of text
    (no date) is never a separator; a dated one is kept inside by Dovecot's Content-Length."""
    body = b"From here on\n\nFrom x@y Sun Dec 06 18:12:21 2026\n>From y\nend\n"
    mbox = (
        b"From a@b  Sun Dec 06 18:12:21 2026\n"
        b"Subject: one\nX-IMAPbase: 1796580741 0000000002\nX-UID: 1\nStatus: \n"
        b"X-Keywords:          \nContent-Length: %d\n\n%s\n"
        b"From a@b  Sun Dec 06 18:12:22 2026\nSubject: two\nX-UID: 2\nContent-Length: 2\n\nx\n\n"
    ) % (len(body), body)
    (tmp_path / "inbox").write_bytes(mbox)
    folder = read_folder(str(tmp_path / "inbox"))
    assert [m.uid for m in folder.messages] == [1, 2]
    assert [m.source.read() for m in folder.messages] == [
        b"Subject: one\n\n" + body,
        b"Subject: two\n\nx\n",
    ]
    assert folder.notes == []


def test_a_senders_content_length_can_neither_hide_nor_merge_messages(tmp_path: Path) -> None:
    """Postfix keeps the sender's Content-Length. One that ends exactly at the end of the
    message after it would have made that message part of the sender's body (hidden)."""
    victim = b"From bank@example.org  Sat Dec  5 09:31:00 2026\nSubject: victim\n\nreset\n"
    hostile_body = b"hi\n"
    span = len(hostile_body) + 1 + len(victim)  # to the end of the victim's text
    mbox = (
        b"From mallory@example.net  Sat Dec  5 09:30:00 2026\n"
        b"Subject: hostile\nContent-Length: %d\n\n%s\n%s\n"
        b"From mallory@example.net  Sat Dec  5 09:32:00 2026\n"
        b"Subject: later\nContent-Length: 99999999999\n\nx\n\n"
    ) % (span, hostile_body, victim)
    (tmp_path / "inbox").write_bytes(mbox)
    folder = read_folder(str(tmp_path / "inbox"))
    assert [m.source.read() for m in folder.messages] == [
        b"Subject: hostile\n\nhi\n",
        b"Subject: victim\n\nreset\n",
        b"Subject: later\n\nx\n",
    ]
    assert folder.notes == [
        f"{tmp_path / 'inbox'}: the Content-Length of the message at octet 0 would take in "
        "1 message(s) after it: read as separate messages"
    ]


def test_a_from_line_hidden_in_a_dovecot_message_does_not_become_a_message(tmp_path: Path) -> None:
    """The other way round: a sender's body with a dated From line and a header of its own,
    saved by Dovecot (its Content-Length, its X-UID), stays the one message Dovecot showed."""
    body = b"look:\n\nFrom bank@example.org Sat Dec  5 09:31:00 2026\nSubject: fake\n\nx\n"
    mbox = (
        b"From mallory@example.net  Sat Dec  5 09:30:00 2026\nSubject: real\n"
        b"X-IMAPbase: 1700000000 0000000001\nX-UID: 1\nContent-Length: %d\n\n%s\n"
    ) % (len(body), body)
    (tmp_path / "inbox").write_bytes(mbox)
    [message] = read_folder(str(tmp_path / "inbox")).messages
    assert message.source.read() == b"Subject: real\n\n" + body


def test_metadata_headers_are_taken_out_folded_ones_whole(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_bytes(
        b"From a@b  Sat Dec  5 09:30:00 2026\n"
        b"X-IMAPbase: 1700000000 0000000009 $Important\n  Customer\n"
        b"Subject: s\nX-UID: 7\nStatus: RO\nX-Status: AFTD\n"
        b"X-Keywords: $Important Customer\nContent-Length: 5\nX-Other: kept\n\nbody\n\n"
    )
    [message] = read_folder(str(tmp_path / "inbox")).messages
    assert message.source.read() == b"Subject: s\nX-Other: kept\n\nbody\n"
    assert message.uid == 7
    assert sorted(message.flags) == sorted(
        ["$Important", "Customer", "\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"]
    )


@pytest.mark.parametrize(
    ("line", "when"),
    [
        (b"From a@b  Sat Dec  5 09:30:01 2026", (2026, 12, 5, 9, 30, 1)),
        (b"From a@b Sat Dec 05 09:30:01 2026", (2026, 12, 5, 9, 30, 1)),
        (b"From a@b Sat Dec  5 09:30 2026", (2026, 12, 5, 9, 30, 0)),
        (b"From a@b Sat Dec  5 09:30:01 98", (1998, 12, 5, 9, 30, 1)),
        (b"From a@b Sat Dec  5 09:30:01 EST 2026", (2026, 12, 5, 9, 30, 1)),
        (b'From "a b"@c Sat Dec  5 09:30:01 2026 remote from x', None),
        (b"From  Sat Dec  5 09:30:01 2026", (2026, 12, 5, 9, 30, 1)),
    ],
)
def test_from_line_dates_in_local_time(
    line: bytes, when: tuple | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        ok, date = parse_from_line(line)
        if when is None:
            assert (ok, date) == (False, None)
        else:
            assert ok and date == calendar.timegm(when) - 3600  # CET: UTC+1
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_from_line_dates_with_a_zone_are_read_in_it() -> None:
    assert parse_from_line(b"From a@b Sat Dec  5 09:30:01 2026 +0200")[1] == calendar.timegm(
        (2026, 12, 5, 7, 30, 1)
    )
    assert parse_from_line(b"From a@b Sat Dec  5 09:30:01 UTC 2026")[1] == calendar.timegm(
        (2026, 12, 5, 9, 30, 1)
    )
    assert parse_from_line(b"From the desk of Bob") == (False, None)
    assert parse_from_line(b"From a@b Sat Dec 45 09:30:01 2026") == (False, None)


@pytest.mark.parametrize(
    "content",
    [b"Subject: no From line\n\nx\n", b"\x00\x01\x02binary\xff" * 100, b"\nFrom a@b Sat..."],
)
def test_a_file_that_is_no_mbox_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "notes").write_bytes(content)
    with pytest.raises(MboxError, match=rf"^{tmp_path}/notes: not an mbox \(its first line"):
        read_folder(str(tmp_path / "notes"))


def test_an_empty_file_is_an_empty_mailbox(tmp_path: Path) -> None:
    (tmp_path / "Empty").write_bytes(b"")
    assert read_folder(str(tmp_path / "Empty")).messages == []


def test_nul_octets_and_crlf_line_ends_are_kept(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_bytes(
        b"From a@b Sat Dec  5 09:30:01 2026\r\nSubject: a\r\nX-UID: 1\r\n\r\n\x00bin\x00\r\n\r\n"
        b"From a@b Sat Dec  5 09:30:02 2026\r\nSubject: b\r\n\r\nb\r\n\r\n"
    )
    assert bodies(tmp_path / "inbox") == [
        b"Subject: a\r\n\r\n\x00bin\x00\r\n",
        b"Subject: b\r\n\r\nb\r\n",
    ]


def test_a_last_message_cut_short_is_kept_and_reported(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_bytes(POSTFIX + b"From a@b Sat Dec  5 09:40:00 2026\nSubject: cu")
    folder = read_folder(str(tmp_path / "inbox"))
    assert folder.messages[-1].source.read() == b"Subject: cu"
    assert folder.notes == [
        f"{tmp_path / 'inbox'}: the last message (at octet {len(POSTFIX)}) does not end with "
        "an empty line: it may have been cut short"
    ]


def test_a_file_rewritten_between_reading_and_copying_is_refused(tmp_path: Path) -> None:
    """Dovecot expunging meanwhile moves the messages: copying from the old offsets would
    have cut messages in the middle."""
    path = tmp_path / "inbox"
    path.write_bytes(POSTFIX)
    folder = read_folder(str(path))
    with open(path, "r+b") as f:  # the same file, its first message expunged
        rest = POSTFIX[POSTFIX.index(b"From MAILER") :]
        f.write(rest)
        f.truncate(len(rest))
    with pytest.raises(SourceFileError, match="changed while being read"):
        folder.messages[1].source.read()


def test_a_huge_mbox_is_read_in_bounded_pieces_never_whole(tmp_path: Path) -> None:
    """A multi-GiB /var/mail file must not be read into memory: each read asks for at most
    a piece (a line of 32 MiB without a line end too), scanning keeps the messages' offsets
    only, and a message is copied a chunk at a time."""
    big_line = b"x" * (32 << 20)
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.write(b"From a@b Sat Dec  5 09:30:01 2026\nSubject: long line\n\n" + big_line + b"\n\n")
        one = b"From a@b Sat Dec  5 09:30:02 2026\nSubject: s\n\n" + b"y" * 2000 + b"\n\n"
        f.write(one * 2000)
    reads: list[int] = []

    class Recording(io.FileIO):
        def readinto(self, buffer):  # type: ignore[no-untyped-def]
            reads.append(len(buffer))
            return super().readinto(buffer)

    tracemalloc.start()
    try:
        with io.BufferedReader(Recording(str(path)), buffer_size=PIECE) as f:
            found = messages(scan(f, str(path)), lambda block: False)
        scanning = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found) == 2001
    assert len(reads) > (36 << 20) // (2 * PIECE) and max(reads) <= 2 * PIECE
    assert scanning < 8 << 20  # the file is 36 MiB, its first message 32 MiB
    [first, *_rest] = read_folder(str(path)).messages
    tracemalloc.start()
    try:
        with first.source.open() as message:
            copied = sum(len(chunk) for chunk in iter(lambda: message.read(1 << 20), b""))
        copying = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert copied == len(b"Subject: long line\n\n") + len(big_line) + 1
    assert copying < 8 << 20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_any_octets_after_a_from_line_give_messages_or_mbox_error_only(
    tmp_path_factory: pytest.TempPathFactory, parts: list[bytes]
) -> None:
    """The parser raises only ``MboxError`` (or nothing), and every octet of the file is in
    a message, a From line, a hidden field or a separator line end."""
    path = tmp_path_factory.mktemp("h") / "box"
    content = b"From a@b Sat Dec  5 09:30:01 2026\n" + b"\n".join(parts)
    path.write_bytes(content)
    folder = read_folder(str(path))
    total = sum(len(m.source.read()) for m in folder.messages)
    assert total <= len(content)
    os.unlink(path)


def test_a_dated_from_line_right_after_text_starts_a_message_as_dovecot_reads_it(
    tmp_path: Path,
) -> None:
    """Dovecot's own rewrite of an mbox can leave a From line without the empty line before
    it; Dovecot reads a new message there, and so does the migration (and says so), rather
    than hiding that message inside the one before."""
    (tmp_path / "inbox").write_bytes(
        b"From a@b Sat Dec  5 09:30:01 2026\nSubject: a\n\nende\n"
        b"From a@b Sat Dec  5 09:30:02 2026\nSubject: b\n\nb\n\n"
    )
    folder = read_folder(str(tmp_path / "inbox"))
    assert [m.source.read() for m in folder.messages] == [
        b"Subject: a\n\nende",
        b"Subject: b\n\nb\n",
    ]
    assert folder.notes == [
        f"{tmp_path / 'inbox'}: the message at octet 0 is followed by a From line without an "
        "empty line between"
    ]


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=300))
def test_parse_from_line_never_raises(line: bytes) -> None:
    ok, date = parse_from_line(b"From " + line)
    assert isinstance(ok, bool) and (date is None or isinstance(date, float | int))
    assert ok or date is None


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=3000), st.booleans())
def test_scanning_any_octets_raises_only_mbox_error(content: bytes, as_mbox: bool) -> None:
    if as_mbox:
        content = b"From a@b Sat Dec  5 09:30:01 2026\n" + content.replace(b"F", b"\nFrom ")
    try:
        found = messages(scan(io.BytesIO(content), "x"), lambda block: True)
    except MboxError:
        assert not content.startswith(b"From ")
        return
    assert all(0 <= b.start < b.header <= b.body <= b.end <= len(content) or
               b.header == b.body == b.end for b in found)  # fmt: skip


_LINES = st.lists(st.binary(max_size=40).filter(lambda line: b"\n" not in line), max_size=8)


@settings(max_examples=200, deadline=2000)
@given(st.lists(_LINES, min_size=1, max_size=5))
def test_what_an_mboxrd_writer_writes_reads_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, bodies_lines: list[list[bytes]]
) -> None:
    """The printer round trip: quote ``>*From `` lines, add the From line and the empty line;
    read with ``mboxrd`` unquoting, every message comes back octet for octet."""
    originals = [b"Subject: s\n\n" + b"".join(line + b"\n" for line in lines)
                 for lines in bodies_lines]  # fmt: skip
    written = b"".join(
        b"From a@b Sat Dec  5 09:30:01 2026\n"
        + re.sub(rb"(?m)^(>*From )", rb">\1", message)
        + b"\n"
        for message in originals
    )
    path = tmp_path_factory.mktemp("rd") / "box"
    path.write_bytes(written)
    assert bodies(path, "mboxrd") == originals


def test_many_content_lengths_past_the_end_cost_a_search_each_not_a_walk(tmp_path: Path) -> None:
    """Each Content-Length was followed block by block to the file's end: 60,000 messages
    that each claim to run past it took minutes (quadratic). Run apart: a hang fails."""
    one = b"From a@b Sat Dec  5 09:30:01 2026\nX-UID: 1\nContent-Length: 99999999999\n\nx\n\n"
    (tmp_path / "inbox").write_bytes(one * 60000)
    code = (
        "import sys\nfrom txmailhost.ops.mbox_tree import read_folder\n"
        f"print(len(read_folder({str(tmp_path / 'inbox')!r}).messages))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout == b"60000\n", done.stderr


def test_a_file_full_of_oddities_gives_a_report_of_bounded_length(tmp_path: Path) -> None:
    """One line per bad keyword, per lying Content-Length: a crafted file of a million made a
    report of a million lines."""
    one = (b"From a@b Sat Dec  5 09:30:01 2026\nSubject: s\nX-Keywords: (a (b\n"
           b"Content-Length: %05d\n\nx\n\n")  # fmt: skip
    span = len(b"x\n") + 1 + len(one % 0) - 1  # to the end of the next message's text
    (tmp_path / "inbox").write_bytes((one % span) * 100 + one % 2)
    folder = read_folder(str(tmp_path / "inbox"))
    assert len(folder.messages) == 101
    assert len(folder.notes) == 20 + 20 + 1 + 1
    assert folder.notes[20].endswith(
        ": and 80 more such Content-Length(s), 0 more such From line(s)"
    )
    assert folder.notes[-1].endswith(": 182 more keyword(s) that are not IMAP keywords left out")
