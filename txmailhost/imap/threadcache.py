"""The last THREAD answer made for each mailbox, kept for the next session asking the same.

Why: a webmail in its threads view logs in for every page and asks ``UID THREAD REFERENCES
UTF-8 ALL`` of the whole folder each time; building the threads of 10,000 messages is about
30 ms of Python even with every key in memory (``keycache``). Dovecot keeps its threads in an
index file (``dovecot.index.thread``) for the same reason.

Nothing is ever invalidated, because nothing can go stale: an answer is handed out only for
the same mailbox (MAILBOXID and UIDVALIDITY), algorithm and numbering (UIDs or sequence
numbers), and the very same matching messages under the very same numbers (both compared as
arrays, with ``memcmp``). The threads are a function of those alone: each message's keys and
dates never change under its UID. A delivery, an expunge, a changed flag that changes what
matches: each makes the arrays differ, and the answer is made afresh (and kept in place of
the old one).

Memory is bounded by ``budget`` (octets of kept answers plus 8 a message for the arrays); the
least recently used mailbox's answer goes first. Per process, as ``rendered.py``'s batches.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable

from txmailhost.imap.budgeted import BudgetedLRU

# Smaller folders are threaded as fast as their answer is compared: not worth the memory.
MIN_MESSAGES = 500
DEFAULT_BUDGET = 4 * 1024 * 1024


class KeptThreads:
    """THREAD answers by key (mailbox, algorithm, numbering), one per key."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._kept: BudgetedLRU[tuple[array, array, bytes]] = BudgetedLRU(budget)

    def get(self, key: Hashable, seqs: array, uids: array) -> bytes | None:
        """The answer kept under ``key`` if it was made for these messages and numbers."""
        kept = self._kept.get(key)
        if kept is None or kept[1] != uids or kept[0] != seqs:
            return None
        return kept[2]

    def put(self, key: Hashable, seqs: array, uids: array, answer: bytes) -> None:
        """Keep ``answer``, made for the messages ``uids`` numbered ``seqs`` (which nobody
        changes any more)."""
        if len(uids) >= MIN_MESSAGES:
            self._kept.put(key, (seqs, uids, answer), len(answer) + 8 * len(uids))

    @property
    def budget(self) -> int:
        """Octets the kept answers may take."""
        return self._kept.budget

    @property
    def used(self) -> int:
        """Octets accounted for now (at most ``budget``)."""
        return self._kept.used
