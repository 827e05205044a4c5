"""Searching a folder on the server, with IMAP SEARCH's meaning (RFC 3501 §6.4.4).

The search box's words become SEARCH criteria and run through the IMAP server's own code:
``imap/search.py`` compiles them and ``imap/matching.py`` runs them over the folder the way
``UID SEARCH`` does (index values alone for flags and dates, the cached header block for
header keys, the message for TEXT and BODY), so the webmail finds what Thunderbird finds. The
simple box searches ``TEXT`` (headers and body, case-insensitive substring, encoded text
decoded); "advanced" takes criteria as an IMAP client would write them
(``FROM bob UNSEEN SINCE 1-Jan-2026``), the same language as ``txmailhost search``.
"""

from __future__ import annotations

from typing import Any

from txmailhost.imap.matching import matching
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.search import BadCharset, parse_search
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import INBOX
from txmailhost.web.context import Route, WebContext
from txmailhost.web.folders import folder_list
from txmailhost.web.listrows import PAGE_SIZE, rows_of
from txmailhost.web.responses import Response

MAX_QUERY = 1000


def quoted(text: str) -> str:
    """``text`` as an IMAP quoted string (RFC 3501 §4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def criteria_of(simple: str, advanced: str) -> str:
    """The SEARCH criteria for the form: each word of the simple box must be in the text
    (TEXT, ANDed), the advanced box is used as written."""
    if advanced.strip():
        return advanced.strip()
    words = simple.split()
    return " ".join(f"TEXT {quoted(w)}" for w in words) or "ALL"


async def run_search(mailbox: Any, criteria: str) -> list[int]:
    """The UIDs of ``mailbox``'s messages matching IMAP SEARCH ``criteria``, newest first.
    Raises ``ValueError`` with a message for criteria that don't parse."""
    selection = await mailbox.select(False)
    view = SelectedMailbox(
        mailbox, mailbox.name, True, selection.uids, selection.uidvalidity,
        selection.uidnext, selection.highestmodseq, [],
    )  # fmt: skip

    def resolve(text: bytes, by_uid: bool) -> set[int]:
        return {seq for seq, _uid in view.resolve(text, by_uid)}

    try:
        program = parse_search(Reader(criteria.encode("utf-8")), resolve, esearch=False)
    except BadCharset:
        raise ValueError("only UTF-8 searches are supported") from None
    except ParseError as e:
        raise ValueError(str(e)) from None
    found = await matching(view, program)
    return sorted((message.uid for _seq, message in found), reverse=True)


async def search_page(ctx: WebContext) -> Response:
    folder = ctx.arg("folder", INBOX) or INBOX
    simple = ctx.arg("q")[:MAX_QUERY]
    advanced = ctx.arg("criteria")[:MAX_QUERY]
    mailbox = await ctx.store.open(ctx.user, folder)
    error, rows, total = "", [], 0
    if simple.strip() or advanced.strip():
        try:
            uids = await run_search(mailbox, criteria_of(simple, advanced))
        except ValueError as e:
            error = f"The search could not be read: {e}"
        else:
            total = len(uids)
            rows = await rows_of(mailbox, uids[:PAGE_SIZE])
    return ctx.render(
        "search.html",
        400 if error else 200,
        folder=folder,
        folders=await folder_list(ctx),
        q=simple,
        criteria=advanced,
        error=error,
        rows=rows,
        total=total,
        shown=PAGE_SIZE,
    )


ROUTES = [Route("GET", "/search", search_page)]
