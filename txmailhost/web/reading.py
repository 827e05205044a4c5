"""Reading one message: the page, its HTML body for the sandboxed iframe, its attachments, and
marking it read, unread, flagged or not.

Every route takes ``folder`` and ``uid`` from the URL and opens the mailbox *of the session's
user* (``ctx.store.open(ctx.user, folder)``): another user's mail can't be named, a folder
name that tries to climb out (``../bob``) is refused by the store, and a UID that isn't in
the folder is ``NoSuchMessage``; each of those is a 404, indistinguishable from a message
that doesn't exist.

The message bytes are read and parsed in the site's thread pool (``messageview.py``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from txmailhost.store.interfaces import FLAGGED, INBOX, SEEN, NoSuchMessage
from txmailhost.web.context import Route, WebContext, ascii_number
from txmailhost.web.messageview import MessageView, extract_part, read_message
from txmailhost.web.responses import Response, body_csp, redirect, same_site_path, text
from txmailhost.web.sanitize import sanitize

# Served as their own type when downloaded; anything else (HTML, SVG, scripts) as octets.
SAFE_DOWNLOAD_TYPES = {
    "application/pdf", "image/png", "image/gif", "image/jpeg", "image/webp", "text/plain",
    "text/calendar", "application/zip", "audio/mpeg", "video/mp4",
}  # fmt: skip
MAX_UID = 2**32 - 1


def _uid(ctx: WebContext) -> int:
    value = ctx.arg("uid")
    uid = ascii_number(value)
    if uid is None or not 0 < uid <= MAX_UID:
        raise NoSuchMessage(value)
    return uid


def _read_all(stream: Any) -> bytes:
    with stream:
        return stream.read()


async def _load(ctx: WebContext) -> tuple[str, int, Any, bytes]:
    """(folder, uid, mailbox, message bytes) of the message the URL names, of this user."""
    folder = ctx.arg("folder", INBOX) or INBOX
    uid = _uid(ctx)
    mailbox = await ctx.store.open(ctx.user, folder)
    stream = await mailbox.open_message(uid)
    raw = await ctx.services.in_thread(_read_all, stream)
    return folder, uid, mailbox, raw


async def message_page(ctx: WebContext) -> Response:
    folder, uid, mailbox, raw = await _load(ctx)
    view: MessageView = await ctx.services.in_thread(read_message, raw)
    [info] = await mailbox.messages([uid], False, False) or [None]
    if info is None:
        raise NoSuchMessage(uid)
    if SEEN not in info.flags:
        await mailbox.store_flags([uid], [SEEN], "+")
    images = ctx.arg("images") == "1"
    base = f"folder={quote(folder, safe='')}&uid={uid}"
    others = [name for name in await ctx.store.list_mailboxes(ctx.user) if name != folder]
    return ctx.render(
        "message.html",
        folders=others,
        folder=folder,
        uid=uid,
        view=view,
        flagged=FLAGGED in info.flags,
        body_url=f"/message/body?{base}" + ("&images=1" if images else ""),
        images=images,
        part_base=f"/message/part?{base}",
    )


def _body_document(view: MessageView, remote_images: bool) -> tuple[str, int]:
    """The iframe's document: the sanitised HTML, or the plain text escaped (blocking)."""
    if view.html is None:
        return "", 0
    cleaned = sanitize(view.html, remote_images, view.inline.get)
    return cleaned.html, cleaned.blocked_images


async def message_body(ctx: WebContext) -> Response:
    """The HTML part, sanitised, as a document of its own for ``<iframe sandbox>``."""
    _folder, _uid_, _mailbox, raw = await _load(ctx)
    view = await ctx.services.in_thread(read_message, raw)
    remote = ctx.arg("images") == "1"
    html, blocked = await ctx.services.in_thread(_body_document, view, remote)
    body = ctx.services.templates.render("body.html", body=Markup(html), blocked=blocked)
    return Response(
        200,
        body.encode("utf-8"),
        csp=body_csp(remote),
        frame_options="SAMEORIGIN",
        headers={"X-Blocked-Images": str(blocked), "Referrer-Policy": "no-referrer"},
    )


def _disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback and the real name in RFC 8187 encoding."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def message_part(ctx: WebContext) -> Response:
    _folder, _uid_, _mailbox, raw = await _load(ctx)
    number = ctx.arg("part")
    part = await ctx.services.in_thread(extract_part, raw, number)
    if part is None:
        return text(404, "no such part")
    kind = part.content_type if part.content_type in SAFE_DOWNLOAD_TYPES else None
    return Response(
        200,
        part.data,
        content_type=kind or "application/octet-stream",
        headers={"Content-Disposition": _disposition(part.filename)},
        csp="default-src 'none'; sandbox",
        cache="private, no-store",
    )


_FLAG_ACTIONS = {
    "read": (SEEN, "+"),
    "unread": (SEEN, "-"),
    "flag": (FLAGGED, "+"),
    "unflag": (FLAGGED, "-"),
}


async def set_flags(ctx: WebContext) -> Response:
    """POST folder, uid (one or more) and action: the same STORE an IMAP client would do."""
    folder = ctx.arg("folder", INBOX) or INBOX
    action = _FLAG_ACTIONS.get(ctx.arg("action"))
    if action is None:
        return text(400, "unknown action")
    given = ctx.request.args.get(b"uid", [])
    uids = [int(u) for u in given if u.isdigit() and 0 < int(u) <= MAX_UID]
    if not uids:
        return text(400, "no message chosen")
    mailbox = await ctx.store.open(ctx.user, folder)
    present = [m.uid for m in await mailbox.messages(uids, False, False)]
    if not present:
        raise NoSuchMessage(uids[0])
    await mailbox.store_flags(present, [action[0]], action[1])
    back = ctx.arg("back")
    if not same_site_path(back):
        back = f"/mail?folder={quote(folder, safe='')}"
    return redirect(back)


ROUTES = [
    Route("GET", "/message", message_page),
    Route("GET", "/message/body", message_body),
    Route("GET", "/message/part", message_part),
    Route("POST", "/message/flags", set_flags),
]
