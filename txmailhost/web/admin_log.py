"""The admin console's event log: one message's story by queue id, or an address's, as
``txmailhost log grep QUEUE_ID|ADDRESS`` tells it, through the same code (``ops.log_grep``:
``[log] file`` and its rotations, either format, a traceback kept with its event).

``/admin/log`` without a search shows the most recent events; ``?q=QUEUE_ID`` every event
naming that message (its SMTP transaction, queueing, each delivery attempt, bounce);
``?q=ADDRESS`` every event naming the address and then those of the messages they name.
The relay queue's page links each queue id here. Reading the files runs in the site's pool;
at most :data:`MAX_SHOWN` events are shown, the latest ones.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from txmailhost.ops.log_grep import Event, read_events, story
from txmailhost.web.admin_access import admin_only, sources
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response

MAX_SHOWN = 200
RECENT = 50
# a queue id (hex, as the spool makes them) or an address; anything else is refused
_TERM = re.compile(r"[0-9A-Fa-f]{15,40}|[^\s@<>\"]{1,64}@[^\s@<>\"]{1,255}")


def _search(paths: list[str], term: str) -> tuple[list[Event], int]:
    """(the latest MAX_SHOWN events of ``term``'s story, how many there are)."""
    found = story(list(read_events(paths)), term)
    return found[-MAX_SHOWN:], len(found)


def _recent(paths: list[str]) -> list[Event]:
    return list(deque(read_events(paths[-1:]), maxlen=RECENT))


def _when(event: Event) -> str:
    return event.time.strftime("%Y-%m-%d %H:%M:%S") if event.time else ""


async def log_page(ctx: WebContext) -> Response:
    console = sources(ctx)
    term = ctx.arg("q").strip()
    values: dict[str, Any] = {"q": term, "events": [], "total": 0, "error": "", "searched": False}
    paths = await ctx.services.in_thread(console.log_files)
    if not paths:
        values["error"] = "No event log to read: [log] file is off or not written yet."
        return ctx.render("admin_log.html", **values)
    if not term:
        events = await ctx.services.in_thread(_recent, paths)
        values.update(events=[(_when(e), e.text) for e in events], total=len(events))
        return ctx.render("admin_log.html", **values)
    if not _TERM.fullmatch(term):
        values["error"] = "Search by a queue id (as the queue lists it) or an email address."
        return ctx.render("admin_log.html", 400, **values)
    events, total = await ctx.services.in_thread(_search, paths, term)
    values.update(events=[(_when(e), e.text) for e in events], total=total, searched=True)
    return ctx.render("admin_log.html", **values)


ROUTES = [Route("GET", "/admin/log", admin_only(log_page))]
