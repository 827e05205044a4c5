"""Keeping a session's view of its selected mailbox current: the change watcher, the poll of the
index that turns changes into untagged responses, and IDLE (RFC 2177).

Rules kept here (RFC 3501 §7.4.1, §5.2; RFC 7162 §3.2.10):
- a change by anyone (SMTP delivery, another session, another process) reaches the client as
  ``* n EXISTS`` / ``* n RECENT``, ``* n EXPUNGE`` (``* VANISHED`` once QRESYNC is enabled) or
  ``* n FETCH (FLAGS ...)``, computed from ``IMailbox.changes_since(modseq)``;
- no EXPUNGE while FETCH, STORE or SEARCH is in progress, or when no command is: such changes
  wait (the whole batch, so the order of events is kept) for the next command that allows them;
- only this module changes the sequence-number map, as the responses go out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from txmailhost.imap import replies
from txmailhost.imap.fetch import flag_list
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import Done
from txmailhost.imap.search import compress
from txmailhost.imap.session import SelectedMailbox
from txmailhost.imap.state import State
from txmailhost.store.interfaces import NoSuchMailbox

log = Logger(namespace="txmailhost.imap")


class UpdateMixin:
    """Part of ``IMAPServer``: the selected mailbox and its untagged updates."""

    view: SelectedMailbox | None
    state: Any
    qresync: bool
    rev2: bool
    condstore: bool
    lost: bool

    def __init__(self) -> None:
        self.dirty = False
        self._idling = False
        self._sync_lock = DeferredLock()

    # provided by IMAPServer (annotations only: nothing here may shadow it in the MRO)
    write: Callable[[bytes], None]
    flush: Callable[[], None]
    close: Callable[[], None]
    read_line: Callable[[], Any]
    _running: bool
    # notify.NotifyCommands (RFC 5465)
    notify_pushes_selected: Callable[[], bool]
    notify_push_selected: Callable[[], Any]
    # context.ContextCommands (RFC 5267 UPDATE)
    update_contexts: Callable[[], Any]
    contexts_expunging: Callable[[SelectedMailbox, set[int]], None]

    def select_view(self, view: SelectedMailbox) -> None:
        self.unselect()
        self.view = view
        self.dirty = False
        view.stop_watching = view.mailbox.watch(self._mailbox_changed)
        self.state = State.SELECTED

    def unselect(self) -> None:
        view, self.view = self.view, None
        if view is not None and view.stop_watching is not None:
            view.stop_watching()
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def _mailbox_changed(self) -> None:
        self.dirty = True
        if self.lost:
            return
        if self._idling and not self.notify_pushes_selected():
            d = Deferred.fromCoroutine(self.sync(expunges=True))
            d.addCallback(lambda _: self.flush())
            d.addErrback(lambda f: log.failure("imap IDLE update failed", f))
        elif self.notify_pushes_selected() and (self._idling or not self._running):
            # NOTIFY (RFC 5465) asked for the selected mailbox's events as they happen
            d = Deferred.fromCoroutine(self.notify_push_selected())
            d.addErrback(lambda f: log.failure("imap NOTIFY update failed", f))

    async def sync(self, expunges: bool) -> None:
        """Send what changed since the client was last told (one poll at a time)."""
        await self._sync_lock.acquire()
        try:
            while self.dirty and self.view is not None and not self.lost:
                self.dirty = False
                if not await self._apply_changes(self.view, expunges):
                    self.dirty = True
                    break
            await self.update_contexts()
        except NoSuchMailbox:
            # Deleted or renamed by another session: its sequence numbers mean nothing now.
            log.info("imap selected mailbox vanished for {user}", user=getattr(self, "user", None))
            self.unselect()
            self.write(b"* BYE selected mailbox was deleted or renamed\r\n")
            self.close()
        finally:
            self._sync_lock.release()

    async def _apply_changes(self, view: SelectedMailbox, expunges: bool) -> bool:
        changes = await view.mailbox.changes_since(view.modseq)
        if self.view is not view:
            return True
        gone = {uid for uid in changes.expunged if view.seq_of(uid)}
        if gone and not expunges:
            return False
        if gone:
            self.contexts_expunging(view, gone)  # RFC 5267 REMOVEFROM before the numbers shift
            seqs = view.remove(gone)
            if self.qresync:
                self.write(b"* VANISHED " + compress(sorted(gone)).encode() + b"\r\n")
            else:
                self.write(b"".join(b"* %d EXPUNGE\r\n" % seq for seq in seqs))
        last = view.uids[-1] if view.uids else 0
        fresh = [m.uid for m in changes.changed if m.uid > last]
        new_keywords = set()
        lines = []
        for message in changes.changed:
            new_keywords.update(f for f in message.flags if not f.startswith("\\"))
            if message.uid > last:
                continue
            seq = view.seq_of(message.uid)
            if seq:
                lines.append(self.flags_response(seq, message, view))
        if new_keywords - view.keywords:
            view.keywords |= new_keywords
            self.write(self.flags_line(view))
        self.write(b"".join(lines))
        if fresh and not view.readonly and not self.rev2:
            # RFC 3501 §2.3.2: recent here only if no other session was told of them first.
            # (IMAP4rev2 has no \\Recent: such a session leaves the claim to others.)
            first = await view.mailbox.claim_recent(fresh[-1] + 1)
            if self.view is not view:
                return True
            view.add_recent(first, fresh[-1] + 1)
        if fresh:
            view.uids.extend(fresh)
            view.uidnext = max(view.uidnext, fresh[-1] + 1)
            if self.rev2:
                self.write(b"* %d EXISTS\r\n" % view.exists)
            else:
                self.write(b"* %d EXISTS\r\n* %d RECENT\r\n" % (view.exists, view.recent))
        view.modseq = max(view.modseq, changes.highestmodseq)
        return True

    def flags_response(self, seq: int, message: Any, view: SelectedMailbox) -> bytes:
        parts = [b"FLAGS " + flag_list(message.flags, view.is_recent(message.uid))]
        if self.condstore or self.qresync:
            parts.insert(0, b"UID %d" % message.uid)
            parts.append(b"MODSEQ (%d)" % message.modseq)
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    def enable_condstore(self) -> None:
        """RFC 7162 §3.1: after a CONDSTORE-enabling command (FETCH MODSEQ or CHANGEDSINCE,
        SEARCH MODSEQ, STORE UNCHANGEDSINCE, STATUS HIGHESTMODSEQ, ENABLE) FETCH responses
        carry MODSEQ; the first one issued while a mailbox is selected also reports its
        ``[HIGHESTMODSEQ]``, which SELECT could not have sent yet."""
        if self.condstore:
            return
        self.condstore = True
        if self.view is not None:
            self.write(b"* OK [HIGHESTMODSEQ %d] highest modseq\r\n" % self.view.modseq)

    def announce_keywords(self, view: SelectedMailbox, flagsets: Any) -> None:
        """Send ``* FLAGS`` first when messages about to be shown carry keywords the client
        hasn't been told of (another session set them): RFC 3501 §7.2.6, a flag in a FETCH
        response is one the FLAGS response named."""
        new = {
            flag
            for flags in set(flagsets)
            for flag in flags
            if not flag.startswith("\\") and flag not in view.keywords
        }
        if new:
            view.keywords |= new
            self.write(self.flags_line(view))

    @staticmethod
    def flags_line(view: SelectedMailbox) -> bytes:
        system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded"
        keywords = " ".join(sorted(k for k in view.keywords if k != "$Forwarded"))
        return f"* FLAGS ({system}{' ' + keywords if keywords else ''})\r\n".encode()

    async def _idle(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 2177: updates are pushed as they happen until the client sends DONE."""
        reader.end()
        self.write(b"+ idling\r\n")
        self.flush()
        self._idling = True
        try:
            if self.view is not None:
                self.dirty = True
                await self.sync(expunges=True)
                self.flush()
            line = await self.read_line()
        finally:
            self._idling = False
        if line.strip().upper() != b"DONE":
            raise replies.BadCommand("expected DONE")
        return Done("IDLE terminated")
