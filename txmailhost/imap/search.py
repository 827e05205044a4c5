"""SEARCH (RFC 3501 §6.4.4) compiled to predicates, with CONDSTORE's MODSEQ key (RFC 7162
§3.1.5), ESEARCH's RETURN options (RFC 4731), the save-date keys of RFC 8514 and the
EMAILID/THREADID keys of RFC 8474.

The criteria are parsed once into a tree of Python closures over one message. ``Needs`` says
what the store must load: keys on flags, UID, size, dates and modseq run on index values alone;
header keys (and THREADID) need the cached header block; BODY and TEXT need the message;
SAVED* and EMAILID need each message's ``IMailbox.origins`` entry. Nesting (parentheses,
NOT, OR) is bounded by ``MAX_KEYS`` and ``MAX_NESTING`` so a client can't build an
arbitrarily deep or long program.

String matching is a case-insensitive substring match (§6.4.4), on RFC 2047-decoded header
values, and on the raw message for BODY/TEXT plus the decoded text of its text parts
(base64, quoted-printable, charsets other than UTF-8, HTML reduced to its words), so a word in
an encoded body is found too. The encoded octets themselves are not searched: neither the
base64 of attachments (non-text parts), as Dovecot does, nor the base64 or quoted-printable
form of a text part, whose decoded text stands in for it (``=20`` or a run of base64 letters
is nothing a reader sees). A needle matches within one of these texts, not across two.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime
import quopri
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from txmailhost import addresslist, charsets, sentdates
from txmailhost.encodedwords import decode_words
from txmailhost.imap import mime, objectid
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.store.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    TEXT_FIELDS,
    MessageOrigin,
    StoredMessage,
    TextAll,
    TextAny,
    TextQuery,
    TextTerm,
)
from txmailhost.visibletext import html_text

MAX_KEYS = 500
# NOT, OR and parentheses nest by recursion (two frames a level, and as many when a message is
# tested): bounded well inside Python's recursion limit, and deeper than any client's OR chain.
MAX_NESTING = 100
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")  # RFC 8474 objectid


@dataclass
class Candidate:
    """One message under test: its sequence number, recent bit and stored values (and its
    ``IMailbox.origins`` entry when the program needs it)."""

    seq: int
    message: StoredMessage
    recent: bool
    origin: MessageOrigin | None = None
    _texts: dict[str, str] = field(default_factory=dict)
    _pieces: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _fields: list[tuple[bytes, bytes]] | None = None

    def fields(self) -> list[tuple[bytes, bytes]]:
        """The header fields, parsed once per message however many keys look at them."""
        if self._fields is None:
            self._fields = mime.parse_header_fields(self.message.header or b"")
        return self._fields

    def header_value(self, name: bytes) -> str:
        key = "h:" + name.decode("ascii", "replace")
        if key not in self._texts:
            values = [v for k, v in self.fields() if k == name]
            self._texts[key] = " ".join(_decode_header(v) for v in values).casefold()
        return self._texts[key]

    def address_value(self, name: bytes) -> str:
        """An address header as SEARCH FROM/TO/CC/BCC sees it: its decoded text and each
        address normalized (``addresslist.search_text``), case-folded."""
        key = "a:" + name.decode("ascii", "replace")
        if key not in self._texts:
            values = [v for k, v in self.fields() if k == name]
            normalized = [addresslist.search_text(v.decode("utf-8", "replace")) for v in values]
            self._texts[key] = (self.header_value(name) + "\n" + "\n".join(normalized)).casefold()
        return self._texts[key]

    def has_header(self, name: bytes) -> bool:
        return any(k == name for k, _v in self.fields())

    def whole_text(self, body_only: bool) -> tuple[str, ...]:
        """The case-folded texts BODY (``body_only``) or TEXT looks in: the raw body (TEXT: the
        raw message and its decoded header fields) but for the base64 of attachments, and
        each decoded text part. A needle matches within one of them, never across two (the
        full-text index relies on it: a BODY match is a TEXT match, so one index answers
        both)."""
        key = "body" if body_only else "text"
        if key not in self._pieces:
            raw = self.message.content or b""
            root = mime.parse(raw)
            decoded, replaced = _decoded_texts(root)
            pieces = [
                raw[start:end].decode("utf-8", "replace")
                for start, end in _searched_spans(
                    root, root.body_start if body_only else 0, replaced
                )
            ]
            if not body_only:
                pieces.append(
                    " ".join(_decode_header(v) for _k, v in root.fields).replace("\r\n", " ")
                )
            pieces.extend(decoded)
            self._pieces[key] = tuple(piece.casefold() for piece in pieces)
        return self._pieces[key]


# Of a header value, the encoded words of at most this many characters are decoded; the rest
# is searched as it is. ``email.header`` takes time and memory growing with the square of the
# words: a Subject of 20,000 encoded words held a SEARCH, on the reactor thread, for 1.3 s.
MAX_DECODED = 16 * 1024


def _decode_header(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    if "=?" not in text:
        return text  # no encoded word: what email.header would give back, at a tenth the cost
    rest = ""
    if len(text) > MAX_DECODED:  # cut between words (an encoded word holds no white space)
        cut = max(text.rfind(" ", 0, MAX_DECODED), text.rfind("\t", 0, MAX_DECODED), 0)
        text, rest = text[:cut], text[cut:]
    return decode_words(text) + rest  # a malformed one: the raw text is searched


def _searched_spans(
    root: mime.Part, start: int, replaced: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The raw message from ``start`` on, cut around the bodies of base64 parts that are not
    text (images, PDFs, archives): their encoded octets are no words anyone searches for, and
    Dovecot doesn't search them either; their headers (a file name) stay. Cut too: the
    ``replaced`` bodies, text parts whose decoded text is searched instead. In their encoded
    form BODY "=20" found every quoted-printable line ending in a space and a short word
    matched base64 at random, where a reader (and Dovecot) sees neither."""
    cuts = list(replaced)
    stack = [root]
    while stack:
        part = stack.pop()
        stack.extend(part.children)
        if part.message is not None:
            stack.append(part.message)
        elif part.maintype not in (b"text", b"multipart", b"message"):
            encoding = (part.get(b"content-transfer-encoding") or b"").lower().strip()
            if encoding == b"base64":
                cuts.append((part.body_start, part.end))
    spans, position = [], start
    for cut_start, cut_end in sorted(cuts):
        if cut_start > position:
            spans.append((position, cut_start))
        position = max(position, cut_end)
    spans.append((position, len(root.raw)))
    return [(a, b) for a, b in spans if b > a] or [(start, start)]


