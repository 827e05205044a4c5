"""What the spam checks read of a message: a bounded, decoded sample of it.

A message may be 50 MiB (DESIGN invariant 2); spam is small, and what gives it away is in the
header section and the first screens of text. So the checks see a ``Sample``: the header
section (at most ``HEADER_CAP`` octets) and the first ``body_cap`` octets of the body, parsed
once and decoded — RFC 2047 encoded words, transfer encodings, declared charsets (an unknown
or lying charset is itself a finding), HTML turned to text with its hidden parts, links and
images noted. The rules (``rules.py``) and the tokenizer (``tokens.py``) both work from it,
so a message is read and parsed once per check.

The parse is the standard library's (``email`` with the compat32 policy, ``html.parser``),
and so is the sample; but the common shapes of mail (a plain header section, a one-part or
plain multipart body, plain Content-Type parameters, plain HTML markup) are read here
directly, at a half to a fifth of the cost (the score runs on every message), each fast
path giving what the parser would, and handing it anything else
(``tests/spam/test_sample_fast.py`` holds them to it).

``digest`` identifies the message for the classifier's "nothing learned twice" rule: SHA-256
of what was read, without the fields a server adds on the way in (``Received:``,
``Return-Path:``, our ``X-Spam-*`` and ``Authentication-Results:``), so the copy in INBOX, the
copy moved to Junk and the file given to ``spam train`` are the same message.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

from txmailhost.encodedwords import decode_header
from txmailhost.headerlimit import STORED_HEADER_LIMIT
from txmailhost.hiddenparts import behind_reused_boundary
from txmailhost.mediatype import MEDIA_TYPE
from txmailhost.mimenesting import parse_bytes
from txmailhost.spam.htmltext import HTMLText, Link

# Octets of header section read; the rest of a longer one is ignored. All of any message SMTP
# takes and the fields the server adds above it (``headerlimit.py``): with 64 KiB, padding
# the header past it hid the Subject, the From and the whole body.
HEADER_CAP = STORED_HEADER_LIMIT
BODY_CAP = 256 * 1024  # octets of body read by default
FIELD_CAP = 4096  # characters of one header field the MIME parser is given
_CHUNK = 16 * 1024
_TRACE_FIELDS = frozenset(
    {
        "received",
        "return-path",
        "x-spam-status",
        "x-spam-score",
        "x-spam-report",
        "x-spam-flag",
        "x-virus-scanned",
        "authentication-results",
        "delivered-to",
    }
)
_URL = re.compile(r"""\b(?:https?://|www\.)[^\s<>"'(){}\[\]]{2,500}""", re.IGNORECASE)
_URL_HERE = re.compile(r"""(?:https?://|www\.)[^\s<>"'(){}\[\]]{2,500}""", re.IGNORECASE)


def find_urls(text: str) -> list[str]:
    """What ``_URL.finditer`` finds, in order, at a fraction of its cost: the regular
    expression tries its word boundary at every position (~70 us for 4 KiB of text), so only
    the places ``str.find`` shows "http" or "www." starting in the lower-case text are tried.
    That text keeps every index when it is as long (each character lowers to one), and no
    character but those ASCII letters lowers to or matches (ignoring case) "h", "t", "p",
    "w" or "." (checked over all of Unicode in the tests)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        return [match.group(0) for match in _URL.finditer(text)]
    starts: list[int] = []
    for prefix in ("http", "www."):
        at = lowered.find(prefix)
        while at >= 0:
            starts.append(at)
            at = lowered.find(prefix, at + 1)
    found: list[str] = []
    done = 0  # matches don't overlap: a start inside the last one is not tried
    for at in sorted(starts):
        if at < done:
            continue
        if at and (text[at - 1].isalnum() or text[at - 1] == "_"):  # \b
            continue
        match = _URL_HERE.match(text, at)
        if match is not None:
            found.append(match.group(0))
            done = match.end()
    return found


@dataclass
class Sample:
    """The decoded part of a message the checks look at (see the module docstring)."""

    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, value)
    text: str = ""  # the readable text: text/plain parts, and HTML parts turned into text
    hidden_text: str = ""  # HTML text a reader doesn't see (display:none, tiny, invisible)
    links: list[Link] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # in text and in links, in order
    images: int = 0  # <img> elements in HTML parts
    content_types: list[str] = field(default_factory=list)  # of the leaf parts
    attachments: list[str] = field(default_factory=list)  # file names, decoded
    charsets: list[str] = field(default_factory=list)  # declared in parts and encoded words
    unknown_charsets: list[str] = field(default_factory=list)
    undeclared_8bit: bool = False  # raw 8-bit octets where no charset says what they are
    boundary_reused: bool = False  # a multipart inside one with its boundary (hiding parts)
    truncated: bool = False  # the message is longer than what was read
    digest: str = ""  # for learning (``sample_of_bytes``); scoring leaves it empty
    memo: dict[str, int | float | None] = field(default_factory=dict)  # rules' shared work

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (any case), unfolded, or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


def read_capped(stream: BinaryIO, body_cap: int = BODY_CAP) -> tuple[bytes, bytes, bool]:
    """(header section, body start, truncated) from ``stream``, in chunks, never more than
    ``HEADER_CAP + body_cap`` octets (plus one chunk) whatever the message's size."""
    buffer = bytearray()
    looked = 0  # where the search for the empty line goes on from (a long header: each
    while True:  # chunk searched once, not the whole buffer again)
        end = buffer.find(b"\r\n\r\n", looked)
        if end < 0:
            end_lf = buffer.find(b"\n\n", looked)
            end = end_lf if end_lf >= 0 else -1
            sep = 2
        else:
            sep = 4
        if end >= 0:
            header, body = bytes(buffer[: end + sep]), bytes(buffer[end + sep :])
            break
        if len(buffer) >= HEADER_CAP:  # no end of the header section in sight: stop here
            return bytes(buffer[:HEADER_CAP]), b"", True
        chunk = stream.read(_CHUNK)
        if not chunk:
            return bytes(buffer), b"", False
        looked = max(0, len(buffer) - 3)
        buffer += chunk
    while len(body) <= body_cap:
        chunk = stream.read(min(_CHUNK, body_cap + 1 - len(body)))
        if not chunk:
            return header, body, False
        body += chunk
    return header, body[:body_cap], True


def sample_of(stream: BinaryIO, body_cap: int = BODY_CAP) -> Sample:
    """Read and decode the start of the message on ``stream`` (see the module docstring)."""
    header, body, truncated = read_capped(stream, body_cap)
    return sample_of_bytes(header, body, truncated)


def sample_of_bytes(
    header: bytes, body: bytes, truncated: bool = False, digest: bool = True
) -> Sample:
    """``digest=False``: ``Sample.digest`` is left empty. Only learning reads it (a message
    learned once); scoring doesn't, and the SHA-256 of the header fields and the body was
    3.6% of the scoring process's instructions for a 4 KiB message."""
    sample = Sample(truncated=truncated)
    fields = _raw_fields(header)
    try:
        message = _plain_message(header, body, fields)
        if message is None:
            message = _parsed(header, body, fields)
        leaves = [part for part in message.walk() if not part.is_multipart()]
        hidden = behind_reused_boundary(message)
        if hidden:
            sample.boundary_reused = True
            leaves += hidden
    except Exception:  # see _read_part_or_skip
        # MIME nested deeper than Python's stack (the standard library's parser and walk
        # recurse per level; 1,500 levels are enough), or any other structure it can't
        # take: read the body as one text part.
        leaves = [_one_text_part(body)]
    headers = sample.headers
    signed: list[str] = []  # what the digest covers, as text
    for name, value in fields:
        lowered = name.lower()
        if value.isascii() and "=?" not in value:
            headers.append((lowered, value))  # what _decode_header gives, without the call
        else:
            headers.append((lowered, _decoded_field(value, sample)))
        if digest and lowered not in _TRACE_FIELDS:
            if not name.isascii():
                name = name.encode("ascii", "replace").decode("ascii")
            signed.append(f"{name}:{value}")
    if digest:
        # One update of the joined text: the same octets as one update per field (values
        # from latin-1 have no surrogates, so their UTF-8 needs no "replace").
        hashed = hashlib.sha256("".join(signed).encode("utf-8"))
        hashed.update(b"\0")
        hashed.update(body)
        sample.digest = hashed.hexdigest()
    texts: list[str] = []
    hidden: list[str] = []
    for part in leaves:
        _read_part_or_skip(part, sample, texts, hidden)
    sample.text = "\n".join(texts)
    sample.hidden_text = " ".join(hidden)
    sample.urls.extend(find_urls(sample.text))
    return sample


def _one_text_part(body: bytes) -> Message:
    """``body`` as a text/plain part, as it is."""
    part = Message(policy=email.policy.compat32)
    part["Content-Type"] = "text/plain"
    part.set_payload(body.decode("ascii", "surrogateescape"))
    return part


def _parsed(header: bytes, body: bytes, fields: list[tuple[str, str]]) -> Message:
    """The message as the standard library's MIME parser reads it."""
    if any(len(value) > FIELD_CAP for _name, value in fields):
        # The standard library's parameter parsing costs ~0.2 s for a Content-Type of 14,000
        # parameters (seen in spam): the parser gets such fields cut short.
        header = (
            b"".join(f"{name}: {value[:FIELD_CAP]}\r\n".encode("latin-1") for name, value in fields)
            + b"\r\n"
        )
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    message = parser.parsebytes(header, headersonly=True)
    if (
        message.get_content_maintype() == "multipart"
        or message.defects  # a line that ends the header section early, and the like
        or header.startswith((b"\r\n", b"\n"))  # no fields: the body begins one line on
    ):
        # TooNested past mimenesting.MAX_DEPTH levels: read as one text part (sample_of_bytes)
        return parse_bytes(header + body)
    # One part: the full parse would split the body into lines and join them again as its
    # payload (half the parse's time for a 4 KiB message); it is the body as is.
    message.set_payload(body.decode("ascii", "surrogateescape"))
    return message


# A header section the feed parser reads as fields and nothing else: lines that end in LF
# (CRLF: the CR is text here, and none stands alone), each a field (a name of printable ASCII
# and a colon: the parser's pattern, less "From " and an empty name) or its continuation, and
# an empty line at the end.
_PLAIN_SECTION = re.compile(r"(?:[\041-\071\073-\176]+:[^\n]*\n(?:[ \t][^\n]*\n)*)+\r?\n")
_CONTENT_FIELD = re.compile(
    r"^[cC][oO][nN][tT][eE][nN][tT]-[^:\n]*:[^\n]*\n(?:[ \t][^\n]*\n)*", re.M
)


def _plain_message(header: bytes, body: bytes, fields: list[tuple[str, str]]) -> Message | None:
    """What ``_parsed`` gives, as far as this module reads it (the Content-* fields, the
    body, the parts), for a message whose header section is plain (``_PLAIN_SECTION``) and
    that is one part or a plain multipart (``_plain_multipart``): built without the feed
    parser, a third of its time for a one-part 4 KiB message; None for any other.

    For such a section the parser does no more than this: each field's lines, their line
    ends kept, go to the policy's ``header_source_parse`` and the result to ``set_raw``; it
    notes no defect. (A field longer than ``FIELD_CAP``: None, as ``_parsed`` cuts it.)"""
    if any(len(value) > FIELD_CAP for _name, value in fields):
        return None
    text = header.decode("ascii", "surrogateescape")
    if text.count("\r") != text.count("\r\n") or _PLAIN_SECTION.fullmatch(text) is None:
        return None
    message = _content_fields_of(text)
    if message.get_content_maintype() == "multipart":
        return _plain_multipart(message, body)
    message.set_payload(body.decode("ascii", "surrogateescape"))
    return message


def _content_fields_of(plain_section: str) -> Message:
    """A message with the Content-* fields of a plain header section, as the parser sets
    them."""
    message = Message(policy=email.policy.compat32)
    parse = message.policy.header_source_parse
    for content_field in _CONTENT_FIELD.finditer(plain_section):
        lines = content_field.group().split("\n")[:-1]
        message.set_raw(*parse([line + "\n" for line in lines]))
    return message


def _plain_multipart(message: Message, body: bytes) -> Message | None:
    """``message`` (multipart) with its parts as the feed parser reads them from ``body``,
    when the body is plain; None when it is not.

    Plain: lines that end in LF or CRLF (no lone CR); a boundary line (RFC 2046: "--",
    the boundary, white space; "--" after the boundary for the last) before the first part,
    never two together, and one that closes the last; each part a plain header section
    (or none: an empty first line) and a body, and neither multipart nor message/* (the
    parser reads those as messages), in a multipart that is not a digest (whose parts are
    message/rfc822 by default). The parser, for such a body, gives each part its fields
    and the lines up to the next boundary line as payload, less the last line end (RFC
    2046: it belongs to the boundary); preamble, epilogue and defects are not read here.
    The parser compiles a regular expression for each boundary (~0.3 ms: a multipart
    message's parse costs ten times a one-part one's)."""
    boundary = message.get_boundary()
    if not boundary or message.get_content_subtype() == "digest":
        return None
    text = body.decode("ascii", "surrogateescape")
    if text.count("\r") != text.count("\r\n"):
        return None
    separator = "--" + boundary
    starts = [0] if text.startswith(separator) else []  # of lines that may be boundaries
    found = text.find("\n" + separator)
    while found >= 0:
        starts.append(found + 1)
        found = text.find("\n" + separator, found + 1)
    bounds: list[tuple[int, int]] = []  # (start, end after the LF) of the boundary lines
    closed = False
    for start in starts:
        end = text.find("\n", start) + 1
        if not end:  # the last line has no LF
            return None
        rest = text[start + len(separator) : end - 1].removesuffix("\r")
        if not rest.strip(" \t"):
            bounds.append((start, end))
        elif rest[:2] == "--" and not rest[2:].strip(" \t"):
            bounds.append((start, end))
            closed = True
            break
    if not closed or len(bounds) < 2:
        return None
    for (_start, after), (following, _end) in itertools.pairwise(bounds):
        if following == after:  # the parser takes boundary lines together as one
            return None
        part = _plain_part(text[after:following])
        if part is None:
            return None
        message.attach(part)
    return message


def _plain_part(text: str) -> Message | None:
    """A part of ``_plain_multipart``'s, from its lines (each ending in LF)."""
    if text.startswith(("\n", "\r\n")):  # no fields
        body = text.index("\n") + 1
    else:
        blank = [at for at in (text.find("\n\n"), text.find("\n\r\n")) if at >= 0]
        if not blank:
            return None
        body = text.index("\n", min(blank) + 1) + 1  # after the first empty line
        if _PLAIN_SECTION.fullmatch(text, 0, body) is None:
            return None
    part = _content_fields_of(text[:body])
    if part.get_content_maintype() in ("multipart", "message"):
        return None
    payload = text[body:]
    part.set_payload(payload[:-2] if payload.endswith("\r\n") else payload[:-1])
    return part


_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips


def _raw_fields(header: bytes) -> list[tuple[str, str]]:
    """The header section's fields, unfolded, values as latin-1 text (8-bit kept as is).

    Lines end at LF, less one CR before it (``re.split(rb"\r?\n", header)``); decoded once
    as latin-1 (one character per octet) and stripped of what ``bytes.strip`` strips."""
    fields: list[tuple[str, str]] = []
    for line in header.decode("latin-1").split("\n"):
        if line[-1:] == "\r":
            line = line[:-1]
        if not line:
            continue
        if line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip(_ASCII_SPACE))
            continue
        name, colon, value = line.partition(":")
        if colon and name:
            name = name.strip(_ASCII_SPACE)
            if " " not in name:
                fields.append((name, value.strip(_ASCII_SPACE)))
    return fields


