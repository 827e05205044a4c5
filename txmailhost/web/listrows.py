"""The rows of a message list (sender, subject, date, size, read and flagged), shared by the
folder, threads and search pages.

A row's sender and subject come from the message's header block as the store's index caches
it (``messages(..., header=True)``): the page's 50 header blocks, never a message file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import gatherResults

from txmailhost.store.interfaces import FLAGGED, SEEN
from txmailhost.web.sortkeys import decode_header, header_fields, sender_name

PAGE_SIZE = 50


@dataclass(frozen=True)
class Row:
    uid: int
    sender: str
    subject: str
    date: float
    size: int
    seen: bool
    flagged: bool


def _runs(uids: list[int], gap: int = 64) -> list[list[int]]:
    """The sorted ``uids`` in groups of near neighbours."""
    runs: list[list[int]] = []
    for uid in sorted(uids):
        if runs and uid - runs[-1][-1] <= gap:
            runs[-1].append(uid)
        else:
            runs.append([uid])
    return runs


async def _headers_of(mailbox: Any, uids: list[int]) -> dict[int, Any]:
    """The page's messages with their header blocks, by UID. A page sorted by size or sender
    is scattered over the folder, and the store reads the index rows of a request as one UID
    range (costly across 100,000 messages), so each run of near UIDs is its own request,
    all of them at once."""
    batches = await gatherResults(
        [mailbox.messages(run, True, False) for run in _runs(uids)], consumeErrors=True
    )
    return {m.uid: m for batch in batches for m in batch}


async def rows_of(mailbox: Any, shown: list[int]) -> list[Row]:
    """The list rows of the messages ``shown`` (UIDs), in that order."""
    stored = await _headers_of(mailbox, shown)
    rows = []
    for uid in shown:
        message = stored.get(uid)
        if message is None:  # expunged meanwhile
            continue
        fields = header_fields(message.header)
        rows.append(
            Row(
                uid=uid,
                sender=sender_name(fields.get("from")) or "(no sender)",
                subject=decode_header(fields.get("subject")) or "(no subject)",
                date=message.internaldate,
                size=message.size,
                seen=SEEN in message.flags,
                flagged=FLAGGED in message.flags,
            )
        )
    return rows