def _decoded_texts(part: mime.Part) -> tuple[list[str], list[tuple[int, int]]]:
    """The decoded content of text parts (bounded by mime limits): base64 or quoted-printable
    ones decoded, any but UTF-8/US-ASCII converted from their charset, and HTML reduced to
    its text as well (``<b>Hel</b>lo&nbsp;you`` is found by "hello you"); and the spans of
    the encoded bodies decoded here, whose raw octets need no searching."""
    out = []
    replaced = []
    stack = [part]
    while stack:
        current = stack.pop()
        stack.extend(current.children)
        if current.message is not None:
            stack.append(current.message)
        if current.maintype != b"text":
            continue
        encoding = (current.get(b"content-transfer-encoding") or b"").lower().strip()
        charset = dict((k.lower(), v) for k, v in current.params).get(b"charset", b"utf-8")
        charset_name = charset.decode("ascii", "replace").lower()
        encoded = encoding in (b"base64", b"quoted-printable")
        html = current.subtype == b"html"
        if not encoded and not html and charset_name in _RAW_CHARSETS:
            continue  # the raw body already reads as it is
        data = current.body
        if encoded:
            try:
                data = (
                    base64.b64decode(data) if encoding == b"base64" else quopri.decodestring(data)
                )
            except (binascii.Error, ValueError):
                continue
        text = charsets.decode(data, charset_name)
        if encoded or charset_name not in _RAW_CHARSETS:
            out.append(text)
        if encoded:
            replaced.append((current.body_start, current.end))
        if html:
            out.append(html_text(text))
    return out, replaced


