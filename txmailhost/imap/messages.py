"""Commands of the selected state (RFC 3501 §6.4) and their extensions: FETCH and STORE with
CONDSTORE (RFC 7162), SEARCH with ESEARCH (RFC 4731), COPY and UID EXPUNGE with UIDPLUS
(RFC 4315), MOVE (RFC 6851), CLOSE, UNSELECT (RFC 3691), CHECK.

FETCH works in batches: each batch is one store call (index values only, or with the cached
headers, or with the message files) and one write, so ``UID FETCH 1:* (UID FLAGS)`` on 100,000
messages is a handful of index reads and large writes, and a FETCH of bodies never holds more
than one batch of messages in memory.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

from twisted.logger import Logger

from txmailhost.imap import fetch, mime, names, observers, replies
from txmailhost.imap.acl import NoPermission, permitted_flags
from txmailhost.imap.keywords import check_keywords
from txmailhost.imap.matching import matching
from txmailhost.imap.parser import ParseError, Reader
from txmailhost.imap.replies import Done
from txmailhost.imap.search import BadCharset, compress, parse_search
from txmailhost.imap.session import SelectedMailbox
from txmailhost.store.interfaces import (
    DELETED,
    SEEN,
    IMailboxMove,
    IMessageRanges,
    IndexColumns,
    MessageInfo,
    NoSuchMailbox,
    NoSuchMessage,
    StoredMessage,
)

log = Logger(namespace="txmailhost.imap")

INDEX_BATCH = 20000
HEADER_BATCH = 1000
CONTENT_BATCH = 50
STREAM_THRESHOLD = 256 * 1024  # larger messages are sent from the file in chunks
STREAM_CHUNK = 64 * 1024
STRUCTURE_KEY = "imap.bodystructure"  # IMailbox.remember names
BODY_KEY = "imap.body"  # messages read per store call while searching bodies
# The reading of MIME the kept BODYSTRUCTUREs were made with, the first octet of each value.
# A value kept before there was one starts with the structure's "(" and is made again (and
# replaced). 2: a multipart inside one with the same boundary takes its delimiters
# (``mime._split_multipart``), so BODY[n] of such a message is read as its structure says.
STRUCTURE_VERSION = b"2"


def _batch_size(header: bool, content: bool) -> int:
    return CONTENT_BATCH if content else HEADER_BATCH if header else INDEX_BATCH


class MessageCommands:
    """Part of ``IMAPServer``: the selected-state handlers."""

    account: Any
    rev2: bool
    utf8: bool
    view: SelectedMailbox | None
    condstore: bool
    qresync: bool
    user: str | None

    # provided by IMAPServer / UpdateMixin (annotations only: nothing may shadow them)
    write: Callable[[bytes], None]
    flush: Callable[[], None]
    drained: Callable[[], Any]
    unselect: Callable[[], None]
    flags_line: Callable[[SelectedMailbox], bytes]
    announce_keywords: Callable[[SelectedMailbox, Any], None]
    enable_condstore: Callable[[], None]
    contexts_expunging: Callable[[SelectedMailbox, set[int]], None]
    dirty: bool
    access: Callable[..., Any]  # acl.AclCommands (RFC 4314)

    @property
    def selected(self) -> SelectedMailbox:
        assert self.view is not None
        return self.view

    async def _check(self, reader: Reader, by_uid: bool) -> Done:
        reader.end()
        self.dirty = True
        return Done("CHECK completed")

    async def _close(self, reader: Reader, by_uid: bool) -> Done:
        """§6.4.2: expunge \\Deleted messages silently (unless read-only), then unselect."""
        reader.end()
        view = self.selected
        if not view.readonly and "e" in view.rights:  # RFC 4314 §4: else no expunge, still OK
            deleted = await self._deleted_uids(view, None)
            if deleted:
                await view.mailbox.expunge(deleted)
        self.unselect()
        return Done("CLOSE completed")

    async def _unselect(self, reader: Reader, by_uid: bool) -> Done:
        reader.end()
        self.unselect()
        return Done("UNSELECT completed")

    # -- EXPUNGE ---------------------------------------------------------------------------------

    async def _deleted_uids(self, view: SelectedMailbox, within: set[int] | None) -> list[int]:
        uids = list(view.uids) if within is None else sorted(within)
        found = []
        for start in range(0, len(uids), INDEX_BATCH):
            batch = uids[start : start + INDEX_BATCH]
            for message in await view.mailbox.messages(batch):
                if DELETED in message.flags:
                    found.append(message.uid)
        return found

    async def _expunge(self, reader: Reader, by_uid: bool) -> Done:
        """§6.4.3; ``UID EXPUNGE set`` only touches those UIDs (RFC 4315 §2.1)."""
        view = self.selected
        within = None
        if by_uid:
            reader.sp()
            within = {uid for _seq, uid in view.resolve(reader.sequence_set(), True)}
        reader.end()
        if "e" not in view.rights:
            raise NoPermission("the 'e' right is needed to expunge")
        if view.readonly:
            raise replies.ReadOnly()
        deleted = await self._deleted_uids(view, within)
        if deleted:
            removed = await view.mailbox.expunge(deleted)
            self.report_expunged(view, removed)
        if self.condstore:
            # RFC 7162 §3.2.10: the modseq after the expunge, so the client can resync from it.
            status = await view.mailbox.status()
            return Done("EXPUNGE completed", code=f"HIGHESTMODSEQ {status.highestmodseq}")
        return Done("EXPUNGE completed")

    def report_expunged(self, view: SelectedMailbox, removed: list[int]) -> None:
        gone = {uid for uid in removed if view.seq_of(uid)}
        if not gone:
            return
        self.contexts_expunging(view, gone)  # RFC 5267 REMOVEFROM before the numbers shift
        seqs = view.remove(gone)
        if self.qresync:
            self.write(b"* VANISHED " + compress(sorted(gone)).encode() + b"\r\n")
        else:
            self.write(b"".join(b"* %d EXPUNGE\r\n" % seq for seq in seqs))

    # -- FETCH -----------------------------------------------------------------------------------

    async def _fetch(self, reader: Reader, by_uid: bool) -> Done:
        view = self.selected
        reader.sp()
        sequence_set = reader.sequence_set()
        reader.sp()
        request = fetch.parse_fetch(reader)
        if request.vanished and not (by_uid and self.qresync):
            raise replies.BadCommand("VANISHED needs UID FETCH and QRESYNC enabled")
        if request.changedsince is not None or b"MODSEQ" in request.items:
            self.enable_condstore()
        runs = view.runs(sequence_set, by_uid)
        fast = fetch.index_only(request)
        # The map as the command found it: an EXPUNGE replaces the array, new mail extends it.
        session_uids = view.uids
        targets = [] if fast else view.pairs(runs)
        if request.vanished and request.changedsince is not None:
            gone = await view.mailbox.expunged_since(request.changedsince)
            ranges = _ranges(sequence_set, view)
            gone = [uid for uid in gone if any(lo <= uid <= hi for lo, hi in ranges)]
            if gone:
                self.write(b"* VANISHED (EARLIER) " + compress(gone).encode() + b"\r\n")
        header, content = request.needs_header, request.needs_content
        # RFC 4314 §4: without the "s" right, reading a body leaves \Seen alone
        sets_seen = request.sets_seen and not view.readonly and "s" in view.rights
        size = _batch_size(header, content)
        want_structure = fetch.wants_structure(request)
        rest_streamable = fetch.streamable(request, structure_known=True)
        needs_bytes = fetch.needs_bytes(request)
        if fast:
            for seqs, uids in _index_batches(session_uids, runs, size):
                columns = await view.mailbox.columns(uids)
                if b"FLAGS" in request.items:
                    self.announce_keywords(view, columns.flags)
                self.write(self._index_lines(view, seqs, uids, columns, request, by_uid))
                self.flush()
                await self.drained()
            return Done("FETCH completed")
        vanished = False
        for start in range(0, len(targets), size):
            batch = targets[start : start + size]
            uids = [uid for _s, uid in batch]
            known = await self._known_structures(view, uids) if want_structure else {}
            if content:
                # Index values and headers first; a message is loaded whole only when a
                # section needs parsing, its structure isn't cached yet, or it is small.
                messages = await view.mailbox.messages(uids, True, False)
                load = [
                    m.uid
                    for m in messages
                    if not rest_streamable
                    or (want_structure and m.uid not in known)
                    or (needs_bytes and m.size <= STREAM_THRESHOLD)
                ]
                loaded = {m.uid: m for m in await view.mailbox.messages(load, True, True)}
                # One expunged (by another session) between the two reads is gone: never
                # render a structure or body from its header alone.
                wanted = set(load)
                messages = [
                    loaded.get(m.uid, m) for m in messages if m.uid in loaded or m.uid not in wanted
                ]
            else:
                messages = await view.mailbox.messages(uids, header, False)
            by_uid_map = {m.uid: m for m in messages}
            origins = await view.mailbox.origins(uids) if request.needs_origins else {}
            fresh = {
                m.uid: fetch.structures(mime.parse(m.content))
                for m in messages
                if want_structure and m.uid not in known and m.content is not None
            }
            known.update(fresh)
            changed: set[int] = set()
            if sets_seen:
                unseen = [m.uid for m in messages if SEEN not in m.flags]
                if unseen:
                    for info in await view.mailbox.store_flags(unseen, [SEEN], "+"):
                        old = by_uid_map.get(info.uid)
                        if old is not None:
                            by_uid_map[info.uid] = old._replace(
                                flags=info.flags, modseq=info.modseq
                            )
                            changed.add(info.uid)
                    self._own_change(view, by_uid_map, changed)
            if b"FLAGS" in request.items or changed:
                self.announce_keywords(view, (m.flags for m in by_uid_map.values()))
            for seq, uid in batch:
                message = by_uid_map.get(uid)
                if message is None or (request.needs_origins and uid not in origins):
                    vanished = True
                    continue
                if request.changedsince is not None and message.modseq <= request.changedsince:
                    continue
                parts = fetch.render_parts(
                    seq,
                    message,
                    request,
                    uid=by_uid,
                    flags_changed=uid in changed,
                    recent=view.is_recent(uid),
                    modseq=self.condstore and uid in changed,
                    structure=known.get(uid),
                    origin=origins.get(uid),
                )
                try:
                    await self.write_parts(view, uid, parts)
                except NoSuchMessage:
                    vanished = True  # its file went before it was opened: nothing written
            self.flush()
            if fresh:
                await self._remember_structures(view, fresh)
            await self.drained()
        if vanished:
            # RFC 9051 §7.1: what could be sent was; the rest was expunged meanwhile.
            raise replies.ExpungeIssued()
        return Done("FETCH completed")

    def _index_lines(
        self,
        view: SelectedMailbox,
        seqs: Sequence[int],
        uids: array,
        columns: IndexColumns,
        request: fetch.FetchRequest,
        by_uid: bool,
    ) -> bytes:
        """A batch's lines, taken from the factory's ``RenderedBatches`` when a session of
        this listener rendered exactly this batch (same numbers, UIDs, flags, \\Recent, ...)
        last."""
        batch = fetch.column_batch(
            seqs, uids, columns, request, uid=by_uid, recent=view.recent_ranges
        )
        kept = self.factory.rendered
        key = (view.mailbox.user, view.mailbox.name, batch.items, batch.changedsince)
        lines = kept.get(key, batch)
        if lines is None:
            lines = fetch.render_batch(batch)
            kept.put(key, batch, lines)
        return lines

    async def _known_structures(
        self, view: SelectedMailbox, uids: list[int]
    ) -> dict[int, dict[bytes, bytes]]:
        """BODYSTRUCTURE and BODY computed by an earlier FETCH, kept in the store's index."""
        full = await view.mailbox.derived(uids, STRUCTURE_KEY)
        plain = await view.mailbox.derived(uids, BODY_KEY)
        version = STRUCTURE_VERSION
        return {
            uid: {b"BODYSTRUCTURE": full[uid][1:], b"BODY": plain[uid][1:]}
            for uid in full
            if uid in plain and full[uid][:1] == version == plain[uid][:1]
        }

    async def _remember_structures(
        self, view: SelectedMailbox, fresh: dict[int, dict[bytes, bytes]]
    ) -> None:
        try:
            version = STRUCTURE_VERSION
            await view.mailbox.remember(
                STRUCTURE_KEY, {uid: version + s[b"BODYSTRUCTURE"] for uid, s in fresh.items()}
            )
            await view.mailbox.remember(
                BODY_KEY, {uid: version + s[b"BODY"] for uid, s in fresh.items()}
            )
        except Exception:  # a cache: failing to fill it costs only a later re-parse
            log.failure("imap could not cache BODYSTRUCTURE")

    async def write_parts(
        self, view: SelectedMailbox, uid: int, parts: list[bytes | fetch.FileRange]
    ) -> None:
        """Write a response whose literals may be ``FileRange``s: those are read from the
        message file a chunk at a time, waiting while the client is slow to read, so a large
        message never sits whole in memory."""
        ranges = [p for p in parts if isinstance(p, fetch.FileRange)]
        if not ranges:
            self.write(b"".join(parts))  # type: ignore[arg-type]
            return
        if IMessageRanges.providedBy(view.mailbox):  # a body in an object store: what's asked
            low = min(p.offset for p in ranges)
            high = max(p.offset + p.length for p in ranges)
            file, base = await view.mailbox.open_range(uid, low, high - low)
        else:
            file, base = await view.mailbox.open_message(uid), 0
        try:
            for part in parts:
                if not isinstance(part, fetch.FileRange):
                    self.write(part)
                    continue
                # 64 KiB reads on the reactor thread, as POP3's RETR does: small, and usually
                # from the page cache; the file itself was opened in the store's pool.
                file.seek(part.offset - base)
                left = part.length
                while left > 0:
                    chunk = file.read(min(STREAM_CHUNK, left))
                    if not chunk:  # the file shrank under us: keep the literal's promise
                        chunk = b" " * min(STREAM_CHUNK, left)
                    left -= len(chunk)
                    self.write(replies.without_nul(chunk))
                    self.flush()
                    await self.drained()
        finally:
            file.close()

    def _own_change(
        self, view: SelectedMailbox, messages: dict[int, StoredMessage], changed: set[int]
    ) -> None:
        """Our own flag change needs no untagged echo: if it is the only change since what the
        client knows, move the known modseq forward."""
        if not changed:
            return
        modseq = max(messages[uid].modseq for uid in changed)
        if modseq == view.modseq + 1:
            view.modseq = modseq

    # -- STORE -----------------------------------------------------------------------------------

    async def _store(self, reader: Reader, by_uid: bool) -> Done:
        """§6.4.6, with UNCHANGEDSINCE (RFC 7162 §3.1.3): messages changed after it are left
        alone and reported in ``[MODIFIED set]``."""
        view = self.selected
        reader.sp()
        sequence_set = reader.sequence_set()
        reader.sp()
        unchangedsince = None
        if reader.peek() == b"(":
            reader.open_paren()
            reader.expect(b"UNCHANGEDSINCE")
            reader.sp()
            unchangedsince = reader.number()
            reader.close_paren()
            reader.sp()
            self.enable_condstore()
        item = reader.atom().upper()
        mode = {b"FLAGS": "=", b"+FLAGS": "+", b"-FLAGS": "-"}.get(item.removesuffix(b".SILENT"))
        if mode is None:
            raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
        silent = item.endswith(b".SILENT")
        reader.sp()
        if reader.peek() == b"(":
            flags = reader.flag_list()
        else:
            flags = [reader.flag()]
            while reader.skip_sp():
                flags.append(reader.flag())
        reader.end()
        if "\\*" in flags:
            raise ParseError("\\* is not a flag")
        flags = [f for f in flags if f != "\\Recent"]
        targets = view.resolve(sequence_set, by_uid)
        if mode != "-":
            check_keywords(flags, view.keywords)
        uids = [uid for _s, uid in targets]
        if not all(r in view.rights for r in "stw"):
            flags, mode = await self._flags_permitted(view, uids, flags, mode)
        if view.readonly:
            raise replies.ReadOnly()
        modified: list[int] = []
        changed: list[MessageInfo] = []
        if unchangedsince is not None and uids:
            # compared and changed in one step of the store: a session elsewhere (another
            # node of the database) can't slip a change in between (RFC 7162 3.1.3)
            changed, left = await view.mailbox.store_flags_if_unchanged(
                uids, flags, mode, unchangedsince
            )
            too_new = set(left)
            modified = [seq_uid[by_uid] for seq_uid in targets if seq_uid[1] in too_new]
            uids = [uid for uid in uids if uid not in too_new]
        elif uids:
            changed = await view.mailbox.store_flags(uids, flags, mode)
        # Keywords removed (-FLAGS) are not new ones: announcing them grew the session's list
        new_keywords = {f for f in flags if not f.startswith("\\")} - view.keywords
        if new_keywords and mode != "-":
            view.keywords |= new_keywords
            self.write(self.flags_line(view))
        changed_uids = {info.uid for info in changed}
        if changed:
            modseq = max(info.modseq for info in changed)
            if modseq == view.modseq + 1:
                view.modseq = modseq
        if not silent or (self.condstore and changed_uids):
            report = [uid for uid in uids if not silent or uid in changed_uids]
            lines = []
            for start in range(0, len(report), INDEX_BATCH):
                found = await view.mailbox.messages(report[start : start + INDEX_BATCH])
                self.announce_keywords(view, (m.flags for m in found))
                for message in found:
                    seq = view.seq_of(message.uid)
                    if seq:
                        lines.append(self._store_response(seq, message, view, by_uid))
                self.write(b"".join(lines))
                lines.clear()
        if modified:
            return Done("conditional STORE failed", code=f"MODIFIED {compress(modified)}")
        return Done("STORE completed")

    async def _flags_permitted(
        self, view: SelectedMailbox, uids: list[int], flags: list[str], mode: str
    ) -> tuple[list[str], str]:
        """RFC 4314 §4: STORE changes only the flags the user holds the right for (\\Seen
        ``s``, \\Deleted ``t``, others ``w``); NOPERM when that leaves none. A replacing
        STORE becomes an add of the permitted flags and a removal of the permitted ones left
        out, so flags the user may not touch keep their values."""
        held = view.rights
        if not any(r in held for r in "stw"):
            raise NoPermission("no right to change flags here")
        if mode != "=":
            allowed = permitted_flags(flags, held)
            if flags and not allowed:
                raise NoPermission("no right to change these flags")
            return allowed, mode
        current: set[str] = set()
        if "w" in held and uids:
            for message in await view.mailbox.messages(uids):
                current |= message.flags
        candidates = {SEEN, DELETED, "\\Answered", "\\Flagged", "\\Draft"} | current
        removed = [f for f in permitted_flags(sorted(candidates), held) if f not in flags]
        if removed and uids:
            await view.mailbox.store_flags(uids, removed, "-")
        return permitted_flags(flags, held), "+"

    def _store_response(
        self, seq: int, message: StoredMessage, view: SelectedMailbox, by_uid: bool
    ) -> bytes:
        parts = []
        if by_uid or self.condstore:
            parts.append(b"UID %d" % message.uid)
        parts.append(b"FLAGS " + fetch.flag_list(message.flags, view.is_recent(message.uid)))
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % message.modseq)
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    # -- SEARCH ----------------------------------------------------------------------------------

    async def _search(self, reader: Reader, by_uid: bool) -> Done:
        view = self.selected
        try:
            return await self._run_search(view, reader, by_uid)
        except Exception:
            if asks_to_save(reader.text):
                # RFC 5182: a SEARCH ... SAVE that fails (NO or BAD) empties $, so a
                # command pipelined after it that uses $ acts on nothing, never on the result
                # of an older search.
                view.saved_uids = []
            raise

    async def _run_search(self, view: SelectedMailbox, reader: Reader, by_uid: bool) -> Done:
        reader.sp()

        def resolve(text: bytes, uid_set: bool) -> set[int]:
            # A number past the last message matches nothing (as in Dovecot): a client's
            # search may race an expunge it hasn't been told of, and FETCH stays strict.
            return {seq for seq, _uid in view.resolve(text, uid_set, clamp=True)}

        try:
            program = parse_search(reader, resolve)
        except BadCharset:
            raise replies.IMAPError(
                "unsupported charset", code="BADCHARSET (UTF-8 US-ASCII)"
            ) from None
        if program.uses_modseq:
            self.enable_condstore()
        # The one search loop SORT, THREAD and contexts share: index keys answered from the
        # store's columns, string keys narrowed by its full-text index where it has one.
        matches = await matching(view, program)
        numbers = [m.uid if by_uid else seq for seq, m in matches]
        highest = max((m.modseq for _s, m in matches), default=0)
        options = program.return_options
        if options is None and self.rev2:
            options = ["ALL"]  # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH
        if options is not None and "SAVE" in options:
            options = [o for o in options if o != "SAVE"]
            view.saved_uids = saved_result([m.uid for _s, m in matches], options)
            if not options:
                return Done("SEARCH completed, result saved")  # RFC 5182 §2.4: no ESEARCH
        if options is not None:
            modseq = 0
            if program.uses_modseq and matches:
                modseq = _esearch_modseq(options, [m.modseq for _s, m in matches])
            self.write(self._esearch(reader, numbers, options, by_uid, modseq))
        else:
            line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
            if program.uses_modseq and numbers:
                line += b" (MODSEQ %d)" % highest
            self.write(line + b"\r\n")
        return Done("SEARCH completed")

    def _esearch(
        self, reader: Reader, numbers: list[int], options: list[str], by_uid: bool, modseq: int
    ) -> bytes:
        """RFC 4731 §3.1: ``* ESEARCH (TAG "a1") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9``."""
        tag = reader.text.split(b" ", 1)[0]
        out = [b'* ESEARCH (TAG "' + tag.replace(b'"', b"") + b'")']
        if by_uid:
            out.append(b"UID")
        if numbers:
            if "MIN" in options:
                out.append(b"MIN %d" % numbers[0])
            if "MAX" in options:
                out.append(b"MAX %d" % numbers[-1])
            if "ALL" in options:
                out.append(b"ALL " + compress(numbers).encode())
        if "COUNT" in options:
            out.append(b"COUNT %d" % len(numbers))
        if modseq and numbers:
            out.append(b"MODSEQ %d" % modseq)
        return b" ".join(out) + b"\r\n"

    # -- COPY / MOVE -----------------------------------------------------------------------------

    async def _copy_to(
        self, reader: Reader, by_uid: bool, move: bool = False
    ) -> tuple[list[tuple[int, int]], str, bool]:
        """COPY, or with ``move`` MOVE where the store does it in one step (``IMailboxMove``):
        (source UID, new UID) pairs, the COPYUID code, and whether the sources are gone."""
        view = self.selected
        reader.sp()
        sequence_set = reader.sequence_set()
        reader.sp()
        name = names.decode(reader.astring(), self.utf8)
        reader.end()
        targets = view.resolve(sequence_set, by_uid)
        found = await self.access(name, "i", replies.TryCreate)  # RFC 4314 §4
        try:
            target = await self.account.store.open(found.owner, found.mailbox)
        except NoSuchMailbox:
            raise (replies.TryCreate() if found.own else replies.Nonexistent()) from None
        uids = [uid for _s, uid in targets]
        if not (move and found.owner == view.mailbox.user):
            # RFC 9208 4.3: a COPY (or a MOVE into another user's mailbox) that would take
            # the target's owner past their quota fails with OVERQUOTA, as an APPEND does. A
            # MOVE among one owner's mailboxes adds nothing to their usage.
            await self._check_copy_quota(view, uids, found.owner)
        # Not when flags are to be dropped (RFC 4314 §4): that reads them from the sources.
        moved = (
            move and IMailboxMove.providedBy(view.mailbox) and all(r in found.rights for r in "stw")
        )
        if moved:
            pairs = await view.mailbox.move(uids, target)
        else:
            pairs = await view.mailbox.copy(uids, target)
        if not pairs:
            if uids:  # all of them expunged by another session since this one was told
                raise replies.ExpungeIssued()  # RFC 2180 §4.4.1; nothing was copied
            return pairs, "", moved
        if not all(r in found.rights for r in "stw"):
            await _drop_unpermitted(view, target, pairs, found.rights)
        if found.own and view.mailbox.user == self.account.address:
            observers.tell(
                self.factory.observers,
                self.account.address,
                view.mailbox.name,
                name,
                target,
                [d for _s, d in pairs],
            )
        status = await target.status()
        source = compress([s for s, _d in pairs])
        dest = compress([d for _s, d in pairs])
        return pairs, f"COPYUID {status.uidvalidity} {source} {dest}", moved

    async def _check_copy_quota(self, view: SelectedMailbox, uids: list[int], owner: str) -> None:
        """``_check_quota`` for copies of ``uids``: their sizes read only when ``owner`` has a
        limit (the index's RFC822.SIZE, no message read)."""
        if not uids or await self._quota_limit(owner) is None:
            return
        size = sum(m.size for m in await view.mailbox.messages(uids, False, False))
        await self._check_quota(size, owner, "copy")

    async def _copy(self, reader: Reader, by_uid: bool) -> Done:
        """§6.4.7 with COPYUID (RFC 4315 §3)."""
        _pairs, code, _moved = await self._copy_to(reader, by_uid)
        return Done("COPY completed", code=code or None)

    async def _move(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 6851 §3.3: untagged OK [COPYUID], then the expunges, then the tagged OK. A
        store that moves in one step (Maildir: a rename per message) never has a message in
        both mailboxes; otherwise it is copied, then expunged here."""
        view = self.selected
        if not all(r in view.rights for r in "te"):  # RFC 6851 §3.3 with RFC 4314
            raise NoPermission("the 't' and 'e' rights are needed to move out of here")
        if view.readonly:
            raise replies.ReadOnly()
        pairs, code, moved = await self._copy_to(reader, by_uid, move=True)
        if pairs:
            self.write(f"* OK [{code}] moved\r\n".encode())
            if moved:
                removed = [s for s, _d in pairs]
            else:
                removed = await view.mailbox.expunge([s for s, _d in pairs])
            self.report_expunged(view, removed)
        return Done("MOVE completed")


def _index_batches(
    uids: array, runs: list[tuple[int, int]], size: int
) -> Iterator[tuple[Sequence[int], array]]:
    """(sequence numbers, UIDs) of at most ``size`` messages per store call, cut from the
    session's runs (``SelectedMailbox.runs``): a ``range`` and an array slice for a run, so a
    resync of the whole mailbox makes no object per message. ``uids`` is the session's map as
    the command found it."""
    seqs: list[range] = []
    picked = array("I")
    for start, stop in runs:
        while start < stop:
            take = min(stop - start, size - len(picked))
            seqs.append(range(start + 1, start + take + 1))
            picked += uids[start : start + take]
            start += take
            if len(picked) == size:
                yield (seqs[0] if len(seqs) == 1 else list(chain.from_iterable(seqs))), picked
                seqs, picked = [], array("I")
    if picked:
        yield (seqs[0] if len(seqs) == 1 else list(chain.from_iterable(seqs))), picked


async def _drop_unpermitted(
    view: SelectedMailbox, target: Any, pairs: list[tuple[int, int]], held: str
) -> None:
    """RFC 4314 §4: a copy keeps only the flags the user may set in the target mailbox."""
    found = await view.mailbox.messages([s for s, _d in pairs])
    flags = set().union(*(m.flags for m in found)) if found else set()
    dropped = [f for f in sorted(flags) if f not in permitted_flags([f], held)]
    if dropped:
        await target.store_flags([d for _s, d in pairs], dropped, "-")


def _esearch_modseq(options: list[str], modseqs: list[int]) -> int:
    """RFC 4731 §3.2 with CONDSTORE: the MODSEQ of what ESEARCH returns. Asked for MIN or
    MAX alone, that message's; for both, the higher of the two; for ALL or COUNT, the highest
    of all matches. ``modseqs`` is in sequence order."""
    wanted = set(options)
    if wanted and wanted <= {"MIN", "MAX"}:
        picked = []
        if "MIN" in wanted:
            picked.append(modseqs[0])
        if "MAX" in wanted:
            picked.append(modseqs[-1])
        return max(picked)
    return max(modseqs)


def _ranges(text: bytes, view: SelectedMailbox) -> list[tuple[int, int]]:
    last = view.uids[-1] if view.uids else 0
    ranges = []
    for piece in text.split(b","):
        low, _, high = piece.partition(b":")
        lo = last if low == b"*" else int(low)
        hi = lo if not high else (last if high == b"*" else int(high))
        ranges.append((min(lo, hi), max(lo, hi)))
    return ranges


_RETURN_LIST = re.compile(rb"\S+ +(?:UID +)?SEARCH +RETURN +\(([^()]*)\)", re.IGNORECASE)


def asks_to_save(command: bytes) -> bool:
    """Does the SEARCH command line ``command`` (tag first) name SAVE in its RETURN list?
    Read from the raw text, so it is known even when parsing the rest fails."""
    match = _RETURN_LIST.match(command)
    return match is not None and b"SAVE" in match[1].upper().split()


def saved_result(uids: list[int], options: list[str]) -> list[int]:
    """What ``RETURN (SAVE ...)`` keeps as ``$`` (RFC 5182 §2.4): all the matches, unless only
    MIN and/or MAX were asked beside SAVE, then just those."""
    if not uids or "ALL" in options or "COUNT" in options or not options:
        return uids
    kept = []
    if "MIN" in options:
        kept.append(uids[0])
    if "MAX" in options and uids[-1] not in kept:
        kept.append(uids[-1])
    return kept
