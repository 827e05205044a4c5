"""Search contexts (RFC 5267 CONTEXT=SEARCH, CONTEXT=SORT): the RETURN options PARTIAL and
UPDATE for SEARCH and SORT, the ESEARCH answer they share with ESORT, the ADDTO/REMOVEFROM
notifications of a result kept current, and CANCELUPDATE.

A SEARCH whose RETURN options are RFC 4731's alone is SEARCH's business (``messages.py``);
this module takes it only when PARTIAL, UPDATE or CONTEXT is asked for.

Keeping a result current costs what changed, not the mailbox: after every command and during
IDLE (``UpdateMixin.sync`` calls ``update_contexts``) each context asks the index what changed
since the modseq it last saw, tests only those messages and the ones that arrived, and notices
expunges from the session's own sequence map. Notifications name messages as the context was
created (UID or sequence numbers); an expunged message is named by the sequence number it had,
as its EXPUNGE response does. A SORT context re-orders its result from the cached sort keys.
Contexts end with CANCELUPDATE, or when the session leaves the mailbox (RFC 5267 §4.2); a
session keeps at most ``MAX_CONTEXTS`` (NO [NOUPDATE] beyond).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from txmailhost.imap import replies
from txmailhost.imap.matching import matching
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done
from txmailhost.imap.search import SearchProgram
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import StoredMessage

MAX_CONTEXTS = 10
_PARTIAL = re.compile(rb"([1-9]\d{0,9}):([1-9]\d{0,9})")
_RESULT_OPTIONS = ("MIN", "MAX", "ALL", "COUNT")

Reorder = Callable[[list[tuple[int, StoredMessage]]], Awaitable[list[tuple[int, StoredMessage]]]]


@dataclass
class ReturnOptions:
    """``RETURN (...)`` of SEARCH or SORT (RFC 4731, RFC 5267 §4)."""

    results: list[str] = field(default_factory=list)  # MIN MAX ALL COUNT, as given
    partial: tuple[int, int] | None = None
    update: bool = False
    context: bool = False  # RFC 5267 §4.2 CONTEXT: a hint; every result here can be kept
    save: bool = False  # RFC 5182 SAVE: keep the result as ``$`` (SEARCH only)

    @property
    def rfc4731_only(self) -> bool:
        return self.partial is None and not self.update and not self.context


def parse_return(reader: Reader) -> ReturnOptions | None:
    """``RETURN (opts) `` when present (and the space after it); None otherwise."""
    if not reader.peek_upper(b"RETURN "):
        return None
    reader.pos += len(b"RETURN ")
    reader.open_paren()
    options = ReturnOptions()
    first = True
    while reader.peek() != b")":
        if not first:
            reader.sp()
        first = False
        word = reader.atom().decode("ascii", "replace").upper()
        if word in _RESULT_OPTIONS:
            options.results.append(word)
        elif word == "PARTIAL":
            reader.sp()
            match = _PARTIAL.fullmatch(reader.atom())
            if match is None or reader.peek() not in (b" ", b")"):
                raise ParseError("PARTIAL needs a range of positions, e.g. 1:100")
            low, high = sorted((int(match[1]), int(match[2])))
            if high > 2**32 - 1:
                raise ParseError("PARTIAL position out of range")
            options.partial = (low, high)
        elif word == "UPDATE":
            options.update = True
        elif word == "CONTEXT":
            options.context = True
        elif word == "SAVE":
            options.save = True
        else:
            raise ParseError(f"unsupported RETURN option {word}")
    reader.close_paren()
    reader.sp()
    if first:
        options.results.append("ALL")  # RFC 4731 §3.1: RETURN () means ALL
    return options


def compress_ordered(numbers: list[int]) -> str:
    """A sequence set keeping the given order: runs of consecutive ascending numbers become
    ranges (``5,3:4,2,1``), as ESORT's ALL and PARTIAL need (RFC 5267 §3.1)."""
    out = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"{numbers[i]}:{numbers[j]}" if j > i else f"{numbers[i]}")
        i = j + 1
    return ",".join(out)


