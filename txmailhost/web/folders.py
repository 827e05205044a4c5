"""The mail page: the folder list with unread counts, and one folder's messages, paged and
sorted by date, sender, subject or size.

Everything comes from the store interfaces the IMAP server uses: ``list_mailboxes`` and each
mailbox's ``status`` (the same numbers IMAP STATUS reports), ``select`` and ``columns`` for the
index of a folder (UIDs, flags, sizes, arrival dates, as columns: no message file is opened
to sort by date or size), and ``messages(..., header=True)`` for the headers of the one page
shown. Sorting by sender or subject uses a key per message derived once (``sortkeys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from txmailhost.store.interfaces import INBOX
from txmailhost.web import threads
from txmailhost.web.context import Route, WebContext, ascii_number
from txmailhost.web.listrows import PAGE_SIZE, Row, rows_of
from txmailhost.web.responses import Response, redirect

SORTS = ("date", "from", "subject", "size")
VIEWS = ("messages", "threads")


@dataclass(frozen=True)
class Folder:
    name: str
    depth: int
    label: str
    messages: int
    unseen: int


async def folder_list(ctx: WebContext) -> list[Folder]:
    store, user = ctx.store, ctx.user
    folders = []
    for name in await store.list_mailboxes(user):
        mailbox = await store.open(user, name)
        # select without claiming \Recent: the counts from the store's in-memory image of the
        # index (STATUS counts in the database: slower on a big folder)
        selection = await mailbox.select(False)
        parts = name.split("/")
        folders.append(
            Folder(name, len(parts) - 1, parts[-1], len(selection.uids), selection.unseen)
        )
    return folders


def _ordered(count: int, key: Any, descending: bool) -> list[int]:
    """Positions 0..count-1 ordered by ``key(position)``, ties by position (so by UID, newest
    first when descending). ``key`` is a C-level callable (a list's ``__getitem__``): a Python
    lambda per message would cost more than the sort."""
    positions = range(count - 1, -1, -1) if descending else range(count)
    return sorted(positions, key=key, reverse=descending)


async def _order(ctx: WebContext, mailbox: Any, sort: str, descending: bool) -> list[int]:
    """The folder's UIDs in the order asked for, sorted once per state of the folder."""
    selection = await mailbox.select(False)
    services = ctx.services
    ident = (ctx.user, mailbox.name, selection.uidvalidity, selection.uidnext,
             len(selection.uids), sort, descending)  # fmt: skip
    order = services.orders.get(ident)
    if order is not None:
        return order
    columns = await mailbox.columns(list(selection.uids))
    uids = columns.uids
    if sort == "size":
        key = list(columns.sizes).__getitem__
    elif sort in ("from", "subject"):
        keys = await services.sort_keys.of(mailbox, selection.uidvalidity, uids,
                                           services.in_thread)  # fmt: skip
        field = 0 if sort == "from" else 1
        key = [keys.get(uid, b"\0").split(b"\0")[field] for uid in uids].__getitem__
    else:
        key = list(columns.internaldates).__getitem__
    order = [uids[i] for i in _ordered(len(uids), key, descending)]
    services.orders.put(ident, order)
    return order


async def message_rows(
    ctx: WebContext, mailbox: Any, sort: str, descending: bool, page: int
) -> tuple[list[Row], int]:
    """One page of the folder, sorted; (rows, number of messages).

    The order comes from the folder's index as columns (``select`` for the UIDs,
    ``columns`` for dates and sizes: what the store keeps in memory for IMAP), sorted once and
    kept while the folder doesn't change (``sortkeys.SortedOrders``): paging costs the 50
    header blocks of the page, not a sort of 100,000 messages."""
    order = await _order(ctx, mailbox, sort, descending)
    shown = order[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return await rows_of(mailbox, shown), len(order)


def _page_number(text: str) -> int:
    page = ascii_number(text)
    return page if page is not None and 0 < page < 10**7 else 1


async def home(ctx: WebContext) -> Response:
    return redirect("/mail" if ctx.session is not None else "/login")


async def mail_page(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    sort = ctx.arg("sort", "date")
    sort = sort if sort in SORTS else "date"
    order = "asc" if ctx.arg("order") == "asc" else "desc"
    page = _page_number(ctx.arg("page", "1"))
    view = "threads" if ctx.arg("view") == "threads" else "messages"
    mailbox = await ctx.store.open(ctx.user, folder)  # NoSuchMailbox, InvalidMailboxName: 404
    expand, thread_rows, threads_total = 0, [], 0
    if view == "threads":
        expand = _page_number(ctx.arg("expand")) if ctx.arg("expand") else 0
        listed = await threads.thread_page(ctx, mailbox, sort, order == "desc", page, expand)
        rows, thread_rows, total, threads_total = [], listed.rows, listed.messages, listed.threads
        pages = max(1, -(-threads_total // PAGE_SIZE))
    else:
        rows, total = await message_rows(ctx, mailbox, sort, order == "desc", page)
        pages = max(1, -(-total // PAGE_SIZE))
    values = {
        "folder": folder,
        "rows": rows,
        "threads": thread_rows,
        "threads_total": threads_total,
        "view": view,
        "expand": expand,
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
