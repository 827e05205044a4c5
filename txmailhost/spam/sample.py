"""What the spam checks read of a message: a bounded, decoded sample of it.

A message may be 50 MiB (DESIGN invariant 2); spam is small, and what gives it away is in the
header section and the first screens of text. So the checks see a ``Sample``: the header
section (at most ``HEADER_CAP`` octets) and the first ``body_cap`` octets of the body, parsed
once with the standard library's MIME parser and decoded — RFC 2047 encoded words, transfer
encodings, declared charsets (an unknown or lying charset is itself a finding), HTML turned to
text with its hidden parts, links and images noted. The rules (``rules.py``) and the tokenizer
(``tokens.py``) both work from it, so a message is read and parsed once per check.

``digest`` identifies the message for the classifier's "nothing learned twice" rule: SHA-256
of what was read, without the fields a server adds on the way in (``Received:``,
``Return-Path:``, our ``X-Spam-*`` and ``Authentication-Results:``), so the copy in INBOX, the
copy moved to Junk and the file given to ``spam train`` are the same message.
"""

from __future__ import annotations

import codecs
import email.errors
import email.header
import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import BinaryIO

HEADER_CAP = 64 * 1024  # octets of header section read; the rest of a longer one is ignored
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
    expression tries its word boundary at every position (~70 us for 4 KiB of text), so for
    ASCII text (whose lower case keeps every index) only the places ``str.find`` shows
    "http" or "www." starting are tried."""
    if not text.isascii():
        return [match.group(0) for match in _URL.finditer(text)]
    lowered = text.lower()
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


@dataclass(frozen=True)
class Link:
    """An HTML anchor: where it goes and the text the reader sees."""

    href: str
    text: str


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
    truncated: bool = False  # the message is longer than what was read
    digest: str = ""
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
    buffer = b""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            end_lf = buffer.find(b"\n\n")
            end = end_lf if end_lf >= 0 else -1
            sep = 2
        else:
            sep = 4
        if end >= 0:
            header, body = buffer[: end + sep], buffer[end + sep :]
            break
        if len(buffer) >= HEADER_CAP:  # no end of the header section in sight: stop here
            return buffer[:HEADER_CAP], b"", True
        chunk = stream.read(_CHUNK)
        if not chunk:
            return buffer, b"", False
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


def sample_of_bytes(header: bytes, body: bytes, truncated: bool = False) -> Sample:
    sample = Sample(truncated=truncated)
    fields = _raw_fields(header)
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
        message = parser.parsebytes(header + body)
    else:
        # One part: the full parse would split the body into lines and join them again as
        # its payload (half the parse's time for a 4 KiB message); it is the body as is.
        message.set_payload(body.decode("ascii", "surrogateescape"))
    digest = hashlib.sha256()
    for name, value in fields:
        lowered = name.lower()
        decoded = _decode_header(value, sample)
        sample.headers.append((lowered, decoded))
        if lowered not in _TRACE_FIELDS:
            digest.update(name.encode("ascii", "replace") + b":" + value.encode("utf-8", "replace"))
    digest.update(b"\0" + body)
    sample.digest = digest.hexdigest()
    texts: list[str] = []
    hidden: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        _read_part(part, sample, texts, hidden)
    sample.text = "\n".join(texts)
    sample.hidden_text = " ".join(hidden)
    sample.urls.extend(find_urls(sample.text))
    return sample


def _raw_fields(header: bytes) -> list[tuple[str, str]]:
    """The header section's fields, unfolded, values as latin-1 text (8-bit kept as is)."""
    fields: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n", header):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip().decode("latin-1"))
            continue
        name, colon, value = line.partition(b":")
        if colon and name and b" " not in name.strip():
            fields.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    return fields


def _decode_header(value: str, sample: Sample) -> str:
    """RFC 2047 encoded words decoded; raw 8-bit octets read as UTF-8 (RFC 6532) when they
    are that, else noted as undeclared."""
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
        pieces = email.header.decode_header(value)
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
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            sample.unknown_charsets.append(charset.lower())
            charset = None
    if charset is None or charset.lower() in ("us-ascii", "ascii"):
        if not data.isascii():
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                sample.undeclared_8bit = True
                return data.decode("latin-1")
        return data.decode("ascii")
    return data.decode(charset, errors="replace")


def _read_part(part: Message, sample: Sample, texts: list[str], hidden: list[str]) -> None:
    content_type = part.get_content_type()
    sample.content_types.append(content_type)
    filename = part.get_filename()
    if filename:
        sample.attachments.append(_decode_header(filename, sample))
    disposition = (part.get("Content-Disposition") or "").lower()
    if not content_type.startswith("text/") or disposition.startswith("attachment"):
        return
    charset = part.get_content_charset()
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
        page = _HTMLText()
        try:
            page.feed(text)
            page.close()
        except (AssertionError, ValueError):
            pass
        texts.append(page.text())
        hidden.append(page.hidden_text())
        sample.links.extend(page.links)
        sample.urls.extend(link.href for link in page.links)
        sample.images += page.images
    elif content_type in ("text/plain", "text/enriched", "text/richtext"):
        texts.append(text)


_HIDING = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:\.\d+)?\s*(?:px|pt)?\s*(?:;|$)"
    r"|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$)|(?:^|;)\s*color\s*:\s*(?:#fff(?:fff)?|white)\b",
    re.IGNORECASE,
)
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "wbr"})
_BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "td"})


class _HTMLText(HTMLParser):
    """HTML to text, as a reader would see it, with what a reader wouldn't see kept apart:
    text inside an element styled invisible (or ``hidden``, or a ``<font size=0>``), and
    ``<script>``/``<style>`` dropped. Links keep their visible text for the mismatch rule."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self._hiding = 0  # elements on the stack that hide their content
        self._skip = 0  # inside script/style
        self._visible: list[str] = []
        self._hidden: list[str] = []
        self._anchor: tuple[str, list[str]] | None = None
        self.links: list[Link] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in ("script", "style"):
            self._skip += 1
            return
        if tag == "img":
            self.images += 1
        if tag in _BLOCK:
            self._visible.append("\n")
        if tag == "a" and values.get("href"):
            self._anchor = (values["href"].strip(), [])
        if tag in _VOID:
            return
        hides = (
            "hidden" in values
            or bool(_HIDING.search(values.get("style", "")))
            or (tag == "font" and values.get("size", "").strip() in ("0", "-5", "-4"))
            or (tag == "font" and values.get("color", "").lower() in ("#ffffff", "#fff", "white"))
        )
        self._stack.append((tag, hides))
        self._hiding += hides

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
            return
        if tag == "a" and self._anchor is not None:
            href, words = self._anchor
            self.links.append(Link(href, " ".join("".join(words).split())))
            self._anchor = None
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                self._hiding -= sum(hides for _tag, hides in self._stack[depth:])
                del self._stack[depth:]
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._hiding:  # inside an element that hides its content
            self._hidden.append(data)
            return
        self._visible.append(data)
        if self._anchor is not None:
            self._anchor[1].append(data)

    def text(self) -> str:
        return re.sub(r"[ \t\r\f\v]+", " ", "".join(self._visible)).strip()

    def hidden_text(self) -> str:
        return " ".join("".join(self._hidden).split())
