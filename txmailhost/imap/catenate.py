"""CATENATE (RFC 4469): an APPEND whose message is assembled on the server from literal text
and IMAP URLs (RFC 5092) naming messages or parts the user already has, so a client forwards
an attachment without downloading and uploading it again.

A URL may only name the logged-in user's own mailboxes (there is no syntax here that reaches
another user's tree; absolute ``imap://`` URLs are taken for this server). Anything wrong
with one (a bad form, another UIDVALIDITY, a missing message) fails the whole APPEND with
``NO [BADURL url]`` and nothing is stored. The messages one APPEND assembles are bounded by
APPENDLIMIT together.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from txmailhost.imap import fetch, mime, names, replies
from txmailhost.imap.parser import LiteralFile, ParseError, Reader
from txmailhost.store.interfaces import NoSuchMailbox, StoreError

MAX_PARTS = 64
# RFC 5092 §6 (relative form, or absolute with a server we take for ourselves), with RFC
# 4467's ;EXPIRE and ;URLAUTH at the end:
#   [imap://[user[;AUTH=x]@]host[:port]]/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s]
#   [/;PARTIAL=o[.l]][;EXPIRE=datetime][;URLAUTH=access[:mechanism:token]]
_URL = re.compile(
    r"(?:imap://(?:(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@)?(?P<host>[^/]*))?"
    r"/(?P<mailbox>[^;/]+(?:/[^;/]+)*?)(?:;UIDVALIDITY=(?P<uidvalidity>\d{1,10}))?"
    r"/;UID=(?P<uid>\d{1,10})"
    r"(?:/;SECTION=(?P<section>[^/;]+))?"
    r"(?:/;PARTIAL=(?P<origin>\d{1,10})(?:\.(?P<length>\d{1,10}))?)?"
    r"(?:;EXPIRE=(?P<expire>[^;]+))?"
    r"(?:;URLAUTH=(?P<urlauth>.*))?",
    re.IGNORECASE | re.DOTALL,
)


class BadURL(replies.IMAPError):
    """RFC 4469 §6: ``NO [BADURL url]``."""

    def __init__(self, url: bytes) -> None:
        super().__init__("CATENATE URL is invalid or names nothing", code=f"BADURL {_safe(url)}")


def _safe(url: bytes) -> str:
    return re.sub(r"[^\x21-\x7e]|\]", "", url.decode("ascii", "replace"))[:200]


@dataclass(frozen=True)
class CatPart:
    """``TEXT literal`` (``text``) or ``URL "..."`` (``url``)."""

    text: bytes | LiteralFile | None = None
    url: bytes | None = None


def parse_parts(reader: Reader) -> list[CatPart]:
    """``CATENATE (cat-part *(SP cat-part))`` with ``reader`` at CATENATE (RFC 4469 §5)."""
    reader.expect(b"CATENATE")
    reader.sp()
    reader.open_paren()
    parts: list[CatPart] = []
    while True:
        kind = reader.atom().upper()
        reader.sp()
        if kind == b"TEXT":
            if reader.peek() == b"~":
                raise ParseError("literal8 in CATENATE is not supported")
            parts.append(CatPart(text=reader.literal()))
        elif kind == b"URL":
            parts.append(CatPart(url=reader.astring()))
        else:
            raise ParseError("expected TEXT or URL")
        if len(parts) > MAX_PARTS:
            raise ParseError("too many CATENATE parts")
        if reader.peek() == b")":
            break
        reader.sp()
    reader.close_paren()
    return parts


@dataclass(frozen=True)
class Reference:
    """What a URL names: a mailbox, a message in it and maybe a section and a range; for an
    absolute URL its user and host, and the URLAUTH parts (RFC 4467) when it has them."""

    mailbox: str
    uidvalidity: int | None
    uid: int
    section: fetch.Section | None
    partial: tuple[int, int | None] | None
    user: str | None = None
    host: str | None = None
    expire: str | None = None
    urlauth: str | None = None


def parse_url(url: bytes) -> Reference:
    """An IMAP URL (RFC 5092) → a ``Reference``; ``BadURL`` when it isn't one we serve."""
    match = _URL.fullmatch(url.decode("ascii", "replace"))
    if match is None:
        raise BadURL(url)
    try:
        mailbox = names.decode(urllib.parse.unquote_to_bytes(match["mailbox"]))
        section = None
        if match["section"]:
            spec = urllib.parse.unquote_to_bytes(match["section"])
            section = fetch.parse_section_spec(spec)
    except (replies.IMAPError, ParseError):
        raise BadURL(url) from None
    partial = None
    if match["origin"] is not None:
        length = int(match["length"]) if match["length"] else None
        partial = (int(match["origin"]), length)
    uidvalidity = int(match["uidvalidity"]) if match["uidvalidity"] else None
    user = urllib.parse.unquote(match["user"]) if match["user"] else None
    return Reference(
        mailbox,
        uidvalidity,
        int(match["uid"]),
        section,
        partial,
        user,
        match["host"],
        match["expire"],
        match["urlauth"],
    )


async def url_data(store: Any, user: str, url: bytes, reference: Reference | None = None) -> bytes:
    """The octets ``url`` names in ``user``'s mailboxes (RFC 5092 §7: the section as FETCH
    BODY.PEEK[section] gives it, then the partial range)."""
    if reference is None:
        reference = parse_url(url)
        if reference.urlauth is not None:
            raise BadURL(url)  # a URLAUTH-authorized URL is for URLFETCH, not for CATENATE
    try:
        mailbox = await store.open(user, reference.mailbox)
        status = await mailbox.status()
        if reference.uidvalidity is not None and reference.uidvalidity != status.uidvalidity:
            raise BadURL(url)
        found = await mailbox.messages([reference.uid], True, True)
    except (NoSuchMailbox, StoreError):
        raise BadURL(url) from None
    if not found or found[0].content is None:
        raise BadURL(url)
    message = found[0]
    if reference.section is None:
        data = message.content
    else:
        data = fetch.section_data(message, reference.section, mime.parse(message.content))
    if reference.partial is not None:
        origin, length = reference.partial
        data = data[origin : None if length is None else origin + length]
    return data


async def assemble(
    parts: list[CatPart],
    read_text: Callable[[bytes | LiteralFile], Awaitable[bytes]],
    resolve: Callable[[bytes], Awaitable[bytes]],
    limit: int,
) -> bytes:
    """The message the parts make, in order; ``NO [TOOBIG]`` past ``limit`` octets (what is
    left of APPENDLIMIT for this APPEND's CATENATE messages: ``append.assemble``)."""
    pieces: list[bytes] = []
    total = 0
    for part in parts:
        if part.url is not None:
            piece = await resolve(part.url)
        else:
            assert part.text is not None
            piece = await read_text(part.text)
        total += len(piece)
        if total > limit:
            raise replies.TooBig(f"CATENATE result too large (limit {limit} octets)")
        pieces.append(piece)
    return b"".join(pieces)
