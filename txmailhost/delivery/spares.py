"""Empty files made ahead of need, so an arriving message's file costs no inode on its way to 250.

Creating a file is the slowest step of spooling a small message: the file system allocates an
inode. On ext4 without a journal, that allocation also scans for inodes freed in the last
minute and skips them (``recently_deleted``); after a large delete the scan was a quarter of
the server's CPU, all of it on the critical path between the end of DATA and the ``250``
(docs/benchmarks.rst). So one background thread keeps a stock of empty files in their own
directory (``DATA/queue/spare/``); an arriving message writes into one, and delivery links it
into the mailboxes as before. The same thread removes the spare names of used files
(``retire``): a create or unlink holds the directory's lock, and only that thread ever takes
this directory's, so the path to ``250`` never waits behind it. When the stock runs out, a
message creates its own file in ``DATA/queue/tmp/`` as it always did.

Each batch of new names is made durable (one directory fsync) before the files are handed out:
local mail is acknowledged in them and must be found again after a crash (``local.py``).
On start the directory is swept of everything else, like ``tmp/``: unused spares, and files
of messages that were never acknowledged.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import threading
from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost import _safeio

log = Logger()


class SpareFiles:
    """A stock of empty files in ``directory``, kept between ``low`` and ``high`` by ``pool``.

    ``take`` and ``retire`` may be called from any thread: both queues are deques (atomic
    append and pop) and at most one job of the pool's works on them at a time. The pool needs
    one thread, its own, so the directory lock is only ever taken there.
    """

    def __init__(
        self,
        directory: str,
        pool: ThreadPool,
        low: int = 32,
        high: int = 128,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.directory = directory
        self._keep = keep  # files the start-up sweep must leave (acknowledged mail)
        self.low = low
        self.high = high
        self._pool = pool
        self._ready: collections.deque[str] = collections.deque()
        self._retired: collections.deque[str] = collections.deque()
        self._busy = threading.Lock()
        self._sweep_first = True

    def __len__(self) -> int:
        return len(self._ready)

    def take(self) -> str | None:
        """The path of an empty file to write, or None when the stock is empty."""
        try:
            path = self._ready.popleft()
        except IndexError:
            path = None
        if len(self._ready) < self.low:
            self._wake()
        return path

    def give_back(self, path: str) -> None:
        """``path`` was taken but never written (the message was refused before its end)."""
        self._ready.append(path)

    def retire(self, path: str) -> None:
        """``path`` (a file ``take`` gave out) is done with: remove its name in the background.

        Delivered messages keep their Maildir links; a refused one disappears with it. The
        names are removed when the thread next runs to refill the stock (one wake-up for many
        files, not one per message).
        """
        self._retired.append(path)

    def start(self) -> None:
        """Sweep the directory (what a crash left is unacknowledged) and fill the stock."""
        self._sweep_first = True
        self._wake()

    def _wake(self) -> None:
        if self._busy.acquire(blocking=False):
            self._pool.callInThread(self._work)

    def _work(self) -> None:
        try:
            if self._sweep_first:
                self._sweep_first = False
                self._sweep()
            while self._retired or len(self._ready) < self.high:
                while self._retired:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._retired.popleft())
                if len(self._ready) < self.high:
                    made = [self._create() for _ in range(min(16, self.high - len(self._ready)))]
                    # Durable names: a message acknowledged in one of these must be found
                    # again after a crash (local.py).
                    _safeio.fsync_dir(self.directory)
                    self._ready.extend(made)
        except OSError as e:
            # A full disk or a vanished directory: messages create their own files (and report
            # the same error where it matters, before any 250).
            log.warn("spool: spare files in {dir}: {error}", dir=self.directory, error=e)
        finally:
            self._busy.release()
        if self._retired:  # retired while the lock was being released
            self._wake()

    def _create(self) -> str:
        path = os.path.join(self.directory, secrets.token_hex(8))
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        return path

    def _sweep(self) -> None:
        self._ready.clear()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if self._keep is not None and self._keep(path):
                continue
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(path)
