"""Sort keys loaded for SORT and THREAD, kept for the next session of the same mailbox.

Why: webmails (Roundcube, and any client that logs in for each page) open a new session and
ask for ``UID SORT`` or ``UID THREAD`` of the whole mailbox every time. Each new session read
and decoded the kept keys (``headerkeys``) of every message again: for 10,000 messages,
about 40% of a THREAD's time and most of a SORT (DATE)'s. The keys loaded by one session are
now the next one's, so only the first session after a start pays for them.

Why they can't go stale: a message's header never changes under its UID, and a UID names the
same message for as long as the mailbox's UIDVALIDITY stays (RFC 9051 §2.3.1.1). The kept
keys are found by (MAILBOXID, UIDVALIDITY): MAILBOXID (RFC 8474, random, never reused) tells
a mailbox apart from one deleted and created again under the same name, which UIDVALIDITY
alone does not (the index takes it from the clock, in seconds), and keeps a mailbox's keys
through RENAME. A store that gives no MAILBOXID gets what it had before: keys kept by the
session for its selection only. Keys of expunged messages stay until a mailbox's kept keys
outnumber twice its messages, and are then dropped.

Memory is bounded by ``limit``, a number of messages (``[imap] sort_cache_messages``; a
message's whole keys are some 300-600 bytes, its sent date alone some 50); the least recently
sorted mailbox's keys go first. A session that is using keys no longer kept holds them until
it selects another mailbox, as it did before. Per process: each ``[server] workers`` process
keeps its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

from txmailhost.imap.headerkeys import HeaderKeys

DEFAULT_LIMIT = 50_000
PRUNE_SLACK = 1000  # expunged messages' keys tolerated beyond twice the mailbox's messages


class SortCaches:
    """What has been loaded for sorting one mailbox: messages' whole keys, and the sent dates
    read alone (SORT (DATE) needs nothing else)."""

    __slots__ = ("counted", "keys", "owner", "sent")

    def __init__(self, owner: SortKeyCache | None = None) -> None:
        self.keys: dict[int, HeaderKeys] = {}
        self.sent: dict[int, float | None] = {}
        self.counted = 0  # the size ``SortKeyCache`` has accounted for
        self.owner = owner  # the cache keeping these between sessions, if one does

    def loaded(self) -> None:
        """Let the cache keeping these count what a load added (a session's own: nothing)."""
        if self.owner is not None:
            self.owner.settle(self)

    @property
    def size(self) -> int:
        """Entries held (a message whose date and whole keys were both read counts twice)."""
        return len(self.keys) + len(self.sent)

    def keep_only(self, uids: Iterable[int]) -> None:
        """Drop the entries of messages not among ``uids`` (expunged ones)."""
        present = set(uids)
        self.keys = {uid: k for uid, k in self.keys.items() if uid in present}
        self.sent = {uid: s for uid, s in self.sent.items() if uid in present}


class SortKeyCache:
    """Each mailbox's ``SortCaches`` by (MAILBOXID, UIDVALIDITY), at most ``limit`` entries
    in all, least recently used first out."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._kept: OrderedDict[Hashable, SortCaches] = OrderedDict()
        self._used = 0

    @staticmethod
    def _key(view: Any) -> Hashable | None:
        mailboxid = getattr(view, "mailboxid", None)
        return (mailboxid, view.uidvalidity) if mailboxid else None

    def of(self, view: Any) -> SortCaches:
        """The caches of the selected mailbox ``view``: kept ones, or new ones kept from now
        (when it has a MAILBOXID and keeping is on)."""
        key = self._key(view)
        if key is None or self.limit <= 0:
            return SortCaches()
        caches = self._kept.get(key)
        if caches is None:
            caches = self._kept[key] = SortCaches(self)
        else:
            self._kept.move_to_end(key)
            if caches.size > 2 * view.exists + PRUNE_SLACK:
                caches.keep_only(view.uids)
                self.settle(caches)
        return caches

    def settle(self, caches: SortCaches) -> None:
        """Account for what a load added to ``caches``, then drop the least recently used
        mailboxes' keys until at most ``limit`` are kept."""
        if caches.owner is not self:
            return  # evicted since: the sessions using them hold them alone
        size = caches.size
        self._used += size - caches.counted
        caches.counted = size
        while self._used > self.limit and self._kept:
            _key, old = self._kept.popitem(last=False)
            self._used -= old.counted
            old.counted = 0
            old.owner = None

    @property
    def used(self) -> int:
        """Entries accounted for now (at most ``limit`` once settled)."""
        return self._used
