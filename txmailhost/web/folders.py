"""The mail page: the folder list with unread counts, and one folder's messages, paged and
sorted by date, sender, subject or size.

Everything comes from the store interfaces the IMAP server uses: ``list_mailboxes`` and each
mailbox's ``status`` (the same numbers IMAP STATUS reports), ``select`` and ``columns`` for the
index of a folder (UIDs, flags, sizes, arrival dates, as columns: no message file is opened
to sort by date or size), and ``messages(..., header=True)`` for the headers of the one page
shown. Sorting by sender or subject uses a key per message derived once (``sortkeys.py``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from txmailhost.store.interfaces import FLAGGED, INBOX, SEEN
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response, redirect
from txmailhost.web.sortkeys import decode_header, header_fields, sender_name

PAGE_SIZE = 50
SORTS = ("date", "from", "subject", "size")


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


async def folder_list(ctx: WebContext) -> list[Folder]:
    store, user = ctx.store, ctx.user
    folders = []
    for name in await store.list_mailboxes(user):
        mailbox = await store.open(user, name)
        status = await mailbox.status()
        parts = name.split("/")
        folders.append(Folder(name, len(parts) - 1, parts[-1], status.messages, status.unseen))
    return folders


def _page_of(count: int, key: Any, descending: bool, page: int) -> list[int]:
    """Positions 0..count-1 of one page, ordered by ``key(position)`` (ties by position, so by
    UID). An early page costs a heap selection of page * PAGE_SIZE, not a sort of all."""
    wanted = page * PAGE_SIZE
    positions = range(count)
    if wanted * 8 < count:
        if descending:
            top = heapq.nlargest(wanted, positions, key=lambda i: (key(i), i))
        else:
            top = heapq.nsmallest(wanted, positions, key=lambda i: (key(i), i))
    else:
        top = sorted(positions, key=lambda i: (key(i), i), reverse=descending)
    return top[(page - 1) * PAGE_SIZE : wanted]


async def message_rows(
    ctx: WebContext, mailbox: Any, sort: str, descending: bool, page: int
) -> tuple[list[Row], int]:
    """One page of the folder, sorted; (rows, number of messages).

    The index values come as columns (``select`` for the UIDs, ``columns`` for dates, sizes
    and flags: what the store keeps in memory for IMAP), so a folder of 100,000 messages costs
    no object per message; only the page's 50 header blocks are read."""
    selection = await mailbox.select(False)
    columns = await mailbox.columns(list(selection.uids))
    uids, count = columns.uids, len(columns.uids)
    if sort == "size":
        key = columns.sizes.__getitem__
    elif sort in ("from", "subject"):
        services = ctx.services
        keys = await services.sort_keys.of(mailbox, selection.uidvalidity, uids, services.in_thread)
        field = 0 if sort == "from" else 1
        parts = [keys.get(uid, b"\0").split(b"\0")[field] for uid in uids]
        key = parts.__getitem__
    else:
        key = columns.internaldates.__getitem__
    shown = _page_of(count, key, descending, page)
    stored = {m.uid: m for m in await mailbox.messages([uids[i] for i in shown], True, False)}
    rows = []
    for i in shown:
        message = stored.get(uids[i])
        if message is None:  # expunged meanwhile
            continue
        fields = header_fields(message.header)
        rows.append(
            Row(
                uid=message.uid,
                sender=sender_name(fields.get("from")) or "(no sender)",
                subject=decode_header(fields.get("subject")) or "(no subject)",
                date=columns.internaldates[i],
                size=columns.sizes[i],
                seen=SEEN in message.flags,
                flagged=FLAGGED in message.flags,
            )
        )
    return rows, count


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
