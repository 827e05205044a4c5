"""MIME structure of a stored message, for FETCH ENVELOPE, BODYSTRUCTURE and BODY[section].

Why our own splitter and not ``email.parser``: IMAP sections must be *exact byte ranges* of the
stored file (RFC 3501 §6.4.5: ``BODY[2.1]`` is the octets of that part, not a re-serialisation),
and Twisted's BODYSTRUCTURE crashes on a trailing ``;`` (#3950), lowercases parameter values and
fails on raw 8-bit headers. Here everything stays bytes: a header value with 8-bit octets is sent
back as a literal, exactly as received; a broken header (no boundary, no blank line, unbalanced
quotes) yields a plausible structure instead of an exception. Nesting depth and the number of
parts are bounded so a hostile message can't make one FETCH expensive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from txmailhost import addresslist
from txmailhost.imap.replies import nstring, string
from txmailhost.mediatype import MEDIA_TYPE_BYTES

MAX_DEPTH = 20
MAX_PARTS = 1000
CRLF = b"\r\n"


def parse_header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, unfolded value) for each field of a header block (RFC 5322 §2.2.3)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header_lines(block):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        value = value.replace(b"\r\n", b"").replace(b"\n", b"").strip()
        fields.append((name.strip().lower(), value))
    return fields


def header_lines(block: bytes) -> list[bytes]:
    """Each field with its continuation lines (CRLF kept), blank line excluded.

    A field's lines are joined once it is complete: appending to the bytes of a field for each
    continuation line made a header of many folded lines cost quadratic time (a 640 KB header
    took 3 s of the reactor in FETCH BODYSTRUCTURE; found by tests/imap/test_mime_props.py).
    """
    fields: list[list[bytes]] = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"\r\n".join(lines) for lines in fields]


def filter_header(block: bytes, names: set[bytes], exclude: bool) -> bytes:
    """``HEADER.FIELDS (names)`` / ``HEADER.FIELDS.NOT``: the matching lines and a blank line."""
    kept = []
    for line in header_lines(block):
        name = line.partition(b":")[0].strip().lower()
        if (name in names) != exclude:
            kept.append(line + CRLF)
    return b"".join(kept) + CRLF


def _split_params(value: bytes) -> list[bytes]:
    """Split on ``;`` outside quoted strings (a quoted ``;`` stays inside its parameter)."""
    pieces, current, quoted, escaped = [], bytearray(), False, False
    for byte in value:
        c = bytes((byte,))
        if escaped:
            escaped = False
        elif c == b"\\" and quoted:
            escaped = True
        elif c == b'"':
            quoted = not quoted
        elif c == b";" and not quoted:
            pieces.append(bytes(current))
            current = bytearray()
            continue
        current += c
    pieces.append(bytes(current))
    return pieces


def _unquote(value: bytes) -> bytes:
    value = value.strip()
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        value = value[1:-1]
        out, i = bytearray(), 0
        while i < len(value):
            if value[i : i + 1] == b"\\" and i + 1 < len(value):
                i += 1
            out += value[i : i + 1]
            i += 1
        return bytes(out)
    return value


def parse_content_value(value: bytes | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """``text/plain; charset="utf-8"`` → (b'text/plain', [(b'charset', b'utf-8')]).

    Empty pieces (a trailing ``;``) and pieces without ``=`` are skipped, not fatal.
    """
    if not value:
        return b"", []
    first, *rest = _split_params(value)
    params = []
    for piece in rest:
        name, sep, val = piece.partition(b"=")
        name = name.strip()
        if sep and name:
            params.append((name, _unquote(val)))
    return first.strip().lower(), params


@dataclass
class Part:
    """One MIME entity of the message ``raw``: header at ``[start, body_start)``, body to
    ``end``. ``children`` for multiparts; ``message`` for an encapsulated message/rfc822."""

    raw: bytes
    start: int
    body_start: int
    end: int
    fields: list[tuple[bytes, bytes]]
    maintype: bytes
    subtype: bytes
    params: list[tuple[bytes, bytes]]
    children: list[Part] = field(default_factory=list)
    message: Part | None = None

    @property
    def header(self) -> bytes:
        return self.raw[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        return self.raw[self.body_start : self.end]

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None


class _Budget:
    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self.parts = 0
        self.max_depth = max_depth
        self.cut = False  # a multipart's parts were left out for want of budget


def parse(raw: bytes, max_depth: int = MAX_DEPTH) -> Part:
    """The MIME tree of a whole message: at most ``MAX_PARTS`` parts, ``max_depth`` levels
    (deeper entities are leaves; the webmail, which shows text from deeper, asks for more)."""
    return parse_counted(raw, max_depth)[0]


def parse_counted(raw: bytes, max_depth: int = MAX_DEPTH) -> tuple[Part, bool]:
    """``parse``, and whether parts were left out past ``MAX_PARTS`` (the webmail says so)."""
    budget = _Budget(max_depth)
    return _parse_entity(raw, 0, len(raw), b"text/plain", 0, budget), budget.cut


def _header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body starts: after the blank line, or ``end`` if the entity is all header."""
    if raw.startswith(CRLF, start):
        return start + 2
    blank = raw.find(b"\r\n\r\n", start, end)
    return end if blank < 0 else blank + 4


