"""APPEND's arguments and how the messages reach the store: RFC 3501 §6.3.11, several
messages in one command (MULTIAPPEND, RFC 3502), messages built from text and URLs
(CATENATE, RFC 4469: ``catenate.py``), literal8 (BINARY, RFC 3516: ``binary.py``), APPENDUID
with a UID set (UIDPLUS, RFC 4315).

MULTIAPPEND is atomic: every message is added or none is (``IMailbox.append_many``: each
message is written and fsync'd, then all are linked and indexed in one transaction; a failure
removes what was linked). A single message keeps the one-trip path: a large literal already
streamed to a file in the store's staging directory is linked, not copied
(``IStagedAppend``). OK is sent only after the messages and their directory entries are
fsync'd (DESIGN invariant 1).
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.threads import deferToThreadPool

from txmailhost.imap import binary, catenate, fetch, replies
from txmailhost.imap.parser import LiteralFile, ParseError, Reader
from txmailhost.store.interfaces import IQuotaAppend, MessageSource

_DATE_TIME = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_IGNORED_FLAGS = ("\\Recent", "\\*")  # not flags a client may set (§2.3.2)
# Messages in one APPEND, as literals in one command (``server.MAX_LITERALS``): a CATENATE
# message is made of URLs, which are no literals, and 7 KB of command named 40 of them.
MAX_MESSAGES = 64


def parse_date_time(raw: bytes) -> float:
    """APPEND's date-time (RFC 3501 §9) → POSIX time."""
    match = _DATE_TIME.fullmatch(raw)
    month = _MONTHS.get(match[2].upper().decode()) if match else None
    if not match or not month:
        raise ParseError("invalid date-time")
    day, year, hour, minute, second = (int(match[i]) for i in (1, 3, 4, 5, 6))
    try:
        datetime.datetime(year, month, day, hour, minute, second)  # no 31-Feb, no 25:00
        stamp = calendar.timegm((year, month, day, hour, minute, second))
    except (ValueError, OverflowError):
        raise ParseError("invalid date-time") from None
    zone_hours, zone_minutes = int(match[8]), int(match[9])
    if zone_hours > 23 or zone_minutes > 59:  # "+9999" is no hhmm: 4 days and 3 hours off
        raise ParseError("invalid date-time zone")
    offset = (zone_hours * 60 + zone_minutes) * 60
    stamp = stamp - offset if match[7] == b"+" else stamp + offset
    # INTERNALDATE is kept as POSIX time and sent in +0000 (``fetch.internaldate``), whose
    # date-year is 4DIGIT (RFC 3501 §9): "31-Dec-9999 23:59:59 -2359" is year 10000 in UTC.
    if not fetch.EARLIEST <= stamp <= fetch.LATEST:
        raise ParseError("date-time out of range: years 0001 to 9999 in UTC")
    return stamp


@dataclass(frozen=True)
class AppendMessage:
    """One message of an APPEND: its flags, INTERNALDATE (None: now) and octets; ``binary``
    when they came as a literal8 (``~{n}``, RFC 3516 §4.4) and may hold binary parts;
    ``parts`` when CATENATE (RFC 4469) builds it (``literal`` is then empty until
    ``assemble`` fills it)."""

    flags: list[str]
    date: float | None
    literal: bytes | LiteralFile
    binary: bool = False
    parts: tuple[catenate.CatPart, ...] = ()

    @property
    def size(self) -> int:
        return self.literal.size if isinstance(self.literal, LiteralFile) else len(self.literal)

    def source(self) -> MessageSource:
        if isinstance(self.literal, LiteralFile):
            return MessageSource.from_path(self.literal.path, self.literal.size)
        return MessageSource.from_bytes(self.literal)


