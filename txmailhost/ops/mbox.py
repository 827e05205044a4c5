"""Reading one mbox file (RFC 4155) as Postfix's local(8), Dovecot and UW-IMAP write it.

An mbox is one file of messages, each after a ``From sender date`` line; ``/var/mail/USER``
and the files under Dovecot's ``~/mail`` are mboxes. What this module decides:

- **Where a message starts.** At the file's first line, which must begin ``From `` (else the
  file is no mbox: ``MboxError``, and nothing of it is used), and at each later line that
  begins ``From ``, follows an empty line and parses as a From line (a sender, then an
  asctime date: ``parse_from_line``). The date check is Dovecot's (istream-raw-mbox.c): Dovecot
  does not quote ``From `` lines of the messages it saves (it writes ``Content-Length:``),
  so ``From here on`` after an empty line of a body is text, not a new message.
- **Content-Length is not trusted to skip data.** A sender's own ``Content-Length:`` comes
  through Postfix as it was written. It is followed past From lines only to keep together
  what Dovecot wrote as one message (Dovecot drops a sender's Content-Length, writes its
  own, and quotes no From line of the body): in a message Dovecot numbered (``trusted``,
  decided by ``mbox_tree.py`` from its X-UID), and only when it ends exactly where a later
  block ends. A sender's Content-Length can neither hide the messages after it in its own
  (it is read as separate messages and reported: ``Block.spans``) nor, in a message Dovecot
  saved, a dated From line of its body make a message of its own.
- **``>From`` lines are left as they are** by default. Postfix's local(8) quotes a body's
  ``From `` lines mboxo-style (``>From ``, an existing ``>From `` left alone), and neither
  Dovecot nor UW-IMAP remove that ``>`` when they serve the message: IMAP clients hold the
  quoted text under the UID the migration keeps, and a message under a UID must not change
  (RFC 3501 2.3.1.1). ``unquote="mboxo"`` takes one ``>`` off ``>From `` lines (for files no
  IMAP server served), ``"mboxrd"`` one off ``>+From `` lines (mboxrd writers).
- **Dovecot's own header fields are taken out** of the stored message: ``Content-Length``,
  ``Status``, ``X-IMAP``, ``X-IMAPbase``, ``X-Keywords``, ``X-Status``, ``X-UID`` (Dovecot's
  mbox_hide_headers: what it never showed its clients); their values are read first.
- **Line ends** are left as they are: the store keeps bare-LF messages and serves CRLF.
- **Memory** is bounded: the file is read a line piece (at most ``PIECE`` octets) at a time,
  and a message is copied later from its offsets (``MboxMessageSource``), so a mailbox of
  many GiB costs the offsets of its messages, not its size.
"""

from __future__ import annotations

import bisect
import calendar
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from txmailhost.ops.sourcefiles import SourceFileError, open_regular, shown
from txmailhost.store.interfaces import MessageSource

PIECE = 65536  # longest piece of a line read at once; a longer line is read in pieces
# Dovecot's mbox_hide_headers: the fields it adds and never serves
HIDDEN = frozenset({b"content-length", b"status", b"x-imap", b"x-imapbase", b"x-keywords",
                    b"x-status", b"x-uid"})  # fmt: skip
_KEPT_VALUE = 1024  # most octets of a hidden field's value kept (memory is per message)
_FROM_KEPT = 200  # octets of a From line kept to find it again when the message is copied
UW_PSEUDO_SUBJECT = b"DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"
_MONTHS = {m.encode(): n for n, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}  # fmt: skip
# asctime "Www Mmm dd hh:mm:ss yyyy" at the end of the line, with the variants mailers wrote:
# no seconds, a zone before or after the year (name or +hhmm), a two-digit year
_FROM_DATE = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?(?: +([A-Za-z]{1,5}|[+-]\d{4}))?"
    rb" +(\d{4}|\d{2})(?: +([+-]\d{4}|[A-Za-z]{1,5}))?[ \t]*$"
)
_UTC_NAMES = {b"UT", b"UTC", b"GMT", b"Z"}


class MboxError(SourceFileError):
    """A file that is no mbox (its first line is not a From line); the text names it."""


def parse_from_line(line: bytes) -> tuple[bool, float | None]:
    """(is a From line, its date as seconds since 1970 or None). ``line`` without its line
    end. A date without a zone is the local time of this host, as Postfix and Dovecot wrote
    it in theirs (asctime of localtime); a date of another form is None."""
    if not line.startswith(b"From "):
        return False, None
    found = _FROM_DATE.search(line, 5)
    if found is None:
        return False, None
    month, day, hour, minute, second, zone1, year, zone2 = found.groups()
    year_number = int(year) + (0 if len(year) == 4 else 1900 if int(year) >= 70 else 2000)
    fields = (year_number, _MONTHS[month], int(day), int(hour), int(minute), int(second or 0))
    if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 61):
        return False, None
    zone = zone2 or zone1
    try:
        if zone is not None and zone[:1] in b"+-" and zone[1:].isdigit():
            offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * 60
            return True, calendar.timegm((*fields, 0, 0, 0)) - (offset if zone[:1] == b"+"
                                                                  else -offset)  # fmt: skip
        if zone is not None and zone.upper() in _UTC_NAMES:
            return True, float(calendar.timegm((*fields, 0, 0, 0)))
        return True, time.mktime((*fields, 0, 0, -1))
    except (OverflowError, ValueError):
        return True, None