_RAW_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
Predicate = Callable[[Candidate], bool]


@dataclass
class SearchProgram:
    """The compiled criteria and what evaluating them needs."""

    predicate: Predicate
    header: bool = False
    content: bool = False
    uses_modseq: bool = False
    return_options: list[str] | None = None  # ESEARCH RETURN (...), None for plain SEARCH
    origins: bool = False  # a key needs IMailbox.origins (save date, EMAILID)
    # What a full-text index (store ``ITextIndex``) may narrow the messages to test to; None
    # when the criteria have no string key it can answer (or one under NOT).
    text_query: TextQuery | None = None


class _Compiler:
    def __init__(self, reader: Reader, resolve: Callable[[bytes, bool], set[int]]) -> None:
        self.reader = reader
        self.resolve = resolve  # (sequence set, by_uid) -> set of sequence numbers
        self.keys = 0
        self.nesting = 0
        self.header = False
        self.content = False
        self.uses_modseq = False
        self.origins = False
        # The text query of each predicate that has one: the index narrows a string key, an
        # AND of keys where any part narrows, an OR where both sides do; NOT never narrows.
        self.text: dict[Predicate, TextQuery] = {}

    def program(self) -> Predicate:
        keys = [self.key()]
        while self.reader.skip_sp():
            keys.append(self.key())
        self.reader.end()
        return self.all_of(keys)

    def all_of(self, keys: list[Predicate]) -> Predicate:
        predicate = _all(keys)
        parts = tuple(self.text[k] for k in keys if k in self.text)
        if len(parts) > 1:
            self.text[predicate] = TextAll(parts)
        elif parts:
            self.text[predicate] = parts[0]
        return predicate

    def narrowed(self, predicate: Predicate, field_name: str, needle: str) -> Predicate:
        """``predicate`` tests ``field_name`` (``TEXT_FIELDS``) for ``needle``: so may an index
        (a needle under three characters narrows nothing: left to the scan)."""
        if len(needle) >= 3:
            self.text[predicate] = TextTerm(field_name, needle)
        return predicate

    def key(self) -> Predicate:
        self.keys += 1
        if self.keys > MAX_KEYS:
            raise ParseError("too many search keys")
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ParseError("search keys too deeply nested")
        try:
            return self._key()
        finally:
            self.nesting -= 1

    def _key(self) -> Predicate:
        reader = self.reader
        if reader.peek() == b"(":
            reader.open_paren()
            keys = [self.key()]
            while reader.peek() != b")":
                reader.sp()
                keys.append(self.key())
            reader.close_paren()
            return self.all_of(keys)
        if reader.peek().isdigit() or reader.peek() in (b"*", b"$"):
            seqs = self.resolve(reader.sequence_set(), False)
            return lambda c: c.seq in seqs
        word = reader.atom().upper()
        handler = _KEYS.get(word)
        if handler is None:
            raise ParseError(f"unknown search key {word.decode('ascii', 'replace')}")
        return handler(self)

    # argument helpers
    def astring(self) -> str:
        self.reader.sp()
        return self.reader.astring().decode("utf-8", "replace").casefold()

    def number(self) -> int:
        self.reader.sp()
        return self.reader.number()

    def date(self) -> int:
        """A search date (``1-Feb-2024``, optionally quoted) as a day number."""
        self.reader.sp()
        raw = self.reader.astring()
        match = _DATE.fullmatch(raw)
        month = _MONTHS.get(match[2].decode().capitalize()) if match else None
        if not match or not month:
            raise ParseError("invalid date")
        year, day = int(match[3]), int(match[1])
        try:
            datetime.date(year, month, day)  # 32-Jan is no date, not 1-Feb
        except ValueError:
            raise ParseError("invalid date") from None
        return _day(year, month, day)


def _day(year: int, month: int, day: int) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0)) // 86400


def _all(keys: list[Predicate]) -> Predicate:
    if len(keys) == 1:
        return keys[0]
    return lambda c: all(k(c) for k in keys)