def parse_messages(reader: Reader, utf8: bool = False) -> list[AppendMessage]:
    """``1*(SP [flag-list SP] [date-time SP] literal)`` after the mailbox name (RFC 3502 §6);
    an empty message is refused (``NO``): there is nothing to store. Once UTF8=ACCEPT (or
    IMAP4rev2) is enabled, ``UTF8 (~{n})`` brings a message with UTF-8 header fields (RFC 6855
    §4); it is stored as it came."""
    messages = []
    while True:
        reader.sp()
        flags: list[str] = []
        if reader.peek() == b"(":
            flags = [f for f in reader.flag_list() if f not in _IGNORED_FLAGS]
            reader.sp()
        date = None
        if reader.peek() == b'"':
            date = parse_date_time(reader.date_time())
            reader.sp()
        utf8_form = reader.peek_upper(b"UTF8 (")
        if utf8_form:
            if not utf8:
                raise replies.BadCommand("APPEND UTF8 needs ENABLE UTF8=ACCEPT first")
            reader.pos += len(b"UTF8 (")
            if reader.peek() != b"~":
                raise ParseError("APPEND UTF8 takes a literal8, ~{n}")
        if reader.peek_upper(b"CATENATE") and not utf8_form:
            parts = tuple(catenate.parse_parts(reader))
            messages.append(AppendMessage(flags, date, b"", parts=parts))
        else:
            literal8 = reader.peek() == b"~"
            if literal8:
                reader.pos += 1
            message = AppendMessage(flags, date, reader.literal(), literal8)
            if utf8_form:
                reader.close_paren()
            if not message.size:
                raise replies.IMAPError("empty message")
            messages.append(message)
        if len(messages) > MAX_MESSAGES:
            raise replies.Limit(f"at most {MAX_MESSAGES} messages in one APPEND")
        if reader.at_end():
            return messages


@dataclass(frozen=True)
class Announced:
    """What an APPEND has said before the octets of its latest literal come: its mailbox
    argument (as sent: ``names.decode`` it), the flags of its messages so far and the octets
    of message text announced so far, that literal's included (``announced``)."""

    mailbox: bytes
    flags: list[str]
    octets: int


class _AnnouncedReader(Reader):
    """A Reader over an APPEND whose last literal is announced and not yet read (``pending``,
    a stand-in of its size). It adds up the message text it reads: the literals taken as
    ``literal()`` (a message, a CATENATE ``TEXT``), not those a string is read from (the
    mailbox name, a CATENATE ``URL``), and keeps the flags."""

    def __init__(
        self, text: bytes, literals: dict[int, bytes | LiteralFile], pending: LiteralFile
    ) -> None:
        super().__init__(text, {**literals, len(text): pending})
        self.pending = pending
        self.octets = 0
        self.flags: list[str] = []
        self.reached = False  # the pending literal was read as message text
        self._string = False

    def literal(self) -> bytes | LiteralFile:
        value = super().literal()
        if not self._string:
            self.octets += value.size if isinstance(value, LiteralFile) else len(value)
            self.reached = value is self.pending
        return value

    def literal_bytes(self) -> bytes:
        self._string = True
        try:
            return super().literal_bytes()
        finally:
            self._string = False

    def flag_list(self) -> list[str]:
        flags = super().flag_list()
        self.flags += flags
        return flags


def announced(
    text: bytes, literals: dict[int, bytes | LiteralFile], size: int, utf8: bool = False
) -> Announced | None:
    """For an APPEND whose command so far (``text`` and the ``literals`` read) ends with the
    marker of a ``size``-octet literal not yet read: what it has said (``Announced``) when
    that literal is message text and the command is well-formed so far; else None (the
    literal is the mailbox name or a URL, or the command will be refused for what is
    already here). The server looks at the owner's quota with it before the octets come
    (RFC 7888 §4, RFC 9208 §4.3); the command is parsed again, whole, once they have."""
    pending = LiteralFile("", size)
    reader = _AnnouncedReader(text, literals, pending)
    try:
        reader.tag()
        reader.sp()
        if reader.atom().upper() != b"APPEND":
            return None
        reader.sp()
        mailbox = reader.astring()
        parse_messages(reader, utf8)
    except ParseError:
        pass  # the command goes on past this literal: whether it was reached is below
    except replies.IMAPError:
        return None  # refused for what is here already, whatever the literal holds
    if not reader.reached:
        return None
    return Announced(mailbox, [f for f in reader.flags if f not in _IGNORED_FLAGS], reader.octets)


