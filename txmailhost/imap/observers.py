"""``IMailboxObserver``: who the IMAP server tells when a user puts messages into a mailbox.

A user's moves say things the server can act on: into Junk means "this is spam", out of
Junk "this isn't" (``txmailhost.spam.training``). The server calls each observer after a
COPY, MOVE or APPEND succeeded (the messages are durable in the target), on the reactor
thread; an observer must return at once — work goes to a thread or a Deferred of its own —
and an exception it raises is logged, never seen by the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger
from zope.interface import Interface

log = Logger()


class IMailboxObserver(Interface):
    def arrived(user, origin, target, mailbox, uids):
        """Messages arrived in ``target`` (a mailbox name) of ``user``: copied or moved from
        the mailbox named ``origin``, or appended (``origin`` None). ``mailbox`` is the opened
        target (an ``IMailbox``, for ``open_message``) and ``uids`` their UIDs there."""


def tell(
    observers: Iterable[Any],
    user: str,
    origin: str | None,
    target: str,
    mailbox: Any,
    uids: Sequence[int],
) -> None:
    """Call ``arrived`` on each observer; one that fails is logged and the others still run."""
    for observer in observers:
        try:
            observer.arrived(user, origin, target, mailbox, uids)
        except Exception:
            log.failure("imap: mailbox observer {observer!r} failed", observer=observer)
