"""Compose, reply, reply to all, forward, and drafts: the form and what its two buttons do.

``GET /compose`` fills the form: empty, from a message being answered (``mode=reply`` or
``replyall``: To from Reply-To or From, for all also the other To and Cc addresses but the
user's own, ``Re:`` subject, the text quoted, ``In-Reply-To``/``References`` per RFC 5322
3.6.4), from a message being forwarded (``mode=forward``: attached whole as message/rfc822,
or quoted inline with its attachments kept), or from a draft of the user's ``Drafts``.

``POST /compose`` (multipart/form-data, files streamed to disk: ``uploads.py``) writes the
message (``composing.py``) and then either

- *sends* it through ``smtp.outbox.Outbox``: port 587's submission policy (From must be the
  user's), filter chain (DKIM signing, spam and virus checks) and durable hand-off; then keeps
  the copy with ``Bcc`` in ``Sent`` (``\\Seen``), marks the message answered ``\\Answered``
  (as an IMAP client would with STORE), and removes the draft it came from; or
- *saves a draft*: appends it to ``Drafts`` (``\\Draft \\Seen``) and removes the draft it
  replaces, as Thunderbird does over IMAP.

A refusal shows the form again with SMTP's reason ("550 5.7.1 From: header address not
owned ...") and the fields as typed; uploaded files must then be chosen again.
"""

from __future__ import annotations

import contextlib
import html
import io
import re
import tempfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any
from urllib.parse import quote

import nh3
from twisted.logger import Logger

from txmailhost.addresslist import shown_mailboxes
from txmailhost.replyfields import one_line, reply_ids
from txmailhost.smtp.outbox import Refused
from txmailhost.store.interfaces import (
    ANSWERED,
    DRAFT,
    INBOX,
    SEEN,
    MessageSource,
    NoSuchMailbox,
    NoSuchMessage,
)
from txmailhost.store.lineends import header_end
from txmailhost.web import composing
from txmailhost.web.composing import Attachment, BadField, Draft
from txmailhost.web.context import Route, WebContext, ascii_number
from txmailhost.web.headerbounds import POLICY
from txmailhost.web.login import _peer_text
from txmailhost.web.messageview import MessageView, extract_part, read_message
from txmailhost.web.reading import MAX_UID
from txmailhost.web.responses import Response, redirect, text
from txmailhost.web.uploads import safe_filename

log = Logger(namespace="txmailhost.web")

SENT, DRAFTS = "Sent", "Drafts"
MODES = ("new", "reply", "replyall", "forward")
MAX_QUOTED = 200_000  # characters of a message quoted into a reply


@dataclass
class Original:
    """The message being answered or forwarded, or the draft reopened."""

    folder: str
    uid: int
    raw: bytes
    view: MessageView
    headers: Any  # email.message.EmailMessage of the header section


def _uid(value: str) -> int | None:
    uid = ascii_number(value)
    return uid if uid is not None and 0 < uid <= MAX_UID else None


def _read_all(stream: Any) -> bytes:
    with stream:
        return stream.read()


def _parse(raw: bytes) -> tuple[MessageView, Any]:
    """The message as read, and its header fields, bounded as the reading page's are
    (``headerbounds.py``); an HTML-only message's text to quote is made here, in the pool
    (``html_text``: half a second for 3 MB of HTML)."""
    view = read_message(raw)
    if view.text is None and view.html is not None:
        view.text = html_text(view.html)
    end = header_end(raw)  # the header block alone: the parser would read the body too
    headers = BytesHeaderParser(policy=POLICY).parsebytes(raw if end < 0 else raw[:end])
    return view, headers


async def _original(ctx: WebContext, folder: str, uid: int | None) -> Original | None:
    """The user's message ``uid`` of ``folder`` (404 via NoSuchMessage if it isn't there)."""
    if uid is None:
        return None
    mailbox = await ctx.store.open(ctx.user, folder)
    stream = await mailbox.open_message(uid)
    raw = await ctx.services.in_thread(_read_all, stream)
    view, headers = await ctx.services.in_thread(_parse, raw)
    return Original(folder, uid, raw, view, headers)


def _field(headers: Any, name: str) -> str:
    try:
        value = headers.get(name)
    except (ValueError, IndexError, TypeError):
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _raw_field(headers: Any, name: str) -> str:
    """The first ``name`` field as received, not decoded (message ids: see replyfields)."""
    for found, value in headers.raw_items():
        if found.lower() == name.lower():
            return str(value)
    return ""