def _flag(name: str, present: bool) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        if present:
            return lambda c: name in c.message.flags
        return lambda c: name not in c.message.flags

    return build


def _keyword(present: bool) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        compiler.reader.sp()
        word = compiler.reader.atom().decode("ascii", "replace")
        lowered = word.lower()

        def has(c: Candidate) -> bool:
            return any(f.lower() == lowered for f in c.message.flags)

        return has if present else (lambda c: not has(c))

    return build


# In a lower-cased raw message: something ``whole_text`` decodes (RFC 2047 words, transfer
# encodings, HTML, a charset other than UTF-8/US-ASCII), so a needle missing from the raw
# bytes may still be in its text.
_DECODED = re.compile(
    rb'=\?|-transfer-encoding|text/html|charset=(?!"?(?:us-ascii|utf-8|utf8)(?:[";\s]|$))'
)


def _prefilter(needle: str) -> bytes | None:
    """For an ASCII needle, the bytes whose absence from the lower-cased raw text proves no
    match (unless the text has RFC 2047 or MIME encodings to decode): most messages of a large
    mailbox are rejected without parsing them."""
    return needle.encode("ascii") if needle.isascii() else None


def _header_key(name: bytes) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        compiler.header = True
        needle = compiler.astring()
        quick = _prefilter(needle)

        def test(c: Candidate) -> bool:
            if quick is not None:
                raw = (c.message.header or b"").lower()
                if quick not in raw and b"=?" not in raw:
                    return False
            return needle in c.header_value(name)

        if not needle:  # an empty string is in every field there is, none where there is none
            return _present(compiler, name)
        return compiler.narrowed(test, name.decode("ascii"), needle)

    return build


def _present(compiler: _Compiler, name: bytes) -> Predicate:
    """SUBJECT "" (and FROM, TO, CC, BCC ""): RFC 3501 6.4.4 searches the envelope's field,
    and a message without the field has none to contain even the empty string (NIL), as
    ``HEADER name ""`` matches "all messages that have a header line with the specified
    field-name". Dovecot answers so; every message matched before."""
    return lambda c: c.has_header(name)


_ADDRESS_PUNCTUATION = re.compile(r'[\s<>@,:;."]+')


def _address_key(name: bytes) -> Callable[[_Compiler], Predicate]:
    """FROM, TO, CC, BCC: RFC 3501 §6.4.4 matches the envelope's address structure, so a
    search for ``a@example.org`` finds ``<a (comment)@ example.org>`` too. A message is
    rejected without parsing when some word of the needle is missing from its raw header
    (normalizing only removes comments and adds punctuation)."""

    def build(compiler: _Compiler) -> Predicate:
        compiler.header = True
        needle = compiler.astring()
        quick = [
            piece.encode("ascii")
            for piece in _ADDRESS_PUNCTUATION.split(needle)
            if piece and piece.isascii()
        ]

        def test(c: Candidate) -> bool:
            raw = (c.message.header or b"").lower()
            if b"=?" not in raw and not all(piece in raw for piece in quick):
                return False
            # address_value starts with header_value: found there, no address parsing needed
            return needle in c.header_value(name) or needle in c.address_value(name)

        if not needle:
            return _present(compiler, name)
        return compiler.narrowed(test, name.decode("ascii"), needle)

    return build


def _header(compiler: _Compiler) -> Predicate:
    compiler.header = True
    compiler.reader.sp()
    name = compiler.reader.astring().lower()
    needle = compiler.astring()
    if not needle:
        return lambda c: c.has_header(name)
    predicate: Predicate = lambda c: needle in c.header_value(name)  # noqa: E731
    field_name = name.decode("ascii", "replace")
    if field_name in TEXT_FIELDS[1:]:  # the index's FROM holds this text and more
        return compiler.narrowed(predicate, field_name, needle)
    return predicate


def _text(body_only: bool) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        compiler.content = True
        needle = compiler.astring()
        quick = _prefilter(needle)

        def test(c: Candidate) -> bool:
            if quick is not None:
                raw = (c.message.content or b"").lower()
                if quick not in raw and not _DECODED.search(raw):
                    return False
            return any(needle in piece for piece in c.whole_text(body_only))

        return compiler.narrowed(test, "text", needle)

    return build


