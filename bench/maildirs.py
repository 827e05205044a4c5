"""Watching a Maildir fill up: the "delivered into the Maildir" end of the SMTP measurement.

A message is delivered when its file is in ``new/`` or ``cur/`` (``tmp/`` holds deliveries in
progress), which is the moment any Maildir reader (Dovecot, mutt, our POP3) can see it. The count
is polled in a thread so the time a load's last message landed is known to within one interval,
whether the server delivers before answering ``250`` (txmailhost may) or afterwards from a queue
(Postfix).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path


def count(maildir: Path) -> int:
    """Messages visible in a Maildir (0 when it does not exist yet)."""
    total = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as entries:
                total += sum(1 for _ in entries)
        except FileNotFoundError:
            pass
    return total


class MaildirWatch:
    """Polls ``count(maildir)`` from when the ``with`` block starts; remembers each change."""

    def __init__(self, maildir: Path, interval: float = 0.02) -> None:
        self.maildir = maildir
        self.interval = interval
        self._history: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maildir-watch", daemon=True)

    def __enter__(self) -> MaildirWatch:
        self._history.append((time.perf_counter(), count(self.maildir)))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            seen = count(self.maildir)
            if seen != self._history[-1][1]:
                self._history.append((time.perf_counter(), seen))

    def wait_for(self, expected: int, timeout: float) -> float | None:
        """When (``perf_counter``) the Maildir first held ``expected`` more messages than at the
        start; None if that did not happen within ``timeout`` seconds from now."""
        target = self._history[0][1] + expected
        deadline = time.monotonic() + timeout
        while self._history[-1][1] < target and time.monotonic() < deadline:
            time.sleep(self.interval)
        for moment, seen in self._history:
            if seen >= target:
                return moment
        return None


def write_files(
    maildir: Path, contents: Iterable[bytes], line_end: bytes = b"\r\n", owner: int | None = None
) -> int:
    """Put each message into ``maildir/new`` as a delivery agent would; returns how many.

    ``contents`` are CRLF messages; ``line_end`` is what the server keeps on disk (txmailhost
    CRLF, Dovecot LF). Names carry ``,S=size`` as Maildir++ wants. No fsync: the files are a
    fixture, written once before anything is measured. ``owner`` (a uid) is for servers that
    read mail as another user (Dovecot's static mail uid).
    """
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    stamp, pid = int(time.time()), os.getpid()
    written = 0
    for index, content in enumerate(contents):
        if line_end != b"\r\n":
            content = content.replace(b"\r\n", line_end)
        path = maildir / "new" / f"{stamp}.M{index}P{pid}Q{_batch()}.{host},S={len(content)}"
        path.write_bytes(content)
        if owner is not None:
            os.chown(path, owner, owner)
        written += 1
    if owner is not None:
        for path in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
            os.chown(path, owner, owner)
    return written


_batches = itertools.count()


def _batch() -> int:
    return next(_batches)