def _decoded_field(value: str, sample: Sample) -> str:
    """``_decode_header`` of one field's value; the value as it is where that fails (see
    ``_read_part_or_skip``)."""
    try:
        return _decode_header(value, sample)
    except Exception:  # one odd field must not fail the check
        return value


def _decode_header(value: str, sample: Sample) -> str:
    """RFC 2047 encoded words decoded; raw 8-bit octets read as UTF-8 (RFC 6532) when they
    are that, else noted as undeclared. ``value`` holds octets as latin-1 text, one
    character per octet (as ``_raw_fields`` gives a field), never decoded text."""
    if not value.isascii():
        raw = value.encode("latin-1")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            sample.undeclared_8bit = True
            return raw.decode("latin-1")
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except (ValueError, email.errors.HeaderParseError):
        return value
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        if charset:
            sample.charsets.append(charset.lower())
        out.append(_decode_bytes(chunk, charset, sample))
    return "".join(out)


def _decode_bytes(data: bytes, charset: str | None, sample: Sample) -> str:
    """``data`` as text in ``charset``. A charset no codec decodes text with is noted as
    unknown (``unknown_charsets``) and the data read as if none were declared: no such codec,
    a codec that is not for text ("base64", "rot13": LookupError), one that takes no
    "replace" ("idna") or always fails ("undefined"): UnicodeError; a NUL in the name:
    ValueError."""
    if charset and charset.lower() not in ("us-ascii", "ascii"):
        try:
            return data.decode(charset, errors="replace")
        except (LookupError, UnicodeError, ValueError):
            sample.unknown_charsets.append(charset.lower())
    if not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            sample.undeclared_8bit = True
            return data.decode("latin-1")
    return data.decode("ascii")