@dataclass(slots=True)
class Block:
    """One stretch of the file from a From line to the next (offsets in octets): what
    ``scan`` found, before ``messages`` joins the blocks a Content-Length keeps together."""

    start: int  # the From line
    header: int  # the first header line
    body: int  # after the empty line that ends the header (``end`` when there is none)
    end: int  # the message's last octet + 1 (the empty line before the next From line excluded)
    from_line: bytes
    date: float | None
    fields: dict[bytes, bytes] = field(default_factory=dict)  # hidden fields, first of each
    hidden: list[tuple[int, int]] = field(default_factory=list)  # their ranges, to leave out
    subject: bytes | None = None  # the first message's (UW-IMAP's pseudo message)
    complete: bool = True  # ended by an empty line (the last one may be cut short)
    spans: int = 0  # From lines its Content-Length would have hidden (see ``messages``)
    after_header: int = -1  # where its Content-Length counts from (body may end before it)


def scan(f: BinaryIO, path: str) -> Iterator[Block]:
    """The blocks of the mbox open in ``f``, read from its start a line piece at a time."""
    offset = 0
    block: Block | None = None
    at_line_start, previous_blank, line_end = True, False, 0
    in_header, hiding, in_field, in_from_line = False, False, b"", False
    while piece := f.readline(PIECE):
        line_start = at_line_start
        at_line_start = piece.endswith(b"\n")
        content = piece.rstrip(b"\r\n") if at_line_start else piece
        starts = False
        if block is None:
            if not piece.startswith(b"From "):
                raise MboxError(
                    f"{shown(path)}: not an mbox (its first line is not a 'From ' line)"
                )
            starts, date = True, parse_from_line(content)[1]
        elif line_start and piece.startswith(b"From "):
            starts, date = parse_from_line(content)
        if starts:
            if block is not None:
                yield _ended(block, offset - line_end, previous_blank)
            offset += len(piece)
            block = Block(offset - len(piece), offset, -1, -1, content[:_FROM_KEPT], date)
            in_header, hiding, previous_blank, in_from_line = True, False, False, not at_line_start
            line_end = len(piece) - len(content) if at_line_start else 0
            continue
        assert block is not None
        if in_from_line:  # the rest of a From line longer than PIECE
            offset += len(piece)
            block.header, in_from_line = offset, not at_line_start
            line_end = len(piece) - len(content) if at_line_start else 0
            continue
        blank = line_start and at_line_start and not content
        if in_header and line_start:
            if blank:
                in_header, hiding = False, False
                block.body = block.after_header = offset + len(piece)
            elif piece[:1] in (b" ", b"\t"):
                if hiding:
                    block.hidden[-1] = (block.hidden[-1][0], offset + len(piece))
                    _extend(block.fields, in_field, content)
            else:
                name, colon, value = content.partition(b":")
                in_field = name.strip().lower()
                hiding = bool(colon) and in_field in HIDDEN
                if hiding:
                    if block.hidden and block.hidden[-1][1] == offset:  # Dovecot's are together
                        block.hidden[-1] = (block.hidden[-1][0], offset + len(piece))
                    else:
                        block.hidden.append((offset, offset + len(piece)))
                    if value.strip():  # Dovecot's empty "Status: " says nothing
                        block.fields.setdefault(in_field, value.strip()[:_KEPT_VALUE])
                elif in_field == b"subject" and block.subject is None and block.start == 0:
                    block.subject = value.strip()[:200]
        elif in_header and hiding:  # the rest of a field's line longer than PIECE
            block.hidden[-1] = (block.hidden[-1][0], offset + len(piece))
        if line_start:
            previous_blank = blank
        line_end = len(piece) - len(content) if at_line_start else 0
        offset += len(piece)
    if block is not None:
        yield _ended(block, offset - line_end, previous_blank and at_line_start)


def _ended(block: Block, end: int, complete: bool) -> Block:
    """``block`` ending at ``end``, the line end before the next From line (or the file's
    end) left out as Dovecot leaves it out: ``body<LF><LF>From`` is ``body<LF>``. A header
    that ran up to that line ends there, without a body."""
    block.end, block.complete = max(end, block.header), complete
    block.body = block.end if block.body < 0 or block.body > block.end else block.body
    return block


