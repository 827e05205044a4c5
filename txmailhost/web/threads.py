"""The threads view of the message list: a folder's messages grouped by conversation.

The grouping is IMAP's THREAD=REFERENCES (RFC 5256 §3), the very code ``THREAD REFERENCES
ALL`` answers with (``imap.thread.references``), over the same header keys (``imap.headerkeys``:
Message-ID, References or In-Reply-To, base subject, sent date), which the store keeps derived
per message (``IMailbox.derived``/``remember``), so a folder IMAP has threaded costs no
message file here, and the other way round. A conversation is one root of the REFERENCES
forest: its messages in thread order (the first message, then each reply under the message
it answers, siblings by date).

A thread row shows the first message's sender and subject, the number of messages and of
unread ones, and the latest arrival date; threads sort by that latest date, by the first
message's sender or base subject, or by the size of the whole conversation, and page by
thread (``PAGE_SIZE`` threads a page). Expanding one (``expand=UID`` of any of its messages)
lists its messages under it.

The grouping is computed once per state of the folder (UIDVALIDITY, UIDNEXT, message count:
what ``sortkeys.SortedOrders`` keys by) in the site's pool, off the reactor, and kept with
each thread's first sender and subject, so another sort order costs a sort of the threads,
not a new grouping; flags are read fresh for the threads of the page only, so a message read
elsewhere shows read at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from txmailhost.imap import headerkeys, thread
from txmailhost.store.interfaces import SEEN, StoredMessage
from txmailhost.web.context import WebContext
from txmailhost.web.listrows import PAGE_SIZE, Row, rows_of

MAX_EXPANDED = 200  # messages listed under an expanded thread; the rest by search or paging

Conversation = tuple[int, ...]  # the UIDs of one thread, in thread order
_new_tuple = tuple.__new__


@dataclass(frozen=True)
class ThreadRow:
    """One conversation in the list: ``first`` is its first message's row (sender, subject);
    ``anchor`` the UID that names it in ``expand=``; ``messages`` its rows when expanded."""

    anchor: int
    first: Row
    count: int
    unread: int
    latest: float
    size: int
    messages: tuple[Row, ...] = ()


@dataclass(frozen=True)
class ThreadPage:
    rows: list[ThreadRow]
    threads: int  # in the whole folder
    messages: int


class _View:
    """What ``headerkeys.load`` reads of a selected mailbox: only the mailbox."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox


def _members(root: Any) -> Conversation:
    """The messages under one root of the REFERENCES forest, parents before replies
    (iteratively: a long reply chain is as deep as it is long)."""
    uids: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.message is not None:
            uids.append(node.message.number)
        stack.extend(reversed(node.children))
    return tuple(uids)


class Grouped(NamedTuple):
    """One thread of the folder's grouping, with what sorting by sender or subject needs of
    its first message (so a new sort order needs no header keys)."""

    uids: Conversation
    sender: str  # the first message's display name or address, upper-cased (DISPLAYFROM)
    subject: str  # its base subject, upper-cased


def _group(
    uids: list[int], dates: list[float], keys: dict[int, headerkeys.HeaderKeys]
) -> list[Grouped]:
    """THREAD=REFERENCES over the whole folder (in UID order), each root as its UIDs.
    CPU-bound on a large folder: run in the site's pool."""
    empty = headerkeys.HeaderKeys(None, "", False, "", "", "", "", "", "", ())
    messages = []
    for seq, (uid, internaldate) in enumerate(zip(uids, dates, strict=True), 1):
        message_keys = keys.get(uid, empty)
        sent = message_keys.sent if message_keys.sent is not None else internaldate
        # tuple.__new__ skips NamedTuple's Python-level __new__ (100,000 times a grouping)
        messages.append(_new_tuple(thread.ThreadMessage, (uid, seq, sent, message_keys)))
    grouped = []
    for root in thread.references(messages):
        members = _members(root)
        first = keys.get(members[0], empty)
        grouped.append(_new_tuple(Grouped, (members, first.display_from, first.subject)))
    return grouped