def _read_part_or_skip(part: Message, sample: Sample, texts: list[str], hidden: list[str]) -> None:
    """``_read_part``, or nothing more of this part where it fails.

    The standard library's MIME code raises on what it meets in spam and in odd but honest
    mail alike (TypeError sorting RFC 2231 continuations numbered and not, ValueError for a
    4,301-digit one, RecursionError, a codec's own errors); a failed check is a 451 the
    sender's server retries for days, so what can't be read of one part is left out and
    the rest of the message is still read and scored."""
    try:
        _read_part(part, sample, texts, hidden)
    except Exception:  # one odd part must not fail the check
        return


def _read_part(part: Message, sample: Sample, texts: list[str], hidden: list[str]) -> None:
    known = _plain_content_fields(part)
    if known is None:
        content_type, filename, disposition, charset = _content_fields(part, sample)
    else:
        content_type, filename, disposition, charset = known
        if filename:
            filename = _decode_header(filename, sample)  # ASCII: its encoded words
    sample.content_types.append(content_type)
    if filename:
        sample.attachments.append(filename)
    if content_type.startswith("multipart/"):
        # A leaf, though multipart: its boundary never appears in the body (the parser's
        # StartBoundaryNotFoundDefect). Its body is read as text, as a mail reader showing it
        # shows it; else a spam whose boundary is broken would hide all its words.
        content_type = "text/plain"
    if not content_type.startswith("text/") or disposition.startswith("attachment"):
        return
    if charset:
        sample.charsets.append(charset)
    try:
        payload = part.get_payload(decode=True) or b""
    except (ValueError, AssertionError):
        payload = b""
    if not isinstance(payload, bytes):
        return
    text = _decode_bytes(payload, charset, sample)
    if content_type == "text/html":
        page = HTMLText()
        with contextlib.suppress(AssertionError, ValueError):  # what the parser gave up on
            page.read(text)
        texts.append(page.text())
        hidden.append(page.hidden_text())
        sample.links.extend(page.links)
        sample.urls.extend(link.href for link in page.links)
        sample.images += page.images
    elif content_type in ("text/plain", "text/enriched", "text/richtext"):
        texts.append(text)


