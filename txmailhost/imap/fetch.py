"""FETCH: parsing the attribute list (RFC 3501 §6.4.5) and rendering one message's response
(§7.4.2), with CONDSTORE's MODSEQ (RFC 7162 §3.1.4), SAVEDATE (RFC 8514) and EMAILID/THREADID
(RFC 8474).

A ``FetchRequest`` says up front what the store must load: index values only (FLAGS, UID,
RFC822.SIZE, INTERNALDATE, MODSEQ: answered from the index without opening a file), the cached
header block (ENVELOPE, BODY[HEADER], HEADER.FIELDS) or the whole message (BODYSTRUCTURE, body
sections). That is what keeps ``UID FETCH 1:* (UID FLAGS)`` on 100,000 messages cheap.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress

from txmailhost.imap import binary, mime, objectid, preview
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import astring, string, without_nul
from txmailhost.store.interfaces import SEEN, IndexColumns, MessageOrigin, StoredMessage

_MACROS = {
    b"ALL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"),
    b"FAST": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"),
    b"FULL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"),
}
_SIMPLE = {
    b"UID",
    b"FLAGS",
    b"INTERNALDATE",
    b"RFC822.SIZE",
    b"ENVELOPE",
    b"BODY",
    b"BODYSTRUCTURE",
    b"MODSEQ",
    b"RFC822",
    b"RFC822.HEADER",
    b"RFC822.TEXT",
    b"SAVEDATE",  # RFC 8514
    b"EMAILID",  # RFC 8474
    b"THREADID",
}
# Items answered from ``IMailbox.origins`` (the store's record of each message's save).
ORIGIN_ITEMS = (b"SAVEDATE", b"EMAILID")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The first and last instants a date-time in +0000 can name (date-year is 4DIGIT).
EARLIEST, LATEST = -62135596800, 253402300799  # 01-Jan-0001 00:00:00, 31-Dec-9999 23:59:59
MAX_ITEMS = 100
_PARTIAL = re.compile(rb"<(\d{1,19})\.(\d{1,19})>")


@dataclass(frozen=True)
class Section:
    """``BODY[path.kind (fields)]<partial>`` as requested; ``label`` is how the response names
    it (RFC 3501 §7.4.2: the section spec as given, the partial's origin only)."""

    path: tuple[int, ...]
    kind: str  # "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"
    fields: tuple[bytes, ...]
    partial: tuple[int, int] | None
    peek: bool
    label: bytes
    binary: str = ""  # RFC 3516: "BINARY" (decoded octets) or "SIZE" (their count)

    @property
    def header_only(self) -> bool:
        return not self.path and self.kind.startswith("HEADER")


@dataclass
class FetchRequest:
    """The parsed attribute list; ``items`` keeps the client's order for the response."""

    items: list[bytes | Section] = field(default_factory=list)
    changedsince: int | None = None
    vanished: bool = False

    def add(self, item: bytes | Section) -> None:
        if item not in self.items:
            self.items.append(item)

    @property
    def needs_content(self) -> bool:
        return any(
            (isinstance(i, Section) and not i.header_only)
            or i in (b"BODY", b"BODYSTRUCTURE", b"RFC822", b"RFC822.TEXT", b"PREVIEW")
            for i in self.items
        )

    @property
    def needs_header(self) -> bool:
        return any(
            (isinstance(i, Section) and i.header_only)
            or i in (b"ENVELOPE", b"RFC822.HEADER", b"THREADID")
            for i in self.items
        )

    @property
    def needs_origins(self) -> bool:
        return any(i in ORIGIN_ITEMS for i in self.items)

    @property
    def sets_seen(self) -> bool:
        """Fetching a body section without .PEEK sets \\Seen (§6.4.5)."""
        return any(
            (isinstance(i, Section) and not i.peek) or i in (b"RFC822", b"RFC822.TEXT")
            for i in self.items
        )


def parse_fetch(reader: Reader) -> FetchRequest:
    """``fetch-att`` / ``(fetch-att ...)`` / a macro, then optional CONDSTORE modifiers."""
    request = FetchRequest()
    if reader.peek() == b"(":
        reader.open_paren()
        while True:
            _parse_item(reader, request)
            if reader.peek() == b")":
                break
            reader.sp()
            if len(request.items) > MAX_ITEMS:
                raise ParseError("too many fetch attributes")
        reader.close_paren()
    else:
        word = _word(reader)
        if word in _MACROS:
            for item in _MACROS[word]:
                request.add(item)
        else:
            _parse_item(reader, request, word)
    if reader.skip_sp():
        _parse_modifiers(reader, request)
    reader.end()
    return request


def _parse_modifiers(reader: Reader, request: FetchRequest) -> None:
    """RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED."""
    reader.open_paren()
    while True:
        word = _word(reader)
        if word == b"CHANGEDSINCE":
            reader.sp()
            request.changedsince = reader.number()
        elif word == b"VANISHED":
            request.vanished = True
        else:
            raise ParseError(f"unknown FETCH modifier {word.decode('ascii', 'replace')}")
        if reader.peek() == b")":
            break
        reader.sp()
    reader.close_paren()
    if request.vanished and request.changedsince is None:
        raise ParseError("VANISHED needs CHANGEDSINCE")
    if request.changedsince is not None:
        request.add(b"MODSEQ")


def _word(reader: Reader) -> bytes:
    start = reader.pos
    while not reader.at_end() and reader.peek() not in (b" ", b"(", b")", b"[", b"<"):
        reader.pos += 1
    word = reader.text[start : reader.pos].upper()
    if not word:
        raise ParseError("expected a fetch attribute")
    return word


def _parse_item(reader: Reader, request: FetchRequest, word: bytes | None = None) -> None:
    word = word or _word(reader)
    if word in (b"BODY", b"BODY.PEEK") and reader.peek() == b"[":
        request.add(_parse_section(reader, peek=word == b"BODY.PEEK"))
        return
    if word in (b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE") and reader.peek() == b"[":
        request.add(_parse_binary_section(reader, word))
        return
    if word == b"PREVIEW":
        _parse_preview_modifiers(reader)
    elif word not in _SIMPLE:
        raise ParseError(f"unknown fetch attribute {word.decode('ascii', 'replace')}")
    request.add(word)


def _parse_preview_modifiers(reader: Reader) -> None:
    """RFC 8970 §4: ``PREVIEW (LAZY)``. LAZY lets the server skip a costly preview; this
    server always computes it, so the modifier is accepted and changes nothing."""
    if not reader.peek_upper(b" (LAZY"):
        return
    reader.sp()
    reader.open_paren()
    while True:
        if _word(reader) != b"LAZY":
            raise ParseError("unknown PREVIEW modifier")
        if reader.peek() == b")":
            break
        reader.sp()
    reader.close_paren()


def _parse_section(reader: Reader, peek: bool) -> Section:
    reader.expect(b"[")
    path: list[int] = []
    kind = ""
    fields: tuple[bytes, ...] = ()
    while reader.peek().isdigit():
        digits = reader.pos
        while reader.peek().isdigit():
            reader.pos += 1
        written = reader.text[digits : reader.pos]
        # nz-number (RFC 3501 §9): no leading zero, below 2^32. Cutting a longer one to ten
        # digits answered for another part than the one asked for, under another label.
        if written[:1] == b"0":
            raise ParseError("section part numbers start at 1")
        if len(written) > 10 or int(written) > 0xFFFFFFFF:
            raise ParseError("section part number too large")
        number = int(written)
        path.append(number)
        if len(path) > mime.MAX_DEPTH:
            raise ParseError("section too deep")
        if reader.peek() == b".":
            reader.pos += 1
        else:
            break
    if reader.peek() != b"]":
        text = _section_word(reader)
        if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
            raise ParseError("invalid section")
        if text == "MIME" and not path:
            raise ParseError("MIME needs a part number")
        kind = text
        if text.startswith("HEADER.FIELDS"):
            reader.sp()
            reader.open_paren()
            names = []
            while True:
                names.append(reader.astring().lower())
                if reader.peek() == b")":
                    break
                reader.sp()
                if len(names) > 200:
                    raise ParseError("too many header fields")
            reader.close_paren()
            fields = tuple(names)
    # The label is made again from what was parsed, not copied from the command: a name
    # sent as a literal ("{3}" and its octets) or in 8 bits must come back as a string.
    spec = b".".join(b"%d" % n for n in path)
    if kind:
        spec += (b"." if path else b"") + kind.encode()
    if fields:
        spec += b" (" + b" ".join(astring(name.upper()) for name in fields) + b")"
    reader.expect(b"]")
    partial = None
    if reader.peek() == b"<":
        match = _PARTIAL.match(reader.text, reader.pos)
        if match is None or int(match[2]) == 0:
            raise ParseError("invalid partial <origin.length>")
        reader.pos = match.end()
        origin, length = int(match[1]), int(match[2])
        partial = (origin, length)
    label = b"BODY[" + spec + b"]"
    if partial is not None:
        label += b"<%d>" % partial[0]
    return Section(tuple(path), kind, fields, partial, peek, label)


def _parse_binary_section(reader: Reader, word: bytes) -> Section:
    """RFC 3516 §4.1: ``BINARY[part]<partial>``, ``BINARY.PEEK[...]``, ``BINARY.SIZE[part]``:
    part numbers only (no HEADER, TEXT or MIME)."""
    section = _parse_section(reader, peek=word != b"BINARY")
    if section.kind:
        raise ParseError("BINARY takes part numbers only")
    size = word == b"BINARY.SIZE"
    if size and section.partial is not None:
        raise ParseError("BINARY.SIZE takes no partial")
    spec = b".".join(b"%d" % n for n in section.path)
    label = (b"BINARY.SIZE[" if size else b"BINARY[") + spec + b"]"
    if section.partial is not None:
        label += b"<%d>" % section.partial[0]
    return Section(
        section.path, "", (), section.partial, section.peek, label, "SIZE" if size else "BINARY"
    )


def parse_section_spec(spec: bytes) -> Section:
    """A section as an IMAP URL gives it (RFC 5092 ``;SECTION=1.MIME``): what goes between
    the brackets of ``BODY[...]``. ParseError if it isn't one."""
    reader = Reader(b"[" + spec + b"]")
    section = _parse_section(reader, peek=True)
    reader.end()
    return section


def section_data(message: StoredMessage, section: Section, root: mime.Part) -> bytes:
    """What ``BODY.PEEK[section]`` holds for a loaded message (partial not applied)."""
    return _section_bytes(message, section, root)


def _section_word(reader: Reader) -> str:
    start = reader.pos
    while not reader.at_end() and reader.peek() not in (b" ", b"]", b"("):
        reader.pos += 1
    return reader.text[start : reader.pos].decode("ascii", "replace").upper()


# -- rendering ---------------------------------------------------------------------------------


def internaldate(timestamp: float) -> bytes:
    """RFC 3501 date-time, in UTC: ``"17-Jul-1996 09:44:25 +0000"``. A time outside years
    0001-9999 (kept by a server before APPEND refused one: ``append.parse_date_time``) is
    sent as the nearest one inside, since "01-Jan-10000" breaks every client's parser."""
    t = time.gmtime(min(max(timestamp, EARLIEST), LATEST))
    return (
        f'"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
        f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'
    ).encode("ascii")


_flag_cache: dict[frozenset[str], bytes] = {}


def flag_list(flags: frozenset[str], recent: bool = False) -> bytes:
    rendered = _flag_cache.get(flags)
    if rendered is None:
        order = sorted(flags, key=lambda f: (not f.startswith("\\"), f))
        rendered = ("(" + " ".join(order) + ")").encode("utf-8")
        if len(_flag_cache) < 10000:
            _flag_cache[flags] = rendered
    if recent:
        rendered = b"(\\Recent " + rendered[1:] if rendered != b"()" else b"(\\Recent)"
    return rendered


_INDEX_ITEMS = {
    b"UID": (b"UID %d", lambda m, recent: m.uid),
    b"FLAGS": (b"FLAGS %s", lambda m, recent: flag_list(m.flags, recent)),
    b"RFC822.SIZE": (b"RFC822.SIZE %d", lambda m, recent: m.size),
    b"INTERNALDATE": (b"INTERNALDATE %s", lambda m, recent: internaldate(m.internaldate)),
    b"MODSEQ": (b"MODSEQ (%d)", lambda m, recent: m.modseq),
}


def index_only(request: FetchRequest) -> bool:
    """True when every item is answered from the index (no header, no file)."""
    return all(isinstance(i, bytes) and i in _INDEX_ITEMS for i in request.items)


@dataclass(frozen=True)
class ColumnBatch:
    """What a batch of index-only FETCH lines is made of: the lines are a function of it
    alone (``render_batch``), so two equal batches render the same octets, which is what lets
    ``rendered.RenderedBatches`` hand one session's lines to another without rendering them.

    ``values`` holds the store's column for each of ``items`` (flag sets, not yet rendered);
    ``recent`` the session's \\Recent ranges when FLAGS is asked (else empty: they change
    nothing then)."""

    items: tuple[bytes, ...]  # in the order of the line, UID first when the command is UID
    changedsince: int | None
    recent: tuple[tuple[int, int], ...]
    seqs: Sequence[int]
    uids: Sequence[int]
    values: tuple[Sequence[object], ...]


def column_batch(
    seqs: Sequence[int],
    wanted: Sequence[int],
    columns: IndexColumns,
    request: FetchRequest,
    *,
    uid: bool,
    recent: Sequence[tuple[int, int]],
) -> ColumnBatch:
    """The batch for ``columns``, the store's answer for ``wanted``: ``seqs`` and ``wanted``
    are the batch's sequence numbers and UIDs, in order (a ``range`` and an array slice for a
    run of the mailbox); UIDs the store no longer has are skipped."""
    found = columns.uids
    if len(found) != len(wanted):
        present = set(found)
        seqs = [
            seq for seq, message_uid in zip(seqs, wanted, strict=True) if message_uid in present
        ]
    items = [b"UID"] if uid else []
    items += [i for i in request.items if isinstance(i, bytes) and i not in items]
    by_item = {
        b"UID": found,
        b"FLAGS": columns.flags,
        b"RFC822.SIZE": columns.sizes,
        b"INTERNALDATE": columns.internaldates,
        b"MODSEQ": columns.modseqs,
    }
    return ColumnBatch(
        tuple(items),
        request.changedsince,
        tuple(recent) if b"FLAGS" in items else (),
        seqs,
        found,
        tuple(by_item[i] for i in items),
    )


def render_batch(batch: ColumnBatch) -> bytes:
    """One line per message, the messages CHANGEDSINCE keeps.

    The whole batch is one ``%`` over the line template repeated once per message, fed the
    columns interleaved in one flat tuple: the formatting loop runs in C, with no tuple, line
    or other object per message (flag lists are rendered once per distinct flag set).
    Measured on 10,000 lines: 40% less CPU than a ``%`` per line."""
    values: list[Sequence[object]] = [batch.seqs]
    for item, column in zip(batch.items, batch.values, strict=True):
        if item == b"FLAGS":
            values.append(_rendered_flags(batch.uids, column, batch.recent))  # type: ignore[arg-type]
        elif item == b"INTERNALDATE":
            values.append(list(map(internaldate, column)))  # type: ignore[arg-type]
        else:
            values.append(column)
    since = batch.changedsince
    if since is not None:
        modseqs = batch.values[batch.items.index(b"MODSEQ")]  # CHANGEDSINCE asks for MODSEQ
        keep = [modseq > since for modseq in modseqs]  # type: ignore[operator]
        values = [list(compress(column, keep)) for column in values]
    count = len(values[0])
    if not count:
        return b""
    template = b"* %d FETCH (" + b" ".join(_INDEX_ITEMS[i][0] for i in batch.items) + b")\r\n"
    width = len(values)
    flat: list[object] = [None] * (width * count)
    for i, column in enumerate(values):
        flat[i::width] = column
    return (template * count) % tuple(flat)


def _rendered_flags(
    uids: Sequence[int], flags: Sequence[frozenset[str]], recent: Sequence[tuple[int, int]]
) -> list[bytes]:
    """Flag lists, with \\Recent for the UIDs in the session's ``recent`` ranges."""
    once = {flagset: flag_list(flagset) for flagset in set(flags)}
    rendered = list(map(once.__getitem__, flags))
    for low, high in recent:
        for i in range(bisect_left(uids, low), bisect_left(uids, high)):
            rendered[i] = flag_list(flags[i], True)
    return rendered


def _binary_value(message: StoredMessage, section: Section, root: mime.Part) -> bytes:
    """RFC 3516 §4.2: a part's decoded octets (the whole message, as it is, for ``[]``), or
    with ``BINARY.SIZE`` their count. A part that doesn't exist is empty."""
    if not section.path:
        data = message.content or b""
    else:
        part = mime.find_part(root, list(section.path))
        data = b"" if part is None else binary.decoded(part)
    if section.binary == "SIZE":
        return section.label + b" %d" % len(data)
    if section.partial is not None:
        origin, length = section.partial
        data = data[origin : origin + length]
    return section.label + b" " + binary.literal(data)


def _section_bytes(message: StoredMessage, section: Section, root: mime.Part | None) -> bytes:
    if section.header_only and not section.path:
        header = message.header if message.header is not None else b""
        if section.kind == "HEADER":
            data = header
        else:
            names = set(section.fields)
            data = mime.filter_header(header, names, section.kind.endswith(".NOT"))
        return data
    assert root is not None
    part = mime.find_part(root, list(section.path)) if section.path else root
    if part is None:
        return b""
    kind = section.kind
    if kind == "MIME":
        return part.header
    target = part if not section.path else part.message
    if kind in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
        if target is None:
            return b""
        if kind == "TEXT":
            return target.body
        if kind == "HEADER":
            return target.header
        return mime.filter_header(target.header, set(section.fields), kind.endswith(".NOT"))
    if not section.path:
        return message.content or b""
    return part.body


@dataclass(frozen=True)
class FileRange:
    """Octets ``[offset, offset + length)`` of the message file, to be streamed, not loaded."""

    offset: int
    length: int


STRUCTURE_ITEMS = (b"BODY", b"BODYSTRUCTURE")


def needs_bytes(request: FetchRequest) -> bool:
    """True when an item other than BODY/BODYSTRUCTURE needs the message's octets."""
    return any(
        (isinstance(i, Section) and not i.header_only) or i in (b"RFC822", b"RFC822.TEXT")
        for i in request.items
    )


def wants_structure(request: FetchRequest) -> bool:
    return any(i in STRUCTURE_ITEMS for i in request.items)


def structures(root: mime.Part) -> dict[bytes, bytes]:
    """BODY and BODYSTRUCTURE of a parsed message, as kept by ``IMailbox.remember``."""
    return {
        b"BODYSTRUCTURE": mime.bodystructure(root, True),
        b"BODY": mime.bodystructure(root, False),
    }


def streamable(request: FetchRequest, structure_known: bool = False) -> bool:
    """True when the request can be answered without loading the message: its content items
    are all byte ranges of the file (the whole message or its text, RFC 3501 §6.4.5), the rest
    comes from the index and the cached header. That is how a 50 MiB message is sent in
    chunks (DESIGN invariant 2)."""
    for item in request.items:
        if isinstance(item, Section):
            if (
                item.binary
                or item.path
                or item.kind
                not in (
                    "",
                    "TEXT",
                    "HEADER",
                    "HEADER.FIELDS",
                    "HEADER.FIELDS.NOT",
                )
            ):
                return False
        elif (item in STRUCTURE_ITEMS and not structure_known) or item == b"PREVIEW":
            return False
    return True


def _file_range(start: int, length: int, partial: tuple[int, int] | None) -> FileRange:
    if partial is not None:
        origin, count = partial
        origin = min(origin, length)
        return FileRange(start + origin, min(count, length - origin))
    return FileRange(start, length)


def render(
    seq: int,
    message: StoredMessage,
    request: FetchRequest,
    *,
    uid: bool,
    flags_changed: bool,
    recent: bool,
    modseq: bool,
    structure: dict[bytes, bytes] | None = None,
    origin: MessageOrigin | None = None,
) -> bytes:
    """One ``* seq FETCH (...)`` response, CRLF included (the message loaded, if needed)."""
    return b"".join(
        p  # type: ignore[misc]
        for p in render_parts(
            seq,
            message,
            request,
            uid=uid,
            flags_changed=flags_changed,
            recent=recent,
            modseq=modseq,
            structure=structure,
            origin=origin,
        )
    )


def render_parts(
    seq: int,
    message: StoredMessage,
    request: FetchRequest,
    *,
    uid: bool,
    flags_changed: bool,
    recent: bool,
    modseq: bool,
    structure: dict[bytes, bytes] | None = None,
    origin: MessageOrigin | None = None,
) -> list[bytes | FileRange]:
    """The response as pieces: bytes, and ``FileRange``s for whole-message or text literals
    when the message itself wasn't loaded (``message.content is None``). ``origin`` is the
    message's ``IMailbox.origins`` entry, needed for SAVEDATE and EMAILID."""
    pieces: list[bytes | FileRange] = [b"* %d FETCH (" % seq]
    first = True

    def add(*parts: bytes | FileRange) -> None:
        nonlocal first
        if not first:
            pieces.append(b" ")
        first = False
        pieces.extend(parts)

    parsed: list[mime.Part] = []

    def root() -> mime.Part:
        if not parsed:
            parsed.append(mime.parse(message.content or b""))
        return parsed[0]

    header_length = len(message.header) if message.header is not None else 0
    text_range = (header_length, message.size - header_length)
    seen_items: set[bytes] = set()
    if uid:
        add(b"UID %d" % message.uid)
        seen_items.add(b"UID")
    for item in request.items:
        if isinstance(item, Section) and item.binary:
            add(_binary_value(message, item, root()))
            continue
        if isinstance(item, Section):
            if message.content is None and not item.header_only:
                start, length = (0, message.size) if item.kind == "" else text_range
                span = _file_range(start, length, item.partial)
                add(item.label + b" {%d}\r\n" % span.length, span)
                continue
            data = _section_bytes(message, item, root() if not item.header_only else None)
            if item.partial is not None:
                origin, length = item.partial
                data = data[origin : origin + length]
            add(item.label + b" {%d}\r\n" % len(data) + without_nul(data))
            continue
        if item in seen_items:
            continue
        seen_items.add(item)
        if item == b"UID":
            add(b"UID %d" % message.uid)
        elif item == b"FLAGS":
            add(b"FLAGS " + flag_list(message.flags, recent))
        elif item == b"RFC822.SIZE":
            add(b"RFC822.SIZE %d" % message.size)
        elif item == b"INTERNALDATE":
            add(b"INTERNALDATE " + internaldate(message.internaldate))
        elif item == b"MODSEQ":
            add(b"MODSEQ (%d)" % message.modseq)
        elif item == b"ENVELOPE":
            fields = mime.parse_header_fields(message.header or b"")
            add(b"ENVELOPE " + mime.envelope(fields))
        elif item in STRUCTURE_ITEMS:
            if structure is None:
                structure = structures(root())
            add(item + b" " + structure[item])
        elif item == b"PREVIEW":
            add(b"PREVIEW " + string(preview.preview(root())))
        elif item == b"SAVEDATE":
            # RFC 8514: NIL where the save date isn't known; the stores always know one.
            add(b"SAVEDATE " + (internaldate(origin.savedate) if origin else b"NIL"))
        elif item == b"EMAILID":
            assert origin is not None, "EMAILID needs the message's origin"
            add(b"EMAILID (" + origin.emailid.encode("ascii") + b")")
        elif item == b"THREADID":
            thread = objectid.threadid(message.header or b"")
            add(b"THREADID " + (b"(" + thread.encode("ascii") + b")" if thread else b"NIL"))
        elif item == b"RFC822.HEADER":
            data = message.header or b""
            add(b"RFC822.HEADER {%d}\r\n" % len(data) + without_nul(data))
        elif item in (b"RFC822", b"RFC822.TEXT"):
            if message.content is None:
                start, length = (0, message.size) if item == b"RFC822" else text_range
                add(item + b" {%d}\r\n" % length, FileRange(start, length))
            else:
                data = message.content if item == b"RFC822" else root().body
                add(item + b" {%d}\r\n" % len(data) + without_nul(data))
    if flags_changed and b"FLAGS" not in seen_items:
        add(b"FLAGS " + flag_list(message.flags, recent))
    if modseq and b"MODSEQ" not in seen_items:
        add(b"MODSEQ (%d)" % message.modseq)
    pieces.append(b")\r\n")
    return pieces


def seen_needed(message: StoredMessage) -> bool:
    return SEEN not in message.flags
