"""SORT (RFC 5256 §3) with SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267 §3), and THREAD
(RFC 5256 §3, algorithms in ``thread.py``).

``SORT [RETURN (opts)] (criteria) charset search-key...``: the search runs as SEARCH does
(``matching``), then the matches are ordered by the criteria, the first one the most
significant; REVERSE flips one criterion; ties fall back to the sequence number, ascending
whatever REVERSE says (§3). ARRIVAL and SIZE come from the index; the others from the header
keys derived once per message (``headerkeys``), so a SORT of a large mailbox touches no message
file after the first one. With RETURN the answer is an ESEARCH response (RFC 5267), and UPDATE
keeps the result current (``context.py``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from txmailhost.imap import headerkeys, replies, thread, threadcache
from txmailhost.imap.context import ContextCommands, parse_return
from txmailhost.imap.keycache import SortCaches
from txmailhost.imap.matching import matching
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done
from txmailhost.imap.search import BadCharset, SearchProgram, parse_search
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import StoredMessage

CRITERIA = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_INDEX_CRITERIA = frozenset({"ARRIVAL", "SIZE"})
_DATE_CRITERIA = _INDEX_CRITERIA | {"DATE"}
_CHARSETS = (b"UTF-8", b"US-ASCII", b"UTF8")
EMPTY_KEYS = headerkeys.HeaderKeys(None, "", False, "", "", "", "", "", "", ())
THREAD_ALGORITHMS: dict[bytes, Callable[[list[thread.ThreadMessage]], Any]] = {
    b"REFERENCES": thread.references,
    b"ORDEREDSUBJECT": thread.ordered_subject,
}
CAPABILITIES = [
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=ORDEREDSUBJECT",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
]

Criteria = list[tuple[str, bool]]
_new_thread_message = tuple.__new__


def parse_criteria(reader: Reader) -> Criteria:
    """``(REVERSE DATE SUBJECT)`` → [("DATE", True), ("SUBJECT", False)]."""
    reader.open_paren()
    criteria: Criteria = []
    reverse = False
    while True:
        word = reader.atom().decode("ascii", "replace").upper()
        if word == "REVERSE" and not reverse:
            reverse = True
        elif word in CRITERIA:
            criteria.append((word, reverse))
            reverse = False
        else:
            raise ParseError(f"unknown sort criterion {word}")
        if reader.peek() == b")":
            break
        reader.sp()
        if len(criteria) > len(CRITERIA) * 2:
            raise ParseError("too many sort criteria")
    reader.close_paren()
    if reverse or not criteria:
        raise ParseError("REVERSE must be followed by a sort criterion")
    return criteria


def parse_charset(reader: Reader) -> None:
    """The charset SORT and THREAD require (RFC 5256 §3): UTF-8 or US-ASCII only."""
    reader.sp()
    if reader.astring().upper() not in _CHARSETS:
        raise replies.IMAPError("unsupported charset", code="BADCHARSET (UTF-8 US-ASCII)")
    reader.sp()


def sent_date(message: StoredMessage, sent: float | None) -> float:
    """RFC 5256 §2.2: the Date field (UTC, ``sent``), or INTERNALDATE without a usable one."""
    return sent if sent is not None else message.internaldate


def _key(
    name: str, keys: dict[int, headerkeys.HeaderKeys], sent: dict[int, float | None]
) -> Callable[[Any], Any]:
    """The sort key of criterion ``name``; DATE from ``sent`` when the sent dates were read
    alone (``headerkeys.load_sent``), else from the whole ``keys``."""

    def of(item: tuple[int, StoredMessage]) -> headerkeys.HeaderKeys:
        return keys.get(item[1].uid, EMPTY_KEYS)

    table: dict[str, Callable[[tuple[int, StoredMessage]], Any]] = {
        "ARRIVAL": lambda item: item[1].internaldate,
        "SIZE": lambda item: item[1].size,
        "DATE": (
            (lambda item: sent_date(item[1], sent.get(item[1].uid)))
            if sent
            else (lambda item: sent_date(item[1], of(item).sent))
        ),
        "SUBJECT": lambda item: of(item).subject,
        "FROM": lambda item: of(item).from_,
        "TO": lambda item: of(item).to,
        "CC": lambda item: of(item).cc,
        "DISPLAYFROM": lambda item: of(item).display_from,
        "DISPLAYTO": lambda item: of(item).display_to,
    }
    return table[name]


async def ordered(
    view: SelectedMailbox,
    caches: SortCaches,
    matches: list[tuple[int, StoredMessage]],
    criteria: Criteria,
) -> list[tuple[int, StoredMessage]]:
    """``matches`` (in sequence order) sorted by ``criteria``."""
    keys: dict[int, headerkeys.HeaderKeys] = {}
    sent: dict[int, float | None] = {}
    names = {name for name, _reverse in criteria}
    messages = [m for _seq, m in matches]
    if names <= _DATE_CRITERIA and "DATE" in names:
        # DATE (and ARRIVAL, SIZE) alone: the sent dates, not every message's ten keys
        sent = await headerkeys.load_sent(view, caches.keys, caches.sent, messages)
    elif not names <= _INDEX_CRITERIA:
        keys = await headerkeys.load(view, caches.keys, messages)
    caches.loaded()
    items = list(matches)
    # Stable sorts, least significant criterion first; equal keys keep sequence order, also
    # under REVERSE (Python's reverse=True keeps stability).
    for name, reverse in reversed(criteria):
        items.sort(key=_key(name, keys, sent), reverse=reverse)
    return items


class SortCommands(ContextCommands):
    """Part of ``IMAPServer``: SORT, THREAD (and, inherited, SEARCH contexts)."""

    account: Any
    factory: Any
    view: SelectedMailbox | None
    condstore: bool
    write: Callable[[bytes], None]
    _sort_caches: tuple[SelectedMailbox, SortCaches] | None = None

    def sort_caches(self, view: SelectedMailbox) -> SortCaches:
        """The sort keys loaded for the selected mailbox: by this session or, kept by the
        factory's ``SortKeyCache``, by an earlier one (``keycache``)."""
        if self._sort_caches is None or self._sort_caches[0] is not view:
            self._sort_caches = (view, self.factory.sort_keys.of(view))
        return self._sort_caches[1]

    def _search_program(self, reader: Reader) -> SearchProgram:
        view = self.view
        assert view is not None

        def resolve(text: bytes, uid_set: bool) -> set[int]:
            self._resolved_sequence_numbers = self._resolved_sequence_numbers or not uid_set
            return {seq for seq, _uid in view.resolve(text, uid_set)}

        self._resolved_sequence_numbers = False
        try:
            program = parse_search(reader, resolve, esearch=False)
        except BadCharset:
            raise replies.IMAPError(
                "unsupported charset", code="BADCHARSET (UTF-8 US-ASCII)"
            ) from None
        if program.uses_modseq:
            self.condstore = True
        return program

    async def _sort(self, reader: Reader, by_uid: bool) -> Done:
        view = self.view
        assert view is not None
        reader.sp()
        options = parse_return(reader)
        if options is not None and options.save:
            raise replies.BadCommand("RETURN (SAVE) is for SEARCH (RFC 5182)")
        criteria = parse_criteria(reader)
        parse_charset(reader)
        program = self._search_program(reader)
        matches = await matching(view, program)
        items = await ordered(view, self.sort_caches(view), matches, criteria)
        numbers = [m.uid if by_uid else seq for seq, m in items]
        if options is None:
            self.write(b"* SORT" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
        else:
            modseq = max((m.modseq for _s, m in items), default=0) if program.uses_modseq else 0

            async def reorder(
                members: list[tuple[int, StoredMessage]],
            ) -> list[tuple[int, StoredMessage]]:
                return await ordered(view, self.sort_caches(view), members, criteria)

            self.answer_context(reader, options, program, by_uid, items, modseq, reorder)
        return Done("SORT completed")

    async def _thread(self, reader: Reader, by_uid: bool) -> Done:
        view = self.view
        assert view is not None
        reader.sp()
        name = reader.atom().upper()
        algorithm = THREAD_ALGORITHMS.get(name)
        if algorithm is None:
            raise ParseError("unknown threading algorithm")
        parse_charset(reader)
        program = self._search_program(reader)
        matches = await matching(view, program)
        # The answer an earlier session got for the same messages under the same numbers
        # (``threadcache``): a webmail's threads view asks again at every page.
        if not view.mailboxid or len(matches) < threadcache.MIN_MESSAGES:
            threads = await self._threads(view, algorithm, matches, by_uid)
        else:
            kept = self.factory.kept_threads
            key = (view.mailboxid, view.uidvalidity, name, by_uid)
            seqs = array("I", [seq for seq, _m in matches])
            uids = array("I", [m.uid for _s, m in matches])
            threads = kept.get(key, seqs, uids)
            if threads is None:
                threads = await self._threads(view, algorithm, matches, by_uid)
                kept.put(key, seqs, uids, threads)
        self.write(b"* THREAD" + (b" " + threads if threads else b"") + b"\r\n")
        return Done("THREAD completed")

    async def _threads(
        self,
        view: SelectedMailbox,
        algorithm: Callable[[list[thread.ThreadMessage]], Any],
        matches: list[tuple[int, StoredMessage]],
        by_uid: bool,
    ) -> bytes:
        """The THREAD response data of ``matches`` by ``algorithm``."""
        caches = self.sort_caches(view)
        keys = await headerkeys.load(view, caches.keys, [m for _s, m in matches])
        caches.loaded()
        messages = []
        for seq, message in matches:
            message_keys = keys.get(message.uid, EMPTY_KEYS)
            sent = sent_date(message, message_keys.sent)
            number = message.uid if by_uid else seq
            # tuple.__new__ skips NamedTuple's Python-level __new__ (100,000 times a THREAD)
            messages.append(
                _new_thread_message(thread.ThreadMessage, (number, seq, sent, message_keys))
            )
        return thread.render(algorithm(messages))