def _content_fields(part: Message, sample: Sample) -> tuple[str, str | None, str, str | None]:
    """What ``_plain_content_fields`` gives, for any part, with the file name decoded
    (``_attachment_name``); a charset or name that can't be read is None.

    Read from a copy of the part's Content-Type and Content-Disposition whose octets are
    latin-1 text, as ``_raw_fields`` gives a field: for a field with 8-bit octets (a raw
    UTF-8 ``filename="Отчёт.pdf"``, as RFC 6532 allows and mail programs write) the part
    gives a ``Header``, which has no ``lower()`` and whose ``str`` has U+FFFD for them."""
    fields = Message(policy=email.policy.compat32)
    fields.set_default_type(part.get_default_type())
    for name in ("content-type", "content-disposition"):
        value = next((v for key, v in part.raw_items() if key.lower() == name), None)
        if value is not None:
            fields.set_raw(name, str(value).encode("utf-8", "surrogateescape").decode("latin-1"))
    content_type = fields.get_content_type()
    if not MEDIA_TYPE.fullmatch(content_type):
        # "TEXT/PLAIN charset=US-ASCII" (no ";"): the standard library keeps any value with
        # one "/"; RFC 2045 5.2 reads a syntactically invalid type as text/plain, as mail
        # readers do, so such a part's text is read, not skipped as an unknown type.
        content_type = "text/plain"
    disposition = (fields.get("content-disposition") or "").lower()
    try:
        charset = fields.get_content_charset()
    except Exception:  # the parameters' own parse (see _read_part_or_skip)
        charset = None
    try:
        filename = _attachment_name(fields, sample)
    except Exception:
        filename = None
    return content_type, filename, disposition, charset


