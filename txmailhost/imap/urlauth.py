"""URLAUTH (RFC 4467): GENURLAUTH signs an IMAP URL to one of the user's messages so that
someone else, or a submission server, can fetch it with URLFETCH without the owner's
password; RESETKEY revokes every URL signed so far.

A URL is signed with its mailbox's access key (random, 256 bits, kept by the store:
``IMailStore.access_key``): the token is HMAC-SHA256 of the "rump" URL, everything up to and
including ``;URLAUTH=access``, under the ``INTERNAL`` mechanism (§2.4). Who may use it is in
the URL itself: ``anonymous``, ``authuser`` (any logged-in user), ``user+ADDRESS`` (that user
only); ``submit+ADDRESS`` is for a submission server and never honoured here. URLFETCH gives
NIL, never an error, for any URL it won't serve (§6.3), and it looks up the owner's key
before opening anything, so an unsigned URL can't make the store touch another account.
Handlers are plain functions of the session (``server.COMMANDS`` calls them like methods);
they exist only where the factory offers URLAUTH (``IMAPFactory(urlauth=True)``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from typing import Any

from twisted.logger import Logger

from txmailhost.imap import catenate, names, replies
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done, nstring, string
from txmailhost.store.interfaces import NoSuchMailbox, StoreError

log = Logger(namespace="txmailhost.imap")

MECHANISM = "INTERNAL"
MAX_URLS = 100
_ACCESS = re.compile(r"(anonymous|authuser|(?:user|submit)\+[^:;]+)", re.IGNORECASE)
_TOKEN = re.compile(r"(?P<access>[^:]+):(?P<mechanism>[^:]+):(?P<token>[0-9a-fA-F]{32,128})")


def _owner(reference: catenate.Reference) -> str | None:
    """The address whose mailbox an absolute URL names: its user, with the host as the
    domain when the user has none (``imap://alice@example.org/INBOX``)."""
    if not reference.user:
        return None
    user = reference.user
    if "@" not in user and reference.host:
        user = f"{user}@{reference.host.split(':')[0]}"
    return user.lower()


def _token(key: bytes, rump: bytes) -> str:
    return hmac.new(key, rump, hashlib.sha256).hexdigest()


def _expired(expire: str | None) -> bool:
    """RFC 4467 §3: ``;EXPIRE=`` an RFC 3339 date-time; one we can't read has expired."""
    if expire is None:
        return False
    try:
        when = datetime.datetime.fromisoformat(expire.replace("Z", "+00:00"))
    except ValueError:
        return True
    if when.tzinfo is None:
        return True
    return when <= datetime.datetime.now(datetime.UTC)


def _offered(session: Any) -> None:
    if not session.factory.urlauth:
        raise replies.BadCommand("unknown command")


async def genurlauth(session: Any, reader: Reader, by_uid: bool) -> Done:
    """``GENURLAUTH url mechanism ...``: ``* GENURLAUTH`` with each URL signed (§6.1)."""
    _offered(session)
    signed: list[bytes] = []
    while not signed or not reader.at_end():
        reader.sp()
        url = reader.astring()
        reader.sp()
        mechanism = reader.atom().decode("ascii", "replace").upper()
        if mechanism != MECHANISM:
            raise replies.IMAPError(f"unknown URLAUTH mechanism {mechanism[:20]}")
        signed.append(await _sign(session, url))
        if len(signed) > MAX_URLS:
            raise ParseError("too many URLs")
    reader.end()
    session.write(b"* GENURLAUTH " + b" ".join(string(url) for url in signed) + b"\r\n")
    return Done("GENURLAUTH completed")


async def _sign(session: Any, url: bytes) -> bytes:
    reference = catenate.parse_url(url)  # BadURL: NO [BADURL url]
    access = reference.urlauth
    if access is None or not _ACCESS.fullmatch(access) or _owner(reference) is None:
        raise catenate.BadURL(url)
    if _owner(reference) != session.account.address.lower():
        raise catenate.BadURL(url)  # only one's own messages can be signed
    try:
        await session.account.store.open(session.account.address, reference.mailbox)
    except (NoSuchMailbox, StoreError):
        raise catenate.BadURL(url) from None
    key = await session.account.store.access_key(session.account.address, reference.mailbox, True)
    return url + b":" + MECHANISM.encode() + b":" + _token(key, url).encode()


async def urlfetch(session: Any, reader: Reader, by_uid: bool) -> Done:
    """``URLFETCH url ...``: ``* URLFETCH url data`` for each, NIL for one not served (§6.3)."""
    _offered(session)
    urls = []
    while True:
        reader.sp()
        if reader.peek() == b"(":
            raise ParseError("URLFETCH parameters (URLAUTH=BINARY) are not supported")
        urls.append(reader.astring())
        if len(urls) > MAX_URLS:
            raise ParseError("too many URLs")
        if reader.at_end():
            break
    reader.end()
    for url in urls:
        data = await _fetch(session, url)
        session.write(b"* URLFETCH " + string(url) + b" " + nstring(data) + b"\r\n")
        session.flush()
    return Done("URLFETCH completed")


async def _fetch(session: Any, url: bytes) -> bytes | None:
    try:
        reference = catenate.parse_url(url)
    except catenate.BadURL:
        return None
    match = _TOKEN.fullmatch(reference.urlauth or "")
    owner = _owner(reference)
    if match is None or owner is None or match["mechanism"].upper() != MECHANISM:
        return None
    access = match["access"].lower()
    me = session.account.address.lower()
    if not (
        access in ("anonymous", "authuser") or (access.startswith("user+") and access[5:] == me)
    ):
        return None  # submit+ is for a submission server; user+ is for that user only
    if _expired(reference.expire):
        return None
    store = session.account.store
    rump = url[: url.rindex(b":" + match["mechanism"].encode())]
    try:
        key = await store.access_key(owner, reference.mailbox, False)
        if key is None or not hmac.compare_digest(_token(key, rump), match["token"].lower()):
            return None
        return await catenate.url_data(store, owner, url, reference)
    except (replies.IMAPError, StoreError):
        return None


async def resetkey(session: Any, reader: Reader, by_uid: bool) -> Done:
    """``RESETKEY [mailbox [mechanism ...]]``: new access keys, so every URL signed for the
    mailbox (all of the user's, without one) stops working (§6.2)."""
    _offered(session)
    mailbox = None
    if reader.skip_sp():
        mailbox = names.decode(reader.astring())
        while reader.skip_sp():
            if reader.atom().decode("ascii", "replace").upper() != MECHANISM:
                raise replies.IMAPError("unknown URLAUTH mechanism")
        try:
            await session.account.store.open(session.account.address, mailbox)
        except NoSuchMailbox:
            raise replies.Nonexistent() from None
    reader.end()
    await session.account.store.reset_access_keys(session.account.address, mailbox)
    log.info("imap resetkey {user} {mailbox}", user=session.user, mailbox=mailbox or "(all)")
    return Done("RESETKEY completed")