def _internal(compare: str) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        day = compiler.date()

        def test(c: Candidate) -> bool:
            return _compare(int(c.message.internaldate // 86400), day, compare)

        return test

    return build


def _saved(compare: str) -> Callable[[_Compiler], Predicate]:
    """RFC 8514: SAVEDBEFORE, SAVEDON, SAVEDSINCE compare the save date's day (in UTC, as
    BEFORE/ON/SINCE do the INTERNALDATE's)."""

    def build(compiler: _Compiler) -> Predicate:
        compiler.origins = True
        day = compiler.date()

        def test(c: Candidate) -> bool:
            if c.origin is None:
                return False
            return _compare(int(c.origin.savedate // 86400), day, compare)

        return test

    return build


def _objectid(compiler: _Compiler) -> bytes:
    compiler.reader.sp()
    value = compiler.reader.atom()
    if not _OBJECTID.fullmatch(value):
        raise ParseError("invalid object id")
    return value


def _emailid(compiler: _Compiler) -> Predicate:
    """RFC 8474: the message (any copy of it) with this EMAILID."""
    compiler.origins = True
    wanted = _objectid(compiler).decode("ascii")
    return lambda c: c.origin is not None and c.origin.emailid == wanted


def _threadid(compiler: _Compiler) -> Predicate:
    """RFC 8474: the messages of the thread with this THREADID (``objectid.threadid``)."""
    compiler.header = True
    wanted = _objectid(compiler).decode("ascii")
    return lambda c: objectid.threadid(c.message.header or b"") == wanted


def _sent(compare: str) -> Callable[[_Compiler], Predicate]:
    def build(compiler: _Compiler) -> Predicate:
        compiler.header = True
        day = compiler.date()

        def test(c: Candidate) -> bool:
            raw = c.header_value(b"date")
            try:
                parsed = sentdates.parse(raw)
            except (TypeError, ValueError):
                parsed = None
            if not parsed:
                return False
            try:
                sent = _day(parsed[0], parsed[1], parsed[2])
            except (ValueError, OverflowError):  # year 99999: no day on our calendar
                return False
            return _compare(sent, day, compare)

        return test

    return build


def _compare(value: int, day: int, compare: str) -> bool:
    if compare == "before":
        return value < day
    if compare == "on":
        return value == day
    return value >= day


def _not(compiler: _Compiler) -> Predicate:
    compiler.reader.sp()
    inner = compiler.key()
    return lambda c: not inner(c)


def _or(compiler: _Compiler) -> Predicate:
    compiler.reader.sp()
    left = compiler.key()
    compiler.reader.sp()
    right = compiler.key()
    predicate: Predicate = lambda c: left(c) or right(c)  # noqa: E731
    if left in compiler.text and right in compiler.text:
        compiler.text[predicate] = TextAny((compiler.text[left], compiler.text[right]))
    return predicate


def _uid(compiler: _Compiler) -> Predicate:
    compiler.reader.sp()
    seqs = compiler.resolve(compiler.reader.sequence_set(), True)
    return lambda c: c.seq in seqs


def _larger(compiler: _Compiler) -> Predicate:
    size = compiler.number()
    return lambda c: c.message.size > size


def _smaller(compiler: _Compiler) -> Predicate:
    size = compiler.number()
    return lambda c: c.message.size < size


def _modseq(compiler: _Compiler) -> Predicate:
    """RFC 7162 §3.1.5: ``MODSEQ ["/flags/\\\\seen" all|priv|shared] n``."""
    compiler.uses_modseq = True
    compiler.reader.sp()
    if compiler.reader.peek() == b'"':
        compiler.reader.quoted()
        compiler.reader.sp()
        compiler.reader.atom()
        compiler.reader.sp()
    value = compiler.reader.number()
    return lambda c: c.message.modseq >= value


def _const(value: bool) -> Callable[[_Compiler], Predicate]:
    return lambda compiler: lambda c: value


_KEYS: dict[bytes, Callable[[_Compiler], Predicate]] = {
    b"ALL": _const(True),
    b"ANSWERED": _flag(ANSWERED, True),
    b"DELETED": _flag(DELETED, True),
    b"DRAFT": _flag(DRAFT, True),
    b"FLAGGED": _flag(FLAGGED, True),
    b"SEEN": _flag(SEEN, True),
    b"UNANSWERED": _flag(ANSWERED, False),
    b"UNDELETED": _flag(DELETED, False),
    b"UNDRAFT": _flag(DRAFT, False),
    b"UNFLAGGED": _flag(FLAGGED, False),
    b"UNSEEN": _flag(SEEN, False),
    b"KEYWORD": _keyword(True),
    b"UNKEYWORD": _keyword(False),
    b"RECENT": lambda compiler: lambda c: c.recent,
    b"NEW": lambda compiler: lambda c: c.recent and SEEN not in c.message.flags,
    b"OLD": lambda compiler: lambda c: not c.recent,
    b"FROM": _address_key(b"from"),
    b"TO": _address_key(b"to"),
    b"CC": _address_key(b"cc"),
    b"BCC": _address_key(b"bcc"),
    b"SUBJECT": _header_key(b"subject"),
    b"HEADER": _header,
    b"BODY": _text(True),
    b"TEXT": _text(False),
    b"BEFORE": _internal("before"),
    b"ON": _internal("on"),
    b"SINCE": _internal("since"),
    b"SENTBEFORE": _sent("before"),
    b"SENTON": _sent("on"),
    b"SENTSINCE": _sent("since"),
    b"LARGER": _larger,
    b"SMALLER": _smaller,
    b"NOT": _not,
    b"OR": _or,
    b"UID": _uid,
    b"MODSEQ": _modseq,
    b"SAVEDBEFORE": _saved("before"),
    b"SAVEDON": _saved("on"),
    b"SAVEDSINCE": _saved("since"),
    # RFC 8514: every message of a mailbox that keeps save dates, and every store does.
    b"SAVEDATESUPPORTED": _const(True),
    b"EMAILID": _emailid,
    b"THREADID": _threadid,
}
_RETURN_OPTIONS = {"MIN", "MAX", "ALL", "COUNT", "SAVE"}


class BadCharset(Exception):
    """RFC 3501 §6.4.4: ``NO [BADCHARSET (UTF-8 US-ASCII)]``."""


def parse_search(
    reader: Reader, resolve: Callable[[bytes, bool], set[int]], esearch: bool = True
) -> SearchProgram:
    """``[RETURN (opts)] [CHARSET name] criteria``; only UTF-8 and US-ASCII charsets."""
    return_options = None
    if esearch and reader.peek_upper(b"RETURN "):
        reader.pos += len(b"RETURN ")
        reader.open_paren()
        return_options = []
        while reader.peek() != b")":
            if return_options:
                reader.sp()
            option = reader.atom().decode("ascii", "replace").upper()
            if option not in _RETURN_OPTIONS:
                raise ParseError(f"unsupported RETURN option {option}")
            return_options.append(option)
        reader.close_paren()
        reader.sp()
        if not return_options:
            return_options = ["ALL"]
    if reader.peek_upper(b"CHARSET "):
        reader.pos += len(b"CHARSET ")
        charset = reader.astring().upper()
        if charset not in (b"UTF-8", b"US-ASCII", b"UTF8"):
            raise BadCharset()
        reader.sp()
    compiler = _Compiler(reader, resolve)
    predicate = compiler.program()
    return SearchProgram(
        predicate,
        compiler.header,
        compiler.content,
        compiler.uses_modseq,
        return_options,
        origins=compiler.origins,
        text_query=compiler.text.get(predicate),
    )


def compress(numbers: list[int]) -> str:
    """``1,2,3,7,9,10`` → ``1:3,7,9:10`` (sequence-set form for ESEARCH ALL, COPYUID)."""
    out = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}:{prev}" if start != prev else f"{start}")
            start = prev = n
    if start is not None:
        out.append(f"{start}:{prev}" if start != prev else f"{start}")
    return ",".join(out)
