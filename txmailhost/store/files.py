"""Adding a message that is already a durable file (a spool file) to any store.

A store of files (``IFileDelivery``: Maildir) links it into every mailbox without copying a
byte; any other store is given it as a ``MessageSource`` and reads it in its own thread. Bounces,
quota notices and SMTP's local delivery all start from such a file, so they call this one
function instead of asking each time which kind of store they hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred

from txmailhost.store.interfaces import IFileDelivery, MessageSource


def deliver_file(
    store: Any,
    recipients: Iterable[tuple[str, str]],
    path: str,
    internaldate: float | None = None,
) -> Deferred[dict[tuple[str, str], int]]:
    """``IMailStore.deliver`` of the fsync'd file at ``path``, which the caller still owns
    (and removes) afterwards; the UID of each ``(user, mailbox)`` copy."""
    if IFileDelivery.providedBy(store):
        return store.deliver_file(list(recipients), path, internaldate)
    return store.deliver(list(recipients), MessageSource.from_path(path), internaldate)
