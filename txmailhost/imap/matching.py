"""Running a compiled SEARCH program (``search.parse_search``) over messages of the selected
mailbox: what SORT, THREAD and the RFC 5267 search contexts share with SEARCH.

Messages are read in batches, each one store call that loads only what the program needs
(index values; the cached header block; the whole message), so matching on flags over 100,000
messages reads the index only.

String keys (TEXT, BODY, SUBJECT, FROM, TO, CC, BCC) are first narrowed by the store's
full-text index where the mailbox has one (``ITextIndex``): only its candidates are read and
tested, by the same predicate, so the answer is the scan's.
"""

from __future__ import annotations

from collections.abc import Sequence

from txmailhost.imap.search import Candidate, SearchProgram
from txmailhost.imap.searchtext import SEARCH_TEXT
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import ITextIndex, StoredMessage

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
    if not program.header and not program.content and not program.origins:
        return await _matching_index(view, program, uids)
    if program.text_query is not None and ITextIndex.providedBy(view.mailbox):
        candidates = await view.mailbox.text_candidates(program.text_query, uids, SEARCH_TEXT)
        if candidates is not None:
            uids = [uid for uid in uids if uid in candidates]
    size = CONTENT_BATCH if program.content else HEADER_BATCH
    matches: list[tuple[int, StoredMessage]] = []
    for start in range(0, len(uids), size):
        batch = list(uids[start : start + size])
        origins = await view.mailbox.origins(batch) if program.origins else {}
        for message in await view.mailbox.messages(batch, program.header, program.content):
            seq = view.seq_of(message.uid)
            if not seq:
                continue
            origin = origins.get(message.uid)
            if program.predicate(Candidate(seq, message, view.is_recent(message.uid), origin)):
                matches.append((seq, message._replace(header=None, content=None)))
    return matches


async def _matching_index(
    view: SelectedMailbox, program: SearchProgram, uids: Sequence[int]
) -> list[tuple[int, StoredMessage]]:
    """Keys on index values only: the columns the store keeps in memory
    (``IMailbox.columns``), never a row per message from the index file. One ``Candidate`` is
    reused: index keys keep nothing in it."""
    matches: list[tuple[int, StoredMessage]] = []
    predicate, ranges, is_recent = program.predicate, view.recent_ranges, view.is_recent
    whole = uids is view.uids  # then a message's sequence number is its position
    candidate = Candidate(
        0, _new_stored(StoredMessage, (0, frozenset(), 0, 0.0, 0, None, None)), False
    )
    for start in range(0, len(uids), INDEX_BATCH):
        batch = list(uids[start : start + INDEX_BATCH])
        columns = await view.mailbox.columns(batch)
        complete = whole and len(columns.uids) == len(batch)
        rows = zip(
            columns.uids,
            columns.flags,
            columns.sizes,
            columns.internaldates,
            columns.modseqs,
            strict=True,
        )
        for offset, (uid, flags, size, date, modseq) in enumerate(rows, start + 1):
            seq = offset if complete else view.seq_of(uid)
            if not seq:
                continue
            # tuple.__new__ skips NamedTuple's Python-level __new__ (100,000 times a SORT)
            message = _new_stored(StoredMessage, (uid, flags, size, date, modseq, None, None))
            candidate.seq, candidate.message = seq, message
            candidate.recent = bool(ranges) and is_recent(uid)
            if predicate(candidate):
                matches.append((seq, message))
    return matches


_new_stored = tuple.__new__
