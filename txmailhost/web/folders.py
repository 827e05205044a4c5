"""The mail page: the folder list with unread counts, and one folder's messages, paged and
sorted by date, sender, subject or size.

Everything comes from the store interfaces the IMAP server uses: ``list_mailboxes`` and each
mailbox's ``status`` (the same numbers IMAP STATUS reports), ``snapshot`` for the index of a
folder (UIDs, flags, sizes, arrival dates: no message file is opened to sort by date or size),
and ``messages(..., header=True)`` for the headers of the one page shown. Sorting by sender or
subject needs a key per message: it is derived once from the header and kept with the message
in the store (``IMailbox.remember``, name :data:`SORT_KEYS`), so the next sort reads the index
and not the messages.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from dataclasses import dataclass
from typing import Any

from txmailhost.store.interfaces import FLAGGED, INBOX, SEEN
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, redirect

PAGE_SIZE = 50
SORTS = ("date", "from", "subject", "size")
SORT_KEYS = "web.sortkeys.v1"  # the derived value's name: "from\0subject", folded


@dataclass(frozen=True)
class Folder:
    name: str
    depth: int
    label: str
    messages: int
    unseen: int


@dataclass(frozen=True)
class Row:
    uid: int
    sender: str
    subject: str
    date: float
    size: int
    seen: bool
    flagged: bool


def decode_header(value: bytes | str | None) -> str:
    """An RFC 2047 header value as text; undecodable bytes become U+FFFD, never an error."""
    if value is None:
        return ""
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    raw = " ".join(raw.split())  # unfold
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return raw


def _sender(value: bytes | None) -> str:
    """The display name, else the address, of the first From: mailbox."""
    text = decode_header(value)
    name, address = email.utils.parseaddr(text)
    return name or address or text


def _headers(block: bytes | None) -> dict[str, bytes]:
    """The first value of each field of a header block, by lower-case name, unfolded."""
    fields: dict[str, bytes] = {}
    for line in re.split(rb"\r?\n(?![ \t])", block or b""):
        name, colon, value = line.partition(b":")
        if colon:
            key = name.strip().decode("ascii", "replace").lower()
            fields.setdefault(key, re.sub(rb"\r?\n", b"", value).strip())
    return fields


def sort_key(header: bytes | None) -> bytes:
    """What SORT_KEYS keeps for one message: sender and subject, case-folded, without "Re:"."""
    fields = _headers(header)
    subject = decode_header(fields.get("subject")).strip()
    while subject[:3].lower() in ("re:", "fw:") or subject[:4].lower() == "fwd:":
        subject = subject.partition(":")[2].strip()
    sender = _sender(fields.get("from"))
    return (sender.casefold() + "\0" + subject.casefold()).encode("utf-8")


async def folder_list(ctx: WebContext) -> list[Folder]:
    store, user = ctx.store, ctx.user
    folders = []
    for name in await store.list_mailboxes(user):
        mailbox = await store.open(user, name)
        status = await mailbox.status()
        parts = name.split("/")
        folders.append(Folder(name, len(parts) - 1, parts[-1], status.messages, status.unseen))
    return folders


async def _sort_keys(ctx: WebContext, mailbox: Any, uids: list[int]) -> dict[int, bytes]:
    keys = await mailbox.derived(uids, SORT_KEYS)
    missing = [uid for uid in uids if uid not in keys]
    if missing:
        for start in range(0, len(missing), 500):  # bounded memory: 500 header blocks at once
            batch = await mailbox.messages(missing[start : start + 500], True, False)
            new = await ctx.services.in_thread(
                lambda batch=batch: {m.uid: sort_key(m.header) for m in batch}
            )
            keys.update(new)
            await mailbox.remember(SORT_KEYS, new)
    return keys


async def message_rows(
    ctx: WebContext, mailbox: Any, sort: str, descending: bool, page: int
) -> tuple[list[Row], int]:
    """One page of the folder, sorted; (rows, number of messages)."""
    snapshot = await mailbox.snapshot()
    infos = list(snapshot.messages)
    if sort == "size":
        infos.sort(key=lambda m: (m.size, m.uid), reverse=descending)
    elif sort in ("from", "subject"):
        keys = await _sort_keys(ctx, mailbox, [m.uid for m in infos])
        field = 0 if sort == "from" else 1

        def by(m: Any) -> tuple[bytes, int]:
            return (keys.get(m.uid, b"\0").split(b"\0")[field], m.uid)

        infos.sort(key=by, reverse=descending)
    else:
        infos.sort(key=lambda m: (m.internaldate, m.uid), reverse=descending)
    shown = infos[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    stored = {m.uid: m for m in await mailbox.messages([m.uid for m in shown], True, False)}
    rows = []
    for info in shown:
        message = stored.get(info.uid)
        if message is None:  # expunged meanwhile
            continue
        fields = _headers(message.header)
        rows.append(
            Row(
                uid=info.uid,
                sender=_sender(fields.get("from")) or "(no sender)",
                subject=decode_header(fields.get("subject")) or "(no subject)",
                date=info.internaldate,
                size=info.size,
                seen=SEEN in message.flags,
                flagged=FLAGGED in message.flags,
            )
        )
    return rows, len(infos)


def _page_number(text: str) -> int:
    return int(text) if text.isdigit() and 0 < int(text) < 10**7 else 1


async def home(ctx: WebContext) -> Response:
    return redirect("/mail" if ctx.session is not None else "/login")


async def mail_page(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    sort = ctx.arg("sort", "date")
    sort = sort if sort in SORTS else "date"
    order = "asc" if ctx.arg("order") == "asc" else "desc"
    page = _page_number(ctx.arg("page", "1"))
    mailbox = await ctx.store.open(ctx.user, folder)  # NoSuchMailbox, InvalidMailboxName: 404
    rows, total = await message_rows(ctx, mailbox, sort, order == "desc", page)
    pages = max(1, -(-total // PAGE_SIZE))
    values = {
        "folder": folder,
        "rows": rows,
        "total": total,
        "page": min(page, pages),
        "pages": pages,
        "sort": sort,
        "order": order,
        "sorts": SORTS,
    }
    if ctx.htmx and ctx.header("HX-Target") == "message-list":
        return ctx.render("message_list.html", **values)
    return ctx.render("mail.html", folders=await folder_list(ctx), **values)


async def folder_panel(ctx: WebContext) -> Response:
    """The folder list alone, for htmx to refresh the unread counts."""
    return ctx.render(
        "folder_list.html", folders=await folder_list(ctx), folder=ctx.arg("folder", INBOX)
    )


ROUTES = [
    Route("GET", "/mail", mail_page),
    Route("GET", "/folders", folder_panel),
]