def _attachment_name(fields: Message, sample: Sample) -> str | None:
    """``fields.get_filename()``, decoded: an RFC 2231 value (``filename*=UTF-8''%D0%9E...``)
    from its own charset (``_decode_bytes``: an unknown one is noted), any other as a
    field's text (``_decode_header``: encoded words, raw UTF-8)."""
    missing = object()
    value = fields.get_param("filename", missing, "content-disposition")
    if value is missing:
        value = fields.get_param("name", missing, "content-type")
    if value is missing:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, octets as latin-1 text)
        charset, _language, octets = value
        return _decode_bytes(octets.encode("raw-unicode-escape"), charset, sample).strip()
    return _decode_header(email.utils.collapse_rfc2231_value(value).strip(), sample)


# A Content-Type or Content-Disposition value of ASCII tokens and parameters whose values are
# tokens or quoted strings with no quote, backslash, semicolon, angle bracket or line end.
_TOKEN = r'[^\s;"\\=<>*]+'
_PLAIN_PARAM = re.compile(
    rf'[ \t\r\n]*;[ \t\r\n]*({_TOKEN})[ \t\r\n]*=[ \t\r\n]*("[^"\\;<>\r\n]*"|[^\s;"\\<>]+)'
)
_PLAIN_CONTENT = re.compile(rf"[ \t\r\n]*({_TOKEN})((?:{_PLAIN_PARAM.pattern})*)[ \t\r\n]*")