def esearch_line(
    tag: bytes, by_uid: bool, numbers: list[int], options: ReturnOptions, modseq: int = 0
) -> bytes:
    """``* ESEARCH (TAG "t") [UID] MIN a MAX b COUNT n ALL set PARTIAL (lo:hi set)``; for SORT
    MIN and MAX are the first and last in sort order (RFC 5267 §3.1)."""
    out = [b'* ESEARCH (TAG "' + tag.replace(b'"', b"") + b'")']
    if by_uid:
        out.append(b"UID")
    for option in options.results:
        if option == "COUNT":
            out.append(b"COUNT %d" % len(numbers))
        elif numbers and option == "MIN":
            out.append(b"MIN %d" % numbers[0])
        elif numbers and option == "MAX":
            out.append(b"MAX %d" % numbers[-1])
        elif numbers and option == "ALL":
            out.append(b"ALL " + compress_ordered(numbers).encode())
    if options.partial is not None:
        low, high = options.partial
        window = numbers[low - 1 : high]
        found = compress_ordered(window).encode() if window else b"NIL"
        out.append(b"PARTIAL (%d:%d " % (low, high) + found + b")")
    if modseq and numbers:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"


@dataclass
class SearchContext:
    """One UPDATE result being kept current."""

    tag: bytes
    by_uid: bool
    program: SearchProgram
    view: SelectedMailbox
    members: dict[int, StoredMessage]  # UID -> index values, of the messages in the result
    order: list[int]  # the result's UIDs in result order (sequence order, or sort order)
    modseq: int  # changes up to here are reflected
    last_uid: int  # messages above this UID arrived since
    snapshot: array  # the session's UIDs when last brought up to date (for expunged numbers)
    reorder: Reorder | None = None  # SORT contexts: sorts a result