def _parse_entity(
    raw: bytes, start: int, end: int, default_type: bytes, depth: int, budget: _Budget
) -> Part:
    budget.parts += 1
    body_start = _header_end(raw, start, end)
    fields = parse_header_fields(raw[start:body_start])
    ctype, params = parse_content_value(_last(fields, b"content-type"))
    if not MEDIA_TYPE_BYTES.fullmatch(ctype):  # absent, or invalid ("text/plain charset=x", no ";")
        ctype, params = default_type, ([(b"charset", b"us-ascii")] if not ctype else params)
        if default_type != b"text/plain":
            params = []
    maintype, _, subtype = ctype.partition(b"/")
    if maintype == b"text" and not any(k.lower() == b"charset" for k, _v in params):
        params = [(b"charset", b"us-ascii"), *params]
    part = Part(raw, start, body_start, end, fields, maintype, subtype.strip(), params)
    if depth >= budget.max_depth or budget.parts >= MAX_PARTS:
        budget.cut |= budget.parts >= MAX_PARTS and maintype == b"multipart"
        return part
    if maintype == b"multipart":
        boundary = dict((k.lower(), v) for k, v in params).get(b"boundary")
        room = MAX_PARTS - budget.parts
        spans = _split_multipart(raw, body_start, end, boundary, room + 1) if boundary else []
        if len(spans) > room:
            budget.cut, spans = True, spans[:room]
        child_default = b"message/rfc822" if subtype == b"digest" else b"text/plain"
        for child_start, child_end in spans:
            if budget.parts >= MAX_PARTS:
                budget.cut = True
                break
            part.children.append(
                _parse_entity(raw, child_start, child_end, child_default, depth + 1, budget)
            )
        if not part.children:
            # A multipart without a usable boundary: serve it as one text part.
            part.maintype, part.subtype = b"text", b"plain"
            part.params = [(b"charset", b"us-ascii")]
    elif maintype == b"message" and part.subtype == b"rfc822":
        part.message = _parse_entity(raw, body_start, end, b"text/plain", depth + 1, budget)
    return part


def _last(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    found = None
    for key, value in fields:
        if key == name:
            found = value
    return found


def _split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes, limit: int = MAX_PARTS
) -> list[tuple[int, int]]:
    """Byte spans of the body parts (RFC 2046 §5.1.1): the CRLF before a delimiter belongs to
    the delimiter; a missing close delimiter ends the last part at the end of the body.

    A part that is itself a multipart with the *same* boundary (RFC 2046 forbids it; Outlook
    Express for the Mac wrote it, and malware uses it so that an attachment is seen by
    some readers and not by others) owns the delimiters that follow, up to its own close
    delimiter, as Dovecot reads it: the innermost multipart a delimiter could belong to
    takes it. Read the other way, its parts would be ours and whatever came after its close
    delimiter (the attachment) an epilogue nobody shows."""
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    inner = 0  # multiparts with our boundary open inside the current part
    search = start
    while search < end:
        if search == start and raw.startswith(delimiter, start):
            found = start
        else:
            crlf = raw.find(CRLF + delimiter, search, end)
            if crlf < 0:
                break
            found = crlf + 2
        after = found + len(delimiter)
        line_end = raw.find(CRLF, after, end)
        if line_end < 0:
            line_end = end
        rest = raw[after:line_end]
        closing = rest.startswith(b"--")
        if not closing and rest.strip(b" \t"):
            search = after  # a longer boundary that starts with ours: not a delimiter
            continue
        search = line_end
        if inner:  # the delimiter of a multipart inside the current part
            if closing:
                inner -= 1
            elif _same_boundary(raw, min(line_end + 2, end), end, boundary):
                inner = min(inner + 1, MAX_DEPTH)
            continue
        if part_start is not None:
            spans.append((part_start, max(part_start, found - 2) if found > start else found))
            if len(spans) >= limit:
                return spans  # the parts after these would be past the budget
        if closing:
            return spans
        part_start = min(line_end + 2, end)
        inner = int(_same_boundary(raw, part_start, end, boundary))
    if part_start is not None and part_start < end:
        spans.append((part_start, end))
    return spans


def _same_boundary(raw: bytes, start: int, end: int, boundary: bytes) -> bool:
    """Whether the entity at ``start`` is a multipart whose boundary is ``boundary``. Its
    header is parsed only when the boundary's octets are in it (almost never)."""
    header_end = _header_end(raw, start, end)
    if raw.find(boundary, start, header_end) < 0:
        return False
    fields = parse_header_fields(raw[start:header_end])
    ctype, params = parse_content_value(_last(fields, b"content-type"))
    if not ctype.startswith(b"multipart/") or not MEDIA_TYPE_BYTES.fullmatch(ctype):
        return False
    return dict((k.lower(), v) for k, v in params).get(b"boundary") == boundary