def _address_list(values: list[str], drop: set[str]) -> str:
    """The mailboxes of raw header values, once each, without those whose address is in
    ``drop`` (lowercase): read from the fields as received, so a name's encoded words stay
    that name, whatever they decode to (``addresslist.shown_mailboxes``)."""
    return _address_list_of([m for value in values for m in shown_mailboxes(value)], drop)


def _address_list_of(mailboxes: list[tuple[str, str]], drop: set[str]) -> str:
    out, seen = [], set(drop)
    for mailbox, address in mailboxes:
        if not address or address.lower() in seen:
            continue
        seen.add(address.lower())
        out.append(mailbox)
    return ", ".join(out)


# Elements whose start or end is a line break in the text of an HTML-only message.
_BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
           "table", "ul", "ol", "pre", "hr", "dd", "dt"}  # fmt: skip
_BLOCK_TAG = re.compile(r"</?(?:" + "|".join(sorted(_BLOCKS)) + r")>")
_SPACES = re.compile(r"[ \t\r\n\f]+")


def html_text(markup: str) -> str:
    """The text of an HTML body as a reader sees it, to quote: entities decoded (``&amp;``
    is "&"), a line break for each paragraph, line and list item, runs of white space one
    space, no script, style or title. nh3 (Rust, fast even on megabytes) keeps only the
    block elements, without attributes, so what is left is tags of ``_BLOCK_TAG`` and
    escaped text."""
    kept = nh3.clean(
        markup,
        tags=_BLOCKS,
        attributes={},
        clean_content_tags={"script", "style", "title", "template", "noscript"},
        strip_comments=True,
        link_rel=None,
    )
    lines = _BLOCK_TAG.sub("\n", _SPACES.sub(" ", kept)).split("\n")
    text = "\n".join(html.unescape(line).strip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _plain(view: MessageView) -> str:
    if view.text is not None:
        return view.text
    if view.html is not None:
        return html_text(view.html)
    return ""


def _quoted(view: MessageView) -> str:
    lines = _plain(view)[:MAX_QUOTED].replace("\r\n", "\n").split("\n")
    said = f"On {view.date}, {view.sender} wrote:" if view.date else f"{view.sender} wrote:"
    return "\n\n" + said + "\n" + "\n".join("> " + line if line else ">" for line in lines)


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def reply_draft(ctx: WebContext, original: Original, everyone: bool) -> Draft:
    headers, view = original.headers, original.view
    replied = shown_mailboxes(_raw_field(headers, "Reply-To")) or shown_mailboxes(
        _raw_field(headers, "From")
    )
    to = _address_list_of(replied, set())
    cc = ""
    if everyone:
        taken = {ctx.user.lower()} | {address.lower() for _mailbox, address in replied}
        cc = _address_list([_raw_field(headers, "To"), _raw_field(headers, "Cc")], taken)
    # Only real msg-ids of the raw fields, and the subject on one line (replyfields): what
    # the sender wrote there can't become a field of the reply, nor make it unsendable.
    parent, references = reply_ids(
        _raw_field(headers, "Message-ID"), _raw_field(headers, "References")
    )
    return Draft(
        sender=ctx.user,
        to=to,
        cc=cc,
        subject=one_line(_prefixed("Re:", view.subject)),
        text=_quoted(view),
        in_reply_to=parent or "",
        references=" ".join(references),
    )


def forward_draft(ctx: WebContext, original: Original, inline: bool) -> Draft:
    view = original.view
    text = ""
    if inline:
        text = (
            "\n\n---------- Forwarded message ----------\n"
            f"From: {view.sender}\nDate: {view.date}\nSubject: {view.subject}\n"
            f"To: {view.to}\n\n" + _plain(view)[:MAX_QUOTED]
        )
    return Draft(sender=ctx.user, subject=one_line(_prefixed("Fwd:", view.subject)), text=text)


def draft_of(ctx: WebContext, original: Original) -> Draft:
    headers = original.headers
    return Draft(
        sender=_field(headers, "From") or ctx.user,
        to=_field(headers, "To"),
        cc=_field(headers, "Cc"),
        bcc=_field(headers, "Bcc"),
        subject=original.view.subject,
        text=_plain(original.view),
        in_reply_to=_field(headers, "In-Reply-To"),
        references=_field(headers, "References"),
    )


async def compose_page(ctx: WebContext) -> Response:
    mode = ctx.arg("mode", "new")
    mode = mode if mode in MODES else "new"
    folder = ctx.arg("folder", INBOX) or INBOX
    inline = ctx.arg("inline") == "1"
    draft_uid = _uid(ctx.arg("draft"))
    values: dict[str, Any] = {"mode": mode, "answer": None, "forward": None, "source": None,
                              "kept": [], "draft_uid": draft_uid or "", "inline": inline,
                              "saved": ctx.arg("saved") == "1"}  # fmt: skip
    if draft_uid is not None:
        original = await _original(ctx, DRAFTS, draft_uid)
        assert original is not None
        draft = draft_of(ctx, original)
        values.update(source=(DRAFTS, draft_uid), kept=original.view.attachments)
        answer = _answer_of(original.headers)
        values["answer"] = answer
    elif mode == "new":
        to = ctx.arg("to")  # a mailto: link's address
        draft = Draft(sender=ctx.user, to="" if any(c in to for c in "\r\n\0") else to[:2000])
    else:
        uid = _uid(ctx.arg("uid"))
        if uid is None:
            raise NoSuchMessage(ctx.arg("uid"))
        original = await _original(ctx, folder, uid)
        assert original is not None
        if mode == "forward":
            draft = forward_draft(ctx, original, inline)
            if inline:
                values.update(source=(folder, uid), kept=original.view.attachments)
            else:
                values["forward"] = (folder, uid, original.view.subject or "message")
        else:
            draft = reply_draft(ctx, original, mode == "replyall")
            values["answer"] = (folder, uid)
    return _form(ctx, draft, **values)


def _answer_of(headers: Any) -> tuple[str, int] | None:
    """A draft of a reply remembers the message it answers (our own header field), so
    sending it later still marks that message answered."""
    value = _field(headers, "X-Txm-Answers")
    folder, _, uid = value.rpartition(" ")
    number = _uid(uid)
    return (folder, number) if folder and number else None


def _form(ctx: WebContext, draft: Draft, status: int = 200, error: str = "", **values: Any):
    values.setdefault("mode", "new")
    for name in ("answer", "forward", "source"):
        values.setdefault(name, None)
    values.setdefault("kept", [])
    values.setdefault("draft_uid", "")
    values.setdefault("inline", False)
    values.setdefault("saved", False)
    max_size = ctx.services.outbox.max_message_size if ctx.services.outbox else 0
    return ctx.render("compose.html", status, draft=draft, error=error, max_size=max_size,
                      can_send=ctx.services.outbox is not None, **values)  # fmt: skip


def _pair(ctx: WebContext, prefix: str) -> tuple[str, int] | None:
    """A (folder, UID) the form carries; none for a folder name no mailbox can have (it
    goes into the draft's ``X-Txm-Answers`` field: a line break there was a header)."""
    folder, uid = ctx.arg(prefix + "_folder"), _uid(ctx.arg(prefix + "_uid"))
    if not folder or uid is None or not composing.is_line(folder):
        return None
    return (folder, uid)


def _posted_draft(ctx: WebContext) -> Draft:
    return Draft(
        sender=ctx.arg("from") or ctx.user,
        to=ctx.arg("to"),
        cc=ctx.arg("cc"),
        bcc=ctx.arg("bcc"),
        subject=ctx.arg("subject"),
        text=ctx.arg("body"),
        in_reply_to=ctx.arg("in_reply_to"),
        references=ctx.arg("references"),
    )


async def _attachments(ctx: WebContext) -> tuple[list[Attachment], list[Any]]:
    """The files to attach: kept parts of the source message, the forwarded message
    (whole), then the uploads; and the streams to close afterwards."""
    found: list[Attachment] = []
    streams: list[Any] = []
    source = _pair(ctx, "source")
    parts = [p.decode("ascii", "replace") for p in ctx.request.args.get(b"keep_part", [])]
    if source is not None and parts:
        original = await _original(ctx, *source)
        assert original is not None
        for number in parts[:100]:
            part = await ctx.services.in_thread(extract_part, original.raw, number)
            if part is None:
                continue
            data = part.data
            # the sender chose that name: made safe as an upload's is (RFC 2231 lets it
            # hold a CR LF, which the header can't)
            found.append(Attachment(safe_filename(part.filename), part.content_type,
                                    lambda data=data: io.BytesIO(data)))  # fmt: skip
    forward = _pair(ctx, "forward")
    if forward is not None:
        mailbox = await ctx.store.open(ctx.user, forward[0])
        stream = await mailbox.open_message(forward[1])
        streams.append(stream)
        name = composing.check_line("Subject", ctx.arg("subject"))[:100] or "message"
        found.append(Attachment(safe_filename(name) + ".eml", "message/rfc822",
                                lambda: contextlib.nullcontext(stream), rfc822=True))  # fmt: skip
    for upload in ctx.uploads:
        found.append(Attachment(upload.filename, upload.content_type,
                                lambda u=upload: contextlib.nullcontext(u.open())))  # fmt: skip
    return found, streams


async def compose_submit(ctx: WebContext) -> Response:
    action = ctx.arg("action")
    if action not in ("send", "draft"):
        return text(400, "unknown action")
    draft = _posted_draft(ctx)
    answer, draft_uid = _pair(ctx, "answer"), _uid(ctx.arg("draft_uid"))
    again = {"answer": answer, "draft_uid": draft_uid or "", "source": _pair(ctx, "source")}
    if action == "send" and ctx.services.outbox is None:
        return _form(ctx, draft, 503, "Sending is not available on this server.", **again)
    try:
        attachments, streams = await _attachments(ctx)
    except BadField as e:
        return _form(ctx, draft, 400, f"{e.field}: {e.why}", **again)
    draft.attachments = attachments
    domain = ctx.user.rpartition("@")[2]
    try:
        composed = await ctx.services.in_thread(
            composing.write_message, draft, tempfile.gettempdir(), domain
        )
        recipients = composing.recipients(draft)
    except BadField as e:
        return _form(ctx, draft, 400, f"{e.field}: {e.why}", **again)
    finally:
        for stream in streams:
            stream.close()
    try:
        if action == "draft":
            return await _save_draft(ctx, composed, answer, draft_uid)
        return await _send(ctx, draft, composed, recipients, answer, draft_uid, again)
    finally:
        composed.remove()


async def _append(ctx: WebContext, folder: str, composed: Any, flags: list[str]) -> int:
    try:
        mailbox = await ctx.store.open(ctx.user, folder)
    except NoSuchMailbox:
        await ctx.store.create_mailbox(ctx.user, folder)
        mailbox = await ctx.store.open(ctx.user, folder)
    stream = await ctx.services.in_thread(composed.open, True)
    try:
        source = MessageSource.from_file(stream, composed.size(True))
        _uidvalidity, uid = await mailbox.append(source, flags, None)
    finally:
        stream.close()
    return uid


async def _drop_draft(ctx: WebContext, uid: int | None) -> None:
    if uid is None:
        return
    drafts = await ctx.store.open(ctx.user, DRAFTS)
    present = [m.uid for m in await drafts.messages([uid], False, False)]
    if present:
        await drafts.expunge(present)


async def _save_draft(
    ctx: WebContext, composed: Any, answer: tuple[str, int] | None, replaced: int | None
) -> Response:
    if answer is not None:
        # a folder name may be an encoded word holding a line break: then the draft doesn't
        # remember what it answers rather than carry a field of the folder's making
        with contextlib.suppress(BadField):
            composed.stored_head += composing.folded("X-Txm-Answers", f"{answer[0]} {answer[1]}")
    uid = await _append(ctx, DRAFTS, composed, [DRAFT, SEEN])
    await _drop_draft(ctx, replaced)
    log.info("web {user} saved a draft", user=ctx.user)
    return redirect(f"/compose?draft={uid}&saved=1")


async def _send(
    ctx: WebContext,
    draft: Draft,
    composed: Any,
    recipients: list[str],
    answer: tuple[str, int] | None,
    draft_uid: int | None,
    again: dict[str, Any],
) -> Response:
    if not recipients:
        return _form(ctx, draft, 400, "Add at least one recipient.", **again)
    [sender] = composing.addresses("From", draft.sender)
    try:
        receipt = await ctx.services.outbox.send(
            ctx.user, _peer_text(ctx), sender.addr_spec, recipients,
            lambda: composed.open(False), composed.size(False),
        )  # fmt: skip
    except Refused as refused:
        reply = refused.reply
        about = f" ({refused.recipient})" if refused.recipient else ""
        message = f"Not sent{about}: {reply.code} {reply.enhanced} {reply.text}"
        return _form(ctx, draft, 400 if reply.code >= 500 else 503, message, **again)
    await _append(ctx, SENT, composed, [SEEN])
    if answer is not None:
        with contextlib.suppress(NoSuchMailbox, NoSuchMessage):
            mailbox = await ctx.store.open(ctx.user, answer[0])
            present = [m.uid for m in await mailbox.messages([answer[1]], False, False)]
            if present:
                await mailbox.store_flags(present, [ANSWERED], "+")
    await _drop_draft(ctx, draft_uid)
    log.info("web {user} sent {queue_id} to {count} recipient(s)",
             user=ctx.user, queue_id=receipt.queue_id, count=len(recipients))  # fmt: skip
    return redirect(f"/mail?folder={quote(SENT, safe='')}")


ROUTES = [
    Route("GET", "/compose", compose_page),
    Route("POST", "/compose", compose_submit, upload=True),
]
