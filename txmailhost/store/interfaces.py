"""The store as the protocols see it: deliver, open a mailbox, read, flag and expunge messages.

Every method returns a Deferred, because implementations block on disk or a database and must
run off the reactor thread. Names are IMAP mailbox names with ``/`` as hierarchy separator
(``INBOX``, ``Sent``, ``Lists/twisted``); users are canonical lower-case addresses. Nothing here
mentions Maildir or SQLite, so a shared-storage backend can implement the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import Attribute, Interface

# IMAP system flags; the Maildir letters they map to live in the Maildir implementation.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)

INBOX = "INBOX"
DEFAULT_MAILBOXES = ("Sent", "Drafts", "Trash", "Junk")


class StoreError(Exception):
    """A store operation failed; ``permanent`` says whether retrying can help."""

    permanent = False


class NoSuchMailbox(StoreError):
    permanent = True


class MailboxExists(StoreError):
    permanent = True


class InvalidMailboxName(StoreError):
    """The name could escape the user's directory or can't be represented on disk."""

    permanent = True


class NoSuchMessage(StoreError):
    """The UID is not (or no longer) in the mailbox, e.g. expunged by another session."""

    permanent = True


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the index knows of one message; enough to answer SELECT, LIST, UIDL, FLAGS."""

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    modseq: int


@dataclass(frozen=True, slots=True)
class MailboxSnapshot:
    """A consistent view of one mailbox, in UID order (message sequence numbers follow it)."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: tuple[MessageInfo, ...]


class IMailbox(Interface):
    """One user's mailbox, opened by ``IMailStore.open``."""

    name = Attribute("The mailbox name, e.g. 'INBOX'.")
    user = Attribute("The owner's canonical address.")

    def snapshot():
        """Deferred[MailboxSnapshot]: the messages now in the mailbox, from the index."""

    def open_message(uid):
        """Deferred[BinaryIO]: the message bytes (CRLF line ends), opened for reading.

        Fails with NoSuchMessage when the UID has been expunged.
        """

    def store_flags(uids, flags, mode):
        """Deferred[list[MessageInfo]]: set (``mode`` '='), add ('+') or remove ('-') flags."""

    def expunge(uids):
        """Deferred[list[int]]: remove these messages durably; returns the UIDs removed."""

    def append(source_path, flags, internaldate):
        """Deferred[int]: durably add a copy of the fsync'd file ``source_path``; its UID."""


class IMailStore(Interface):
    """All users' mailboxes."""

    def provision(user):
        """Deferred[None]: create the user's INBOX and default folders if missing."""

    def deliver(recipients, source_path, internaldate=None):
        """Deferred[dict[(user, mailbox), int]]: add the fsync'd file at ``source_path`` to
        each ``(user, mailbox)`` pair, durably, before the Deferred fires. The caller still owns
        (and removes) ``source_path``."""

    def open(user, mailbox):
        """Deferred[IMailbox]; fails with NoSuchMailbox or InvalidMailboxName."""

    def list_mailboxes(user):
        """Deferred[list[str]]: the user's mailbox names, INBOX first."""

    def create_mailbox(user, mailbox):
        """Deferred[None]; fails with MailboxExists or InvalidMailboxName."""

    def delete_mailbox(user, mailbox):
        """Deferred[None]; INBOX can't be deleted."""

    def remove_user(user):
        """Deferred[None]: delete every mailbox of the user (admin 'user del --purge')."""
