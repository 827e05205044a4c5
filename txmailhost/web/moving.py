"""Moving messages between folders, deleting them (to Trash, or for good from Trash), and
marking them spam or not spam (into Junk, or out of it to the INBOX).

The same store calls as IMAP MOVE (RFC 6851), so an IMAP client watching either folder sees
the same thing as after another client's MOVE: ``IMailboxMove.move`` where the store has it
(Maildir renames each file: a message is in exactly one of the two folders at every moment,
after a crash too, with its flags and INTERNALDATE), else ``IMailbox.copy`` into the target,
durably, then ``expunge`` of the originals. Deleting moves to the user's ``Trash``; deleting in
``Trash`` (or for a user without one) expunges for good. Like every route, both open only the
session user's folders: a folder name that is not theirs is a 404, as is a UID that isn't in
the folder.

After a move, the mailbox observers are told, as the IMAP server tells them after COPY and
MOVE (``imap/observers.py``): a message moved into Junk here trains the spam filter exactly
like one moved there by Thunderbird.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.logger import Logger

from txmailhost.imap.observers import tell
from txmailhost.store.interfaces import INBOX, IMailboxMove, NoSuchMailbox, NoSuchMessage
from txmailhost.web.context import Route, WebContext
from txmailhost.web.reading import MAX_UID
from txmailhost.web.responses import Response, redirect, text

log = Logger(namespace="txmailhost.web")

TRASH = "Trash"
JUNK = "Junk"


def _uids(ctx: WebContext) -> list[int]:
    given = ctx.request.args.get(b"uid", [])
    return [int(u) for u in given if u.isdigit() and 0 < int(u) <= MAX_UID][:1000]


async def _present(ctx: WebContext, folder: str) -> tuple[object, list[int]]:
    """The user's mailbox ``folder`` and those of the posted UIDs that are in it (404 if
    none is)."""
    uids = _uids(ctx)
    if not uids:
        raise NoSuchMessage("no message chosen")
    mailbox = await ctx.store.open(ctx.user, folder)
    present = [m.uid for m in await mailbox.messages(uids, False, False)]
    if not present:
        raise NoSuchMessage(uids[0])
    return mailbox, present


def _back(folder: str) -> Response:
    return redirect(f"/mail?folder={quote(folder, safe='')}")


async def _transfer(mailbox: Any, uids: list[int], destination: Any) -> list[tuple[int, int]]:
    """Move ``uids`` of ``mailbox`` into ``destination`` as IMAP MOVE does (imap/messages.py):
    in one step of the store where it has one, else a copy, then an expunge (a crash between
    the two leaves a message in both). (old UID, new UID) of each message moved."""
    if IMailboxMove.providedBy(mailbox):
        return await mailbox.move(uids, destination)
    pairs = await mailbox.copy(uids, destination)
    await mailbox.expunge(uids)
    return pairs


async def _move(ctx: WebContext, mailbox: Any, uids: list[int], target: str) -> None:
    """IMAP MOVE, and what IMAP tells the mailbox observers after it: into ``Junk`` the spam
    filter learns spam, out of it ham (``spam/training.py``)."""
    destination = await ctx.store.open(ctx.user, target)  # NoSuchMailbox: 404
    pairs = await _transfer(mailbox, uids, destination)
    if pairs:
        tell(ctx.services.observers, ctx.user, mailbox.name, target, destination,
             [new for _old, new in pairs])  # fmt: skip
    log.info("web {user} moved {count} message(s) from {source} to {target}",
             user=ctx.user, count=len(uids), source=mailbox.name, target=target)  # fmt: skip


async def move(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    target = ctx.arg("target")
    if not target or target == folder:
        return text(400, "choose another folder to move to")
    mailbox, uids = await _present(ctx, folder)
    await _move(ctx, mailbox, uids, target)
    return _back(folder)


async def junk(ctx: WebContext) -> Response:
    """Spam moves to Junk; not spam moves out of Junk to the INBOX. Both are moves the
    spam filter learns from, exactly as when an IMAP client makes them."""
    folder = ctx.arg("folder", INBOX) or INBOX
    verdict = ctx.arg("verdict")
    if verdict not in ("spam", "ham"):
        return text(400, "say spam or ham")
    target = JUNK if verdict == "spam" else INBOX
    if target == folder:
        return text(400, "the message is there already")
    mailbox, uids = await _present(ctx, folder)
    try:
        await _move(ctx, mailbox, uids, target)
    except NoSuchMailbox:
        await ctx.store.create_mailbox(ctx.user, target)
        await _move(ctx, mailbox, uids, target)
    return _back(folder)


async def delete(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    mailbox, uids = await _present(ctx, folder)
    trash = None
    if folder != TRASH:
        try:
            trash = await ctx.store.open(ctx.user, TRASH)
        except NoSuchMailbox:
            trash = None
    if trash is not None:
        pairs = await _transfer(mailbox, uids, trash)
        tell(ctx.services.observers, ctx.user, folder, TRASH, trash,
             [new for _old, new in pairs])  # fmt: skip
    else:
        await mailbox.expunge(uids)
    log.info("web {user} deleted {count} message(s) from {source}{how}", user=ctx.user,
             count=len(uids), source=folder,
             how=" to Trash" if trash is not None else " for good")  # fmt: skip
    return _back(folder)


ROUTES = [
    Route("POST", "/message/move", move),
    Route("POST", "/message/delete", delete),
    Route("POST", "/message/junk", junk),
]
