"""Running a compiled SEARCH program (``search.parse_search``) over messages of the selected
mailbox: what SORT, THREAD and the RFC 5267 search contexts share with SEARCH.

Messages are read in batches, each one store call that loads only what the program needs
(index values; the cached header block; the whole message), so matching on flags over 100,000
messages reads the index only.
"""

from __future__ import annotations

from collections.abc import Sequence

from txmailhost.imap.search import Candidate, SearchProgram
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import StoredMessage

INDEX_BATCH = 20000
HEADER_BATCH = 1000
CONTENT_BATCH = 200


async def matching(
    view: SelectedMailbox, program: SearchProgram, uids: Sequence[int] | None = None
) -> list[tuple[int, StoredMessage]]:
    """(sequence number, index values) of the messages that match, in sequence order; only
    among ``uids`` (sorted, all in the view) when given."""
    if uids is None:
        uids = view.uids
    size = CONTENT_BATCH if program.content else HEADER_BATCH if program.header else INDEX_BATCH
    matches: list[tuple[int, StoredMessage]] = []
    for start in range(0, len(uids), size):
        batch = list(uids[start : start + size])
        for message in await view.mailbox.messages(batch, program.header, program.content):
            seq = view.seq_of(message.uid)
            if not seq:
                continue
            if program.predicate(Candidate(seq, message, view.is_recent(message.uid))):
                matches.append((seq, message._replace(header=None, content=None)))
    return matches
