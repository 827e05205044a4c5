"""Mailboxes with acknowledged mail still on its way in: readers wait for it.

Local mail is acknowledged once it is durable in the spool (``queue/local.py``) and linked into
its mailboxes a moment later by the delivery thread. A client that sends a message and at once
asks its mailbox (POP3 STAT, an IMAP NOOP) must still see it, so the store's readers call
``wait`` before they look: it returns at once unless a delivery into that directory is
announced and not yet settled. The delivery thread never waits for a reader, so this can't
deadlock; ``timeout`` bounds the wait if that thread is stuck on a failing disk.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable


class PendingDeliveries:
    """Counts of announced, unsettled deliveries per mailbox directory (thread-safe)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.hurry: Callable[[], None] | None = None  # asks the delivery to start now
        self._counts: collections.Counter[str] = collections.Counter()
        self._settled = threading.Condition()

    def announce(self, directories: Iterable[str]) -> None:
        with self._settled:
            self._counts.update(directories)

    def settle(self, directories: Iterable[str]) -> None:
        with self._settled:
            self._counts.subtract(directories)
            for directory in [d for d, n in self._counts.items() if n <= 0]:
                del self._counts[directory]
            self._settled.notify_all()

    def wait(self, directory: str) -> bool:
        """Block until nothing is pending for ``directory``; False if ``timeout`` ran out."""
        if directory not in self._counts:  # the common case, without the lock
            return True
        if self.hurry is not None:
            self.hurry()
        with self._settled:
            return self._settled.wait_for(lambda: directory not in self._counts, self.timeout)