class ContextCommands:
    """Part of ``IMAPServer``: SEARCH with RFC 5267 RETURN options, CANCELUPDATE and the
    update notifications."""

    account: Any
    view: SelectedMailbox | None
    condstore: bool
    write: Callable[[bytes], None]
    _contexts: dict[bytes, SearchContext] | None = None
    _resolved_sequence_numbers: bool = False

    # provided by SortCommands / MessageCommands (annotations only)
    _search_program: Callable[[Reader], SearchProgram]
    _search: Callable[[Reader, bool], Awaitable[Done]]

    async def _search_with_context(self, reader: Reader, by_uid: bool) -> Done:
        """SEARCH: RFC 5267 options here, everything else to the plain SEARCH."""
        start = reader.pos
        reader.sp()
        options = parse_return(reader)
        if options is None or options.rfc4731_only:
            reader.pos = start
            return await self._search(reader, by_uid)
        if options.save:
            raise replies.BadCommand("SAVE can't be combined with PARTIAL, UPDATE or CONTEXT")
        view = self.view
        assert view is not None
        program = self._search_program(reader)
        matches = await matching(view, program)
        modseq = max((m.modseq for _s, m in matches), default=0) if program.uses_modseq else 0
        self.answer_context(reader, options, program, by_uid, matches, modseq, None)
        return Done("SEARCH completed")

    def answer_context(
        self,
        reader: Reader,
        options: ReturnOptions,
        program: SearchProgram,
        by_uid: bool,
        items: list[tuple[int, StoredMessage]],
        modseq: int,
        reorder: Reorder | None,
    ) -> None:
        """Write the ESEARCH answer; with UPDATE, keep the result as a context."""
        view = self.view
        assert view is not None
        tag = reader.text.split(b" ", 1)[0]
        if options.update:
            if self._resolved_sequence_numbers:
                # RFC 5267 §4.2: sequence numbers change meaning as messages come and go
                raise replies.BadCommand("UPDATE can't be used with message sequence numbers")
            contexts = self._contexts if self._contexts is not None else {}
            self._contexts = contexts
            if tag not in contexts and len(contexts) >= MAX_CONTEXTS:
                raise replies.IMAPError(
                    "too many search contexts", code=f'NOUPDATE "{tag.decode("ascii")}"'
                )
        numbers = [m.uid if by_uid else seq for seq, m in items]
        self.write(esearch_line(tag, by_uid, numbers, options, modseq))
        if options.update:
            assert self._contexts is not None
            self._contexts[tag] = SearchContext(
                tag=tag,
                by_uid=by_uid,
                program=program,
                view=view,
                members={m.uid: m for _s, m in items},
                order=[m.uid for _s, m in items],
                modseq=view.modseq,
                last_uid=view.uids[-1] if view.uids else 0,
                snapshot=array("I", view.uids),
                reorder=reorder,
            )

    async def _cancelupdate(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 5267 §4.3: ``CANCELUPDATE "tag" ...`` ends those contexts."""
        tags = []
        while reader.skip_sp():
            tags.append(reader.string())
        reader.end()
        if not tags:
            raise ParseError("CANCELUPDATE needs the tag of a search")
        contexts = self._contexts or {}
        unknown = [tag for tag in tags if tag not in contexts]
        if unknown:
            raise replies.BadCommand("no search context with that tag")
        for tag in tags:
            contexts.pop(tag, None)
        return Done("CANCELUPDATE completed")

    async def update_contexts(self) -> None:
        """Bring every context up to date and tell the client what entered or left it."""
        contexts = self._contexts
        if not contexts:
            return
        view = self.view
        for tag, context in list(contexts.items()):
            if context.view is not view or view is None:
                del contexts[tag]  # the session left the mailbox: the context is gone
                continue
            if context.modseq == view.modseq and context.snapshot == view.uids:
                continue
            await self._update_context(context, view)

    def contexts_expunging(self, view: SelectedMailbox, gone: set[int]) -> None:
        """Called just before EXPUNGE (or VANISHED) responses for ``gone`` are written: the
        contexts that hold them say REMOVEFROM first, while the numbers still mean them."""
        for context in (self._contexts or {}).values():
            if context.view is not view:
                continue
            leaving = [uid for uid in context.order if uid in gone]
            if not leaving:
                continue
            prefix = _prefix(context)
            if context.reorder is None:
                numbers = [uid if context.by_uid else view.seq_of(uid) for uid in leaving]
                line = prefix + b" REMOVEFROM (0 " + compress_ordered(numbers).encode() + b")"
                self.write(line + b"\r\n")
            else:
                positions = {uid: i for i, uid in enumerate(context.order, 1)}
                for uid in reversed(leaving):
                    number = uid if context.by_uid else view.seq_of(uid)
                    line = prefix + b" REMOVEFROM (%d %d)" % (positions[uid], number)
                    self.write(line + b"\r\n")
            for uid in leaving:
                context.members.pop(uid, None)
            context.order = [uid for uid in context.order if uid not in gone]

    async def _update_context(self, context: SearchContext, view: SelectedMailbox) -> None:
        expunged = [uid for uid in context.order if not view.seq_of(uid)]
        changes = await view.mailbox.changes_since(context.modseq)
        candidates = {m.uid for m in changes.changed if view.seq_of(m.uid)}
        first_new = bisect_left(view.uids, context.last_uid + 1)
        candidates.update(view.uids[first_new:])
        found = await matching(view, context.program, sorted(candidates))
        matched = {m.uid: m for _seq, m in found}
        left = set(expunged) | (
            {uid for uid in candidates if uid in context.members} - set(matched)
        )
        entered = {uid: m for uid, m in matched.items() if uid not in context.members}
        old_order = context.order
        old_snapshot = context.snapshot
        for uid in left:
            context.members.pop(uid, None)
        context.members.update(entered)
        context.modseq = max(view.modseq, changes.highestmodseq)
        context.last_uid = view.uids[-1] if view.uids else 0
        context.snapshot = array("I", view.uids)
        if not left and not entered:
            return
        if context.reorder is None:
            context.order = sorted(context.members)
        else:
            items = sorted(
                ((view.seq_of(uid), m) for uid, m in context.members.items()),
                key=lambda item: item[0],
            )
            context.order = [m.uid for _seq, m in await context.reorder(items)]

        def number(uid: int) -> int:
            if context.by_uid:
                return uid
            seq = view.seq_of(uid)
            return seq or bisect_left(old_snapshot, uid) + 1

        prefix = _prefix(context)
        lines = []
        if context.reorder is None:
            # A SEARCH result is in message order: position 0, the numbers say where.
            if left:
                gone = sorted(number(uid) for uid in left)
                lines.append(prefix + b" REMOVEFROM (0 " + compress_ordered(gone).encode() + b")")
            if entered:
                new = sorted(number(uid) for uid in entered)
                lines.append(prefix + b" ADDTO (0 " + compress_ordered(new).encode() + b")")
        else:
            # A SORT result: positions, removals from the end so each position still holds,
            # then additions in ascending final position.
            positions = {uid: i for i, uid in enumerate(old_order, 1)}
            for uid in sorted(left, key=lambda u: positions[u], reverse=True):
                lines.append(prefix + b" REMOVEFROM (%d %d)" % (positions[uid], number(uid)))
            for i, uid in enumerate(context.order, 1):
                if uid in entered:
                    lines.append(prefix + b" ADDTO (%d %d)" % (i, number(uid)))
        self.write(b"".join(line + b"\r\n" for line in lines))


def _prefix(context: SearchContext) -> bytes:
    return b'* ESEARCH (TAG "' + context.tag + b'")' + (b" UID" if context.by_uid else b"")
