"""An in-process bus that tells open IMAP sessions "this mailbox changed".

Why a bus and not a message queue: a session learns *what* changed from the index itself
(``MailboxIndex.changes_since(modseq)``), which also covers changes made by another process.
The bus only makes that poll happen at once, so an IDLE-ing client sees an SMTP delivery within a
second (RFC 2177) instead of at its next command. Publishing happens on the reactor thread.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

log = Logger(namespace="txmailhost.store")


class ChangeBus:
    """Callbacks keyed by mailbox directory; ``publish`` calls each one, isolating failures."""

    def __init__(self) -> None:
        self._watchers: dict[str, list[Callable[[], None]]] = {}
        # Called with each directory published here, to tell other processes sharing the
        # store (workers/bus.py); their buses call ``publish_local`` with it.
        self.forward: Callable[[str], None] | None = None

    def watch(self, directory: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change to the mailbox in ``directory``; returns the
        function that stops it."""
        self._watchers.setdefault(directory, []).append(callback)

        def stop() -> None:
            callbacks = self._watchers.get(directory, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(directory, None)

        return stop

    def wanted(self) -> bool:
        """Is anyone listening (here, or other processes)? If not, publishing can be skipped."""
        return bool(self._watchers) or self.forward is not None

    def publish(self, directory: str) -> None:
        """A change made by this process: watchers here, then the other processes."""
        self.publish_local(directory)
        if self.forward is not None:
            self.forward(directory)

    def publish_local(self, directory: str) -> None:
        """A change another process made (or this one): watchers in this process only."""
        for callback in list(self._watchers.get(directory, ())):
            try:
                callback()
            except Exception:
                log.failure("mailbox change watcher failed for {directory}", directory=directory)