# -- locating sections -----------------------------------------------------------------------


def find_part(root: Part, path: list[int]) -> Part | None:
    """The part a section number names (RFC 3501 §6.4.5): numbers index the children of a
    multipart; in a message/rfc822 part they index the encapsulated message's parts; a
    non-multipart entity is its own part 1."""
    part = root
    for index, number in enumerate(path):
        container = part.message if (index and part.message is not None) else part
        if container.children:
            if not 1 <= number <= len(container.children):
                return None
            part = container.children[number - 1]
        elif number == 1:
            part = container
        else:
            return None
    return part


# -- ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2) ---------------------------------------------


def _addresses(value: bytes | None) -> bytes:
    """An ENVELOPE address list (RFC 3501 §7.4.2): ``(name adl mailbox host)`` per address,
    a group as ``(NIL NIL "group" NIL)`` ... ``(NIL NIL NIL NIL)``; NIL when there is none."""
    if value is None:
        return b"NIL"
    items = addresslist.parse(value.decode("utf-8", "surrogateescape"))
    if not items:
        return b"NIL"  # an empty header counts as absent
    rendered = []
    for item in items:
        if isinstance(item, addresslist.Mailbox):
            rendered.append(
                b"("
                + nstring(item.name)
                + b" "
                + nstring(item.route)
                + b" "
                + string(item.local)
                + b" "
                + string(item.domain or "")
                + b")"
            )
        elif isinstance(item, addresslist.GroupStart):
            rendered.append(b"(NIL NIL " + string(item.name) + b" NIL)")
        else:
            rendered.append(b"(NIL NIL NIL NIL)")
    return b"(" + b"".join(rendered) + b")"


def envelope(fields: list[tuple[bytes, bytes]]) -> bytes:
    def get(name: bytes) -> bytes | None:
        for key, value in fields:
            if key == name:
                return value
        return None

    def every(name: bytes) -> bytes | None:
        """All of a recipient field's addresses when it came more than once (RFC 5322
        allows one; ``To:``, ``Cc:``, ``cc:`` lines are seen): reading the first alone would
        leave recipients out of a reply to all, as Dovecot doesn't."""
        values = [value for key, value in fields if key == name]
        if len(values) < 2:
            return values[0] if values else None
        return b", ".join(value for value in values if value.strip(b" \t,")) or values[0]

    # RFC 3501 §7.4.2: Sender and Reply-To absent, or present but empty, are From.
    author = _addresses(get(b"from"))
    sender = _addresses(get(b"sender"))
    reply_to = _addresses(get(b"reply-to"))
    items = [
        nstring(get(b"date")),
        nstring(get(b"subject")),
        author,
        author if sender == b"NIL" else sender,
        author if reply_to == b"NIL" else reply_to,
        _addresses(every(b"to")),
        _addresses(every(b"cc")),
        _addresses(every(b"bcc")),
        nstring(get(b"in-reply-to")),
        nstring(get(b"message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


def _params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(k) + b" " + string(v) for k, v in params) + b")"


def _disposition(part: Part) -> bytes:
    value = part.get(b"content-disposition")
    kind, params = parse_content_value(value)
    if not kind:
        return b"NIL"
    return b"(" + string(kind) + b" " + _params(params) + b")"


def _language(part: Part) -> bytes:
    value = part.get(b"content-language")
    if not value:
        return b"NIL"
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    if len(tags) == 1:
        return string(tags[0])
    return b"(" + b" ".join(string(t) for t in tags) + b")"


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def bodystructure(part: Part, extensible: bool = True) -> bytes:
    """``BODYSTRUCTURE`` (with extension data) or ``BODY`` (without) of ``part``."""
    if part.children:
        inner = b"".join(bodystructure(child, extensible) for child in part.children)
        out = inner + b" " + string(part.subtype)
        if extensible:
            out += (
                b" "
                + b" ".join((_params(part.params), _disposition(part), _language(part)))
                + b" "
                + nstring(part.get(b"content-location"))
            )
        return b"(" + out + b")"
    encoding = part.get(b"content-transfer-encoding") or b"7BIT"
    body = part.body
    fields = [
        string(part.maintype),
        string(part.subtype),
        _params(part.params),
        nstring(part.get(b"content-id")),
        nstring(part.get(b"content-description")),
        string(encoding.upper() if encoding.isascii() else encoding),
        b"%d" % len(body),
    ]
    if part.message is not None:
        fields += [
            envelope(part.message.fields),
            bodystructure(part.message, extensible),
            b"%d" % _lines(body),
        ]
    elif part.maintype == b"text":
        fields.append(b"%d" % _lines(body))
    if extensible:
        fields += [
            nstring(part.get(b"content-md5")),
            _disposition(part),
            _language(part),
            nstring(part.get(b"content-location")),
        ]
    return b"(" + b" ".join(fields) + b")"