def _plain_content_fields(part: Message) -> tuple[str, str | None, str, str | None] | None:
    """(``get_content_type()``, ``get_filename()``, the Content-Disposition field lower-case
    or "", ``get_content_charset()``) of ``part`` when its two fields are plain (see
    ``_PLAIN_CONTENT``) or absent; None when they are not (the part's methods answer then).

    For plain fields the standard library's parameter parsing (quote counting, RFC 2231
    continuations, quoting each value and unquoting it again) comes to this: the first
    parameter of a name (lower-case) has its value, unquoted; a third of a one-part
    message's time goes to it."""
    content_type = disposition = None
    for name, value in part.raw_items():
        name = name.lower()
        if name == "content-type":
            if content_type is None:
                content_type = value
        elif name == "content-disposition" and disposition is None:
            disposition = value
    if content_type is None:
        kind, type_params = part.get_default_type(), {}
    else:
        main, type_params = _plain_params(content_type)
        if main is None or main.lower() in ("charset", "name"):  # read as a parameter
            return None
        kind = main.lower() if main.count("/") == 1 else "text/plain"  # RFC 2045 5.2
    filename = type_params.get("name")
    if disposition is not None:
        main, disposition_params = _plain_params(disposition)
        if main is None or main.lower() == "filename":
            return None
        if "filename" in disposition_params:
            filename = disposition_params["filename"]
        disposition = disposition.lower()
    charset = type_params.get("charset")
    return (
        kind,
        None if filename is None else filename.strip(),
        disposition or "",
        None if charset is None else charset.lower(),
    )


def _plain_params(value: str) -> tuple[str | None, dict[str, str]]:
    """The first part of a plain field value and its parameters; (None, {}) if not plain."""
    if not value.isascii():
        return None, {}
    match = _PLAIN_CONTENT.fullmatch(value)
    if match is None:
        return None, {}
    params: dict[str, str] = {}
    for name, param in _PLAIN_PARAM.findall(match.group(2)):
        params.setdefault(name.lower(), param[1:-1] if param[:1] == '"' else param)
    return match.group(1), params
