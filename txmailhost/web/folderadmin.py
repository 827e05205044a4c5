"""Creating, renaming and deleting folders: IMAP CREATE, RENAME and DELETE (RFC 3501 §6.3.3-5)
through the same store calls, so a client sees the change at its next LIST.

Names are checked by the store (``InvalidMailboxName`` for one that would climb out of the
user's directory or can't be kept on disk); the hierarchy separator is ``/``, as IMAP LIST
reports it. The INBOX can be neither renamed nor deleted here (IMAP's RENAME of INBOX moves
its messages instead, which a browser user would not expect from "Rename"). Deleting asks
for a confirmation box, since the folder's messages go with it, as with IMAP DELETE.
"""

from __future__ import annotations

from twisted.logger import Logger

from txmailhost.store.interfaces import (
    INBOX,
    InvalidMailboxName,
    MailboxExists,
    NoSuchMailbox,
    TooManyMailboxes,
)
from txmailhost.web.context import Route, WebContext
from txmailhost.web.folders import folder_list
from txmailhost.web.responses import Response

log = Logger(namespace="txmailhost.web")

MAX_NAME = 200


def _name(text: str) -> str:
    return "/".join(part.strip() for part in text.strip().strip("/").split("/"))


async def _page(ctx: WebContext, status: int = 200, error: str = "", done: str = "") -> Response:
    return ctx.render("folder_admin.html", status, folders=await folder_list(ctx), error=error,
                      done=done, folder="")  # fmt: skip


async def manage(ctx: WebContext) -> Response:
    return await _page(ctx, done=ctx.notice(100))


def _bad(name: str) -> str:
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name) or "//" in name:
        return "Give the folder a name (at most 200 characters, no control characters)."
    if name.upper() == INBOX:
        return "That name is the inbox's."
    return ""


async def create(ctx: WebContext) -> Response:
    parent = _name(ctx.arg("parent"))
    name = _name(ctx.arg("name"))
    full = f"{parent}/{name}" if parent and name else name
    why = _bad(name) or _bad(full)
    if why:
        return await _page(ctx, 400, why)
    try:
        await ctx.store.create_mailbox(ctx.user, full)
    except MailboxExists:
        return await _page(ctx, 400, f"A folder named {full} exists already.")
    except InvalidMailboxName:
        return await _page(ctx, 400, f"{full} can't be a folder name.")
    except TooManyMailboxes as e:
        return await _page(ctx, 400, f"No more folders can be made: {e}.")
    log.info("web {user} created folder {name}", user=ctx.user, name=full)
    return ctx.done("/folders/manage", "Created " + full)


async def rename(ctx: WebContext) -> Response:
    old, new = ctx.arg("folder"), _name(ctx.arg("name"))
    if old == INBOX:
        return await _page(ctx, 400, "The inbox can't be renamed.")
    why = _bad(new)
    if why:
        return await _page(ctx, 400, why)
    if old not in await ctx.store.list_mailboxes(ctx.user):
        raise NoSuchMailbox(old)
    try:
        await ctx.store.rename_mailbox(ctx.user, old, new)
    except MailboxExists:
        return await _page(ctx, 400, f"A folder named {new} exists already.")
    except InvalidMailboxName:
        return await _page(ctx, 400, f"{new} can't be a folder name.")
    log.info("web {user} renamed folder {old} to {new}", user=ctx.user, old=old, new=new)
    return ctx.done("/folders/manage", f"Renamed {old} to {new}")


async def delete(ctx: WebContext) -> Response:
    name = ctx.arg("folder")
    if name == INBOX:
        return await _page(ctx, 400, "The inbox can't be deleted.")
    if ctx.arg("confirm") != "1":
        return await _page(ctx, 400, f"Tick the box to confirm deleting {name} and its mail.")
    if name not in await ctx.store.list_mailboxes(ctx.user):
        raise NoSuchMailbox(name)
    await ctx.store.delete_mailbox(ctx.user, name)
    log.info("web {user} deleted folder {name}", user=ctx.user, name=name)
    return ctx.done("/folders/manage", "Deleted " + name)


ROUTES = [
    Route("GET", "/folders/manage", manage),
    Route("POST", "/folders/create", create),
    Route("POST", "/folders/rename", rename),
    Route("POST", "/folders/delete", delete),
]