def _sorted(grouped: list[Grouped], sort: str, descending: bool, columns: Any) -> list[Grouped]:
    """Threads by their latest arrival, their first message's sender or base subject, or
    their total size; ties by the first message's UID (newest first when descending)."""
    position = {uid: i for i, uid in enumerate(columns.uids)}
    dates, sizes = columns.internaldates, columns.sizes

    def latest(g: Grouped) -> Any:
        return max(dates[position[uid]] for uid in g.uids if uid in position)

    def size(g: Grouped) -> Any:
        return sum(sizes[position[uid]] for uid in g.uids if uid in position)

    def sender(g: Grouped) -> Any:
        return g.sender

    def subject(g: Grouped) -> Any:
        return g.subject

    key = {"from": sender, "subject": subject, "size": size}.get(sort, latest)
    return sorted(grouped, key=lambda g: (key(g), g.uids[0]), reverse=descending)


async def _header_keys(
    services: Any, mailbox: Any, uids: list[int]
) -> dict[int, headerkeys.HeaderKeys]:
    """The header keys of ``uids``: those the store keeps, decoded in the site's pool (100,000
    of them take a second or two of CPU: never on the reactor thread), then the rest derived
    by ``headerkeys.load`` as IMAP derives them (in batches, remembered in the store)."""
    stored = await mailbox.derived(uids, headerkeys.KEY)
    known = await services.in_thread(headerkeys.decode_many, stored) if stored else {}
    missing = [StoredMessage(uid, frozenset(), 0, 0.0, 0) for uid in uids if uid not in known]
    if missing:  # load reads only .uid of these
        known.update(await headerkeys.load(_View(mailbox), {}, missing))
    return known


async def conversations(
    ctx: WebContext, mailbox: Any, sort: str, descending: bool
) -> list[Conversation]:
    """The folder's threads in the order asked for. The grouping is made once per state of
    the folder, each order of it once more (sorting 100,000 threads is cheap; grouping is
    not)."""
    selection = await mailbox.select(False)
    services = ctx.services
    state = (ctx.user, mailbox.name, selection.uidvalidity, selection.uidnext,
             len(selection.uids), "threads")  # fmt: skip
    ordered = services.orders.get((*state, sort, descending))
    if ordered is not None:
        return ordered  # type: ignore[return-value]
    columns = await mailbox.columns(list(selection.uids))
    uids = list(columns.uids)
    grouped = services.orders.get(state)
    if grouped is None:
        keys = await _header_keys(services, mailbox, uids)
        grouped = await services.in_thread(_group, uids, list(columns.internaldates), keys)
        services.orders.put(state, grouped, size=len(uids))
    arranged = await services.in_thread(_sorted, grouped, sort, descending, columns)
    ordered = [g.uids for g in arranged]
    services.orders.put((*state, sort, descending), ordered, size=len(uids))
    return ordered


async def thread_page(
    ctx: WebContext, mailbox: Any, sort: str, descending: bool, page: int, expand: int
) -> ThreadPage:
    """One page of threads (``PAGE_SIZE`` of them), with the thread holding UID ``expand``
    listed message by message when it is on the page."""
    ordered = await conversations(ctx, mailbox, sort, descending)
    shown = ordered[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    members = [uid for c in shown for uid in c]
    columns = await mailbox.columns(sorted(members))  # fresh flags: read elsewhere shows now
    info = {
        uid: (flags, size, date)
        for uid, flags, size, date in zip(
            columns.uids, columns.flags, columns.sizes, columns.internaldates, strict=True
        )
    }
    living_of = {c: [uid for uid in c if uid in info] for c in shown}  # some expunged meanwhile
    firsts = {
        row.uid: row for row in await rows_of(mailbox, [v[0] for v in living_of.values() if v])
    }
    rows = []
    for c in shown:
        living = living_of[c]
        if not living or living[0] not in firsts:
            continue
        expanded: tuple[Row, ...] = ()
        if expand in c:
            expanded = tuple(await rows_of(mailbox, living[:MAX_EXPANDED]))
        rows.append(
            ThreadRow(
                anchor=living[0],
                first=firsts[living[0]],
                count=len(living),
                unread=sum(1 for uid in living if SEEN not in info[uid][0]),
                latest=max(info[uid][2] for uid in living),
                size=sum(info[uid][1] for uid in living),
                messages=expanded,
            )
        )
    total = sum(len(c) for c in ordered)
    return ThreadPage(rows, len(ordered), total)