def _readable(message: AppendMessage) -> AppendMessage:
    """A literal8 message with its binary parts re-encoded as base64 (``binary.py``); read
    whole, off the reactor thread when it was staged in a file."""
    literal = message.literal
    if isinstance(literal, LiteralFile):
        with open(literal.path, "rb") as f:
            literal = f.read()
    converted = binary.base64_parts(literal)
    if converted is literal and literal is message.literal:
        return message
    return AppendMessage(message.flags, message.date, converted)


async def _converted(message: AppendMessage, reactor: Any) -> AppendMessage:
    """``_readable`` at once for a literal held in memory (at most 256 KiB); for one staged
    in a file, in the reactor's thread pool: reading and re-encoding up to APPENDLIMIT
    octets must not stall other sessions (DESIGN invariant 3)."""
    if isinstance(message.literal, LiteralFile) and hasattr(reactor, "getThreadPool"):
        return await deferToThreadPool(reactor, reactor.getThreadPool(), _readable, message)
    return _readable(message)


def _read_file(literal: LiteralFile) -> bytes:
    with open(literal.path, "rb") as f:
        return f.read()


async def assemble(
    messages: list[AppendMessage],
    resolve: Callable[[bytes], Awaitable[bytes]],
    reactor: Any,
    limit: int,
) -> list[AppendMessage]:
    """Each CATENATE message built from its parts (``catenate.py``); ``resolve`` gives the
    octets of a URL. A text part staged in a file is read in the reactor's thread pool.

    The messages are built in memory, so ``limit`` (APPENDLIMIT) bounds them all together,
    not each: one command of 40 messages of 8 URLs each grew the server by 322 MiB, and
    past the user's quota (which is checked on the sum once they are built)."""

    async def read_text(literal: bytes | LiteralFile) -> bytes:
        if not isinstance(literal, LiteralFile):
            return literal
        if hasattr(reactor, "getThreadPool"):
            return await deferToThreadPool(reactor, reactor.getThreadPool(), _read_file, literal)
        return _read_file(literal)

    built = []
    room = limit
    for message in messages:
        if message.parts:
            data = await catenate.assemble(list(message.parts), read_text, resolve, room)
            if not data:
                raise replies.IMAPError("empty message")
            room -= len(data)
            message = AppendMessage(message.flags, message.date, data)
        built.append(message)
    return built


async def store_messages(
    mailbox: Any, messages: list[AppendMessage], reactor: Any, limit: int | None = None
) -> tuple[int, list[int]]:
    """Add ``messages`` to ``mailbox``, all or none; (UIDVALIDITY, their UIDs). ``limit``:
    the owner's quota, which a store that offers ``IQuotaAppend`` checks in the step that
    adds them (``QuotaExceeded``); the caller has compared the usage before for the others."""
    messages = [await _converted(m, reactor) if m.binary else m for m in messages]
    if limit is not None and IQuotaAppend.providedBy(mailbox):
        items = [(m.source(), m.flags, m.date) for m in messages]
        return await mailbox.append_within_quota(items, limit)
    if len(messages) > 1:
        return await mailbox.append_many([(m.source(), m.flags, m.date) for m in messages])
    (message,) = messages
    # (Literals go to a file only for a store that declares IFileDelivery, whose mailboxes
    # take staged files: IStagedAppend.)
    if isinstance(message.literal, LiteralFile):
        uidvalidity, uid = await mailbox.append_staged(
            message.literal.path, message.flags, message.date
        )
    else:
        uidvalidity, uid = await mailbox.append(message.source(), message.flags, message.date)
    return uidvalidity, [uid]
