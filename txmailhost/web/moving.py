"""Moving messages between folders, and deleting them (to Trash, or for good from Trash).

The same store calls as IMAP MOVE (RFC 6851): ``IMailbox.copy`` into the target, durably,
then ``expunge`` of the originals, so an IMAP client watching either folder sees the same
thing as after another client's MOVE. Deleting moves to the user's ``Trash``; deleting in
``Trash`` (or for a user without one) expunges for good. Like every route, both open only the
session user's folders: a folder name that is not theirs is a 404, as is a UID that isn't in
the folder.
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.logger import Logger

from txmailhost.store.interfaces import INBOX, NoSuchMailbox, NoSuchMessage
from txmailhost.web.context import Route, WebContext
from txmailhost.web.reading import MAX_UID
from txmailhost.web.responses import Response, redirect, text

log = Logger(namespace="txmailhost.web")

TRASH = "Trash"


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


async def move(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    target = ctx.arg("target")
    if not target or target == folder:
        return text(400, "choose another folder to move to")
    mailbox, uids = await _present(ctx, folder)
    destination = await ctx.store.open(ctx.user, target)  # NoSuchMailbox: 404
    await mailbox.copy(uids, destination)
    await mailbox.expunge(uids)
    log.info("web {user} moved {count} message(s) from {source} to {target}",
             user=ctx.user, count=len(uids), source=folder, target=target)  # fmt: skip
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
        await mailbox.copy(uids, trash)
    await mailbox.expunge(uids)
    log.info("web {user} deleted {count} message(s) from {source}{how}", user=ctx.user,
             count=len(uids), source=folder,
             how=" to Trash" if trash is not None else " for good")  # fmt: skip
    return _back(folder)


ROUTES = [
    Route("POST", "/message/move", move),
    Route("POST", "/message/delete", delete),
]