def _extend(fields: dict[bytes, bytes], name: bytes, more: bytes) -> None:
    """A folded hidden field's next line, added to its value (within ``_KEPT_VALUE``)."""
    if name in fields and len(fields[name]) < _KEPT_VALUE:
        fields[name] = (fields[name] + b" " + more.strip())[:_KEPT_VALUE]


def messages(blocks: Iterator[Block], trusted: Callable[[Block], bool]) -> list[Block]:
    """The messages of an mbox from its blocks. A block's ``Content-Length`` joins the
    blocks after it to it when it ends exactly where one of them ends and the block is
    ``trusted``: one Dovecot wrote (it numbered it: ``mbox_tree.py`` trusts a message whose
    X-UID it keeps), whose Content-Length is its own: Dovecot drops a sender's and doesn't
    quote the body's From lines. Any other Content-Length came with the message (Postfix
    keeps it) and is not followed: what it would have taken in is counted in ``spans``
    for the report, and read as the messages it is."""
    listed = list(blocks)
    ends = [block.end for block in listed]
    out: list[Block] = []
    n = 0
    while n < len(listed):
        block = listed[n]
        length = block.fields.get(b"content-length", b"")
        last = n
        if length.isdigit() and len(length) < 20 and block.after_header >= 0:
            wanted = block.after_header + int(length)
            # the ends grow block by block: a search, not a walk (a file of many messages,
            # each with a Content-Length past the file's end, was quadratic)
            k = bisect.bisect_left(ends, wanted, n)
            if n < k < len(listed) and listed[k].end == wanted:
                if trusted(block):
                    last = k
                else:
                    block.spans = k - n
        if last != n:
            block.body, block.end = block.after_header, listed[last].end
            block.complete = listed[last].complete
        out.append(block)
        n = last + 1
    return out


class MboxMessageSource(MessageSource):
    """One message of an mbox, copied from its offsets when the store reads it, without its
    From line and Dovecot's hidden fields (and with ``>From`` unquoted when asked). The
    file must still be the one scanned, with the message's From line where it was: a file
    rewritten meanwhile (Dovecot expunged, Postfix truncated) is refused, not read across."""

    __slots__ = ("_block", "_listed", "_unquote", "_where")

    def __init__(
        self, path: str, listed: os.stat_result, block: Block, unquote: str | None = None
    ) -> None:
        super().__init__(size=None)
        self._where, self._listed, self._block, self._unquote = path, listed, block, unquote

    def open(self) -> BinaryIO:
        f = open_regular(self._where, self._listed)
        try:
            f.seek(self._block.start)
            if f.readline(PIECE).rstrip(b"\r\n")[:_FROM_KEPT] != self._block.from_line:
                raise SourceFileError(f"{shown(self._where)}: changed while being read "
                                      f"(no From line at octet {self._block.start} any more)")  # fmt: skip
        except BaseException:
            f.close()
            raise
        raw = _Chunks(f, _octets(f, self._block, self._unquote))
        return io.BufferedReader(raw)  # type: ignore[return-value]

    @property
    def octets_in_file(self) -> int:
        """The message's octets in the file, from its header to its end (the hidden fields
        counted): what ``--max-message-size`` judges, known without reading the message."""
        return self._block.end - self._block.header

    @property
    def where(self) -> str:
        """The message for the report: its file and the octet of its From line."""
        return f"{shown(self._where)} (the message at octet {self._block.start})"

    def length(self) -> int:
        if self.size is None:
            with self.open() as f:
                self.size = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
        return self.size


def _octets(f: BinaryIO, block: Block, unquote: str | None) -> Iterator[bytes]:
    """The message's octets: its header without the hidden ranges, then its body."""
    position = block.header
    for start, end in [*block.hidden, (block.body, block.body)]:
        yield from _copy(f, position, start)
        position = end
    if unquote is None:
        yield from _copy(f, block.body, block.end)
        return
    quoted = re.compile(rb">(>*From )" if unquote == "mboxrd" else rb">(From )")
    f.seek(block.body)
    left, line_start = block.end - block.body, True
    while left > 0:
        piece = f.readline(min(PIECE, left))
        if not piece:
            break
        left -= len(piece)
        yield quoted.sub(rb"\1", piece, count=1) if line_start and quoted.match(piece) else piece
        line_start = piece.endswith(b"\n")


def _copy(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    f.seek(start)
    while start < end:
        chunk = f.read(min(1 << 20, end - start))
        if not chunk:
            break  # the file was cut short since: the message ends here
        start += len(chunk)
        yield chunk


class _Chunks(io.RawIOBase):
    """A read-only raw stream over a generator of chunks (closing it closes ``f``)."""

    def __init__(self, f: BinaryIO, chunks: Iterator[bytes]) -> None:
        self._f, self._chunks, self._left = f, chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()
