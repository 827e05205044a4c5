"""How a message reaches a store: every call delivery/ makes into ``txmailhost.store``.

The rest of the package knows recipients, records and files; this module alone knows which
store methods put a file into mailboxes, list a user's folders, and tell readers that mail is
on its way (``store/pending.py``). A store with another shape (a message source instead of a
path, issue 14 item 3) is adapted here and nowhere else.

Two kinds of calls: ``*_sync`` ones run in a worker thread (the local delivery thread, or the
start-up recovery before the reactor runs); the others return Deferreds and are called from
the reactor thread, the store running them in its own pool (DESIGN invariant 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread

from txmailhost.store.interfaces import (
    IFileDelivery,
    IQuotaDelivery,
    IQuotaReservation,
    MailboxExists,
    MessageSource,
)

# The flags some copies are stored with (Sieve's imap4flags): (user, mailbox) -> IMAP flags.
Flags = Mapping[tuple[str, str], frozenset[str]]
# One entry of a batch: (spool file, stem of the copies' names, INTERNALDATE, (user, mailbox)s,
# their flags)
Batch = list[tuple[str, str, float, list[tuple[str, str]], Flags]]


def deliver_batch_sync(store: Any, batch: Batch, recovering: bool = False) -> None:
    """Link each spool file into its mailboxes under names derived from ``stem`` (so doing it
    again after a crash finds the copies instead of doubling them), durably, in one batch.
    An entry's flags are passed only when it has some (``IFileDelivery.deliver_named_sync``)."""
    entries = [entry if entry[4] else entry[:4] for entry in batch]
    store.deliver_named_sync(entries, recovering=recovering)


def links_files(store: Any) -> bool:
    """Does the store take a spool file by linking it (Maildir, ``IFileDelivery``)?"""
    return IFileDelivery.providedBy(store)


def deliver(
    store: Any,
    targets: list[tuple[str, str]],
    path: str,
    prepare: Callable[[], None] | None = None,
    finish: Callable[[], None] | None = None,
    flags: Flags | None = None,
    limits: dict[str, int] | None = None,
) -> Deferred[Any]:
    """Put the file at ``path`` into each ``(user, mailbox)``, durably, before firing, each
    copy with its ``flags`` (passed to the store only when some copy has any, so a backend
    that predates them still takes all other mail).

    A store of files (``links_files``) links it in one worker trip, with ``prepare`` (the
    spool's fsync) before and ``finish`` (its removal) after. Any other store reads the file
    itself, in its own thread (``MessageSource``): the caller then makes the file durable
    first and removes it afterwards, and passes neither.

    ``limits`` (user -> quota in octets): a store that checks them as it stores
    (``IQuotaDelivery``) refuses the whole delivery with ``QuotaExceeded`` when a copy would
    take its user past; others store it regardless (the RCPT check was the last word)."""
    extra = {"flags": flags} if flags else {}
    if links_files(store):
        return store.deliver_file(targets, path, prepare=prepare, finish=finish, **extra)
    assert prepare is None and finish is None, "only a store of files runs these"
    if limits and IQuotaDelivery.providedBy(store):
        return store.deliver_within_quota(targets, MessageSource.from_path(path), limits, flags)
    return store.deliver(targets, MessageSource.from_path(path), **extra)


def reserves_room(store: Any) -> bool:
    """Does the store hold room under the quotas for mail it stores after the ``250``
    (``IQuotaReservation``: Maildir)?"""
    return IQuotaReservation.providedBy(store)


def reserve(store: Any, path: str, limits: dict[str, int], octets: int) -> Deferred[None]:
    """Hold ``octets`` under each quota of ``limits`` (user -> octets) for the file at
    ``path`` until it is stored (``deliver`` or ``deliver_batch_sync`` of that path), or
    fail with ``QuotaExceeded`` when a user holds their limit already."""
    return store.reserve(path, limits, octets)


def release(store: Any, path: str) -> None:
    """The message at ``path`` won't be stored: give back the room ``reserve`` held."""
    store.release(path)


def folders(store: Any, user: str) -> Deferred[list[str]]:
    """The user's mailbox names (reactor thread)."""
    return store.list_mailboxes(user)


def folders_sync(store: Any, user: str) -> list[str]:
    """The user's mailbox names, from a worker thread (``IFileDelivery``: only a store of
    files has the delivery thread that asks)."""
    return store.list_mailboxes_sync(user)


def create_sync(store: Any, reactor: Any, user: str, mailbox: str) -> None:
    """Create ``mailbox`` for ``user`` from a worker thread, through the reactor (Sieve's
    ``fileinto :create``); raises the store's error (``MailboxExists`` is fine)."""
    with contextlib.suppress(MailboxExists):
        blockingCallFromThread(reactor, store.create_mailbox, user, mailbox)


def mailbox_directory(store: Any, user: str, mailbox: str) -> str:
    """The key readers wait on for ``mailbox`` of ``user`` (``store/pending.py``)."""
    return store.mailbox_directory(user, mailbox)


def announce(store: Any, keys: Iterable[str]) -> None:
    """Mail for these mailboxes is acknowledged and on its way: their readers wait for it."""
    store.pending.announce(keys)


def settle(store: Any, keys: Iterable[str]) -> None:
    """The mail announced for these mailboxes is in (or has failed for now)."""
    store.pending.settle(keys)


def on_reader_waiting(store: Any, hurry: Callable[[], None]) -> None:
    """Call ``hurry`` (from any thread) when a reader waits for announced mail."""
    store.pending.hurry = hurry
