"""The store as the protocols see it: deliver, open a mailbox, read, flag and expunge messages.

Every method returns a Deferred, because implementations block on disk or a database and must
run off the reactor thread. Names are IMAP mailbox names with ``/`` as hierarchy separator
(``INBOX``, ``Sent``, ``Lists/twisted``); users are canonical lower-case addresses. Nothing here
mentions Maildir or SQLite, so a shared-storage backend can implement the same interface.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from zope.interface import Attribute, Interface

from txmailhost.store.messagefiles import open_message_file

# IMAP system flags; the Maildir letters they map to live in the Maildir implementation.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)
# Keywords (flags of a user's own naming) are bounded where they come in (IMAP STORE and
# APPEND, Sieve's imap4flags): see ``imap/keywords.py``.
MAX_KEYWORD_LENGTH = 100  # octets: real clients' ("$label1", "Junk", "$MDNSent") are short
MAX_MAILBOX_KEYWORDS = 1000  # distinct keywords a mailbox may carry

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


class TooManyEntries(StoreError):
    """A METADATA change would leave more entries than the limit it was given; nothing was
    changed (``IMetadataStore.set_metadata``)."""

    permanent = True


class QuotaExceeded(StoreError):
    """The messages would take their owner's mailboxes past the limit they were given;
    nothing was added (``IQuotaAppend``). Permanent for this message: retrying it as it is
    fails again until the owner makes room."""

    permanent = True


class TooManyMailboxes(StoreError):
    """Creating the mailbox would give the user more than the store's ``max_mailboxes``
    (``[store] max_mailboxes`` in a server; 0, no limit, for the CLI's restores and moves
    in); nothing was created."""

    permanent = True


def check_room(count: int, limit: int, name: str) -> None:
    """``TooManyMailboxes`` when a user with ``count`` mailboxes (INBOX too) may not have
    ``name`` as one more under ``limit`` (0: no limit). The default mailboxes are always
    allowed: provisioning, Send's copy to Sent and Spam's move to Junk make them."""
    if limit and count >= limit and name not in DEFAULT_MAILBOXES:
        raise TooManyMailboxes(f"at most {limit} mailboxes")


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


class StoredMessage(NamedTuple):
    """One message as FETCH and SEARCH need it: index values, and the header block and/or the
    whole message when asked for (``None`` otherwise). A NamedTuple: 100,000 of them are cheap."""

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    modseq: int
    header: bytes | None = None
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class MailboxSelection:
    """What SELECT reports (RFC 3501 §6.3.1, RFC 7162 §3.1.2.1), plus the sequence-number map.

    ``uids`` is the whole UID list in order (an ``array('I')``: four bytes a message);
    the messages from ``first_recent`` up to ``uidnext`` are \\Recent for this session: claimed
    for it by a SELECT, merely shown by an EXAMINE (RFC 3501 §6.3.2: EXAMINE must not take
    \\Recent away from the session that will SELECT).
    """

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    uids: object
    first_unseen: int
    unseen: int
    first_recent: int
    keywords: frozenset[str]
    mailboxid: str | None = None  # RFC 8474 MAILBOXID: kept through RENAME, new after DELETE/CREATE


@dataclass(frozen=True, slots=True)
class IndexColumns:
    """Index values of many messages as columns, in UID order: what a resync of a large
    mailbox (``UID FETCH 1:* (UID FLAGS)``) formats, without an object per message. ``flags``
    holds shared frozensets (one per distinct combination)."""

    uids: Sequence[int]
    flags: Sequence[frozenset[str]]
    sizes: Sequence[int]
    internaldates: Sequence[float]
    modseqs: Sequence[int]


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """STATUS items (RFC 3501 §6.3.10, RFC 7162 §3.1.3, RFC 8438 SIZE)."""

    messages: int
    recent: int
    unseen: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    size: int
    mailboxid: str | None = None  # RFC 8474 STATUS MAILBOXID


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """Where one message of a mailbox came from: what no flag change alters.

    ``emailid`` (RFC 8474 EMAILID) names the message itself, so every copy of it (COPY,
    MOVE, RENAME of INBOX) has the same one and a client can reuse what it cached; it is made
    when the message is first saved (delivery, APPEND) and carried along by each copy.
    ``savedate`` (RFC 8514 save date) is when it was saved into *this* mailbox: a copy gets its own,
    unlike INTERNALDATE, which a copy keeps. A message indexed before the store kept save
    dates reports its INTERNALDATE: the best value known."""

    emailid: str
    savedate: float


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """What changed after a modseq: new or re-flagged messages (no header/content) and the UIDs
    expunged (RFC 7162 §3.2.5 VANISHED)."""

    highestmodseq: int
    changed: tuple[StoredMessage, ...]
    expunged: tuple[int, ...]


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

    def store_flags_if_unchanged(uids, flags, mode, unchangedsince):
        """Deferred[tuple[list[MessageInfo], list[int]]]: ``store_flags`` on the messages
        whose MODSEQ is at most ``unchangedsince``, the others left alone; (the messages
        changed, the UIDs left alone). The test and the change are one step, under the lock
        every writer of the mailbox takes (RFC 7162 3.1.3, a conditional STORE): a session
        of another process or node can't change a message between them."""

    def expunge(uids):
        """Deferred[list[int]]: remove these messages durably; returns the UIDs removed."""

    def append(source, flags, internaldate):
        """Deferred[tuple[int, int]]: durably add the message ``source`` (a ``MessageSource``)
        with ``flags`` and INTERNALDATE ``internaldate`` (now when None); fires with
        (UIDVALIDITY, UID) for APPENDUID (RFC 4315) once the message is stored. The store reads
        the source off the reactor thread; the caller keeps (and closes) what it points to."""

    def append_many(items):
        """Deferred[tuple[int, list[int]]]: ``append`` for each ``(source, flags,
        internaldate)``, atomically (MULTIAPPEND, RFC 3502): every message is stored and
        durable before the Deferred fires, or, on failure, none is added. (UIDVALIDITY, the
        UIDs in order)."""

    def select(claim_recent):
        """Deferred[MailboxSelection]; ``claim_recent`` makes this session the one that sees
        the new messages as \\Recent (SELECT, not EXAMINE)."""

    def claim_recent(upto):
        """Deferred[int]: the lowest UID below ``upto`` no session has claimed as \\Recent;
        the UIDs from it to ``upto`` are claimed for the caller, atomically across sessions
        and processes (RFC 3501 §2.3.2: a new message is \\Recent in exactly one session, the
        first told of it). ``upto`` or more when none is left."""

    def status():
        """Deferred[MailboxStatus]."""

    def changes_since(modseq):
        """Deferred[MailboxChanges] after ``modseq``, by any session or process."""

    def messages(uids, header, content):
        """Deferred[list[StoredMessage]] for those of ``uids`` still present, in UID order;
        ``header``/``content`` ask for the header block / the whole message too."""

    def columns(uids):
        """Deferred[IndexColumns] for those of the sorted ``uids`` still present: index values
        only, answered from memory where the store can (FETCH of FLAGS, UID, sizes, dates)."""

    def uid_range(low, high):
        """Deferred[list[StoredMessage]] (index values only) for every UID in [low, high]."""

    def expunged_since(modseq):
        """Deferred[list[int]]: UIDs expunged after ``modseq`` (QRESYNC)."""

    def copy(uids, target):
        """Deferred[list[tuple[int, int]]]: durably copy messages (flags, INTERNALDATE and
        EMAILID kept, a new save date) into the mailbox ``target``; (source UID, new UID)
        pairs for UIDPLUS COPYUID (RFC 4315)."""

    def origins(uids):
        """Deferred[dict[int, MessageOrigin]] for those of ``uids`` still present: EMAILID and
        save date (RFC 8474, RFC 8514), from the index, no message file read."""

    def derived(uids, name):
        """Deferred[dict[int, bytes]]: values stored with ``remember`` under ``name``."""

    def remember(name, values):
        """Deferred[None]: keep ``values`` (UID → bytes) under ``name`` until the message is
        expunged: for what a protocol derives from a message once (IMAP BODYSTRUCTURE), so
        it never reads a large message again to answer it."""

    def watch(callback):
        """Call ``callback()`` (reactor thread) after any change to this mailbox; returns a
        function that stops watching."""


class IMailStore(Interface):
    """All users' mailboxes."""

    def provision(user):
        """Deferred[None]: create the user's INBOX and default folders if missing."""

    def deliver(recipients, source, internaldate=None, flags=None):
        """Deferred[dict[(user, mailbox), int]]: add the message ``source`` (a
        ``MessageSource``) to each ``(user, mailbox)`` pair, durably, before the Deferred fires;
        the UID of each copy. A mailbox that doesn't exist fails it with NoSuchMailbox (callers
        pick existing folders first); INBOX always exists for a user the accounts know.

        ``flags`` (optional, keyword) maps a ``(user, mailbox)`` pair to the IMAP flags its copy
        is stored with (Sieve's imap4flags, RFC 5232: ``\\Seen``, ``$Label1``); a pair it
        leaves out, or ``None``, stores no flags. Callers pass it only when some copy has
        flags, so a backend written before it existed keeps working for all other mail."""

    def open(user, mailbox):
        """Deferred[IMailbox]; fails with NoSuchMailbox or InvalidMailboxName."""

    def open_selected(user, mailbox, claim_recent):
        """Deferred[(IMailbox, MailboxSelection)]: ``open`` and ``IMailbox.select`` in one
        step (one worker round trip instead of two: IMAP clients SELECT on every connect)."""

    def list_mailboxes(user):
        """Deferred[list[str]]: the user's mailbox names, INBOX first."""

    def create_mailbox(user, mailbox):
        """Deferred[None]; fails with MailboxExists or InvalidMailboxName."""

    def delete_mailbox(user, mailbox):
        """Deferred[None]; INBOX can't be deleted."""

    def rename_mailbox(user, old, new):
        """Deferred[None]: rename a mailbox and its children; renaming INBOX moves its messages
        into a new mailbox and leaves INBOX empty (RFC 3501 §6.3.5)."""

    def subscriptions(user):
        """Deferred[list[str]]: the names the user subscribed to (RFC 3501 §6.3.6)."""

    def subscribe(user, mailbox, subscribed):
        """Deferred[None]: add or remove ``mailbox`` from the subscriptions, durably."""

    def access_key(user, mailbox, create):
        """Deferred[bytes | None]: the mailbox access key of ``user``'s ``mailbox`` (URLAUTH,
        RFC 4467 §2.3: the secret URLs to it are signed with), made at random on first use
        when ``create``; None when there is none (nothing is created for an unknown user)."""

    def reset_access_keys(user, mailbox):
        """Deferred[None]: forget the access key of ``mailbox`` (every one of the user's when
        None), so every URL signed with it stops working (RESETKEY)."""

    def usage(user):
        """Deferred[int]: octets stored in all of the user's mailboxes (QUOTA, RFC 9208)."""

    def remove_user(user):
        """Deferred[None]: delete every mailbox of the user (admin 'user del --purge')."""

    def location(user):
        """Where the user's mail is kept, in words for an administrator (the CLI prints it)."""


class IMetadataStore(Interface):
    """Optional: METADATA entries (RFC 5464) of a user's mailboxes and of the user's account
    ("server" entries), kept durably. A mailbox's entries follow it through RENAME and go with
    it at DELETE. Callers check ``IMetadataStore.providedBy(store)``; the IMAP server offers
    METADATA only over a store that declares it. Entry names arrive checked and lower-cased;
    limits (entry size, entry count) are the caller's; the count is passed to ``set_metadata``
    to be kept atomically."""

    def get_metadata(user, mailbox):
        """Deferred[dict[str, bytes]]: every entry of ``mailbox`` (the account's own when
        None). ``NoSuchMailbox`` for a mailbox that doesn't exist."""

    def set_metadata(user, mailbox, changes, limit=None):
        """Deferred[None]: apply ``changes`` ({entry: value, or None to remove}) all at
        once, durable before the Deferred fires. With ``limit``, ``TooManyEntries`` (and
        nothing changed) when more than ``limit`` entries would be left: checked with the
        write, atomically, so sessions of other processes or nodes writing at the same time
        can't together go past it."""


class IAclStore(Interface):
    """Optional: access control lists (RFC 4314) on a user's mailboxes, kept durably, and
    the index of the mailboxes shared with an identifier. A mailbox's ACL follows it through
    RENAME and goes with it at DELETE. Callers check ``IAclStore.providedBy(store)``; the
    IMAP server offers ACL, RIGHTS=texk, LIST-MYRIGHTS and the other users' and shared
    namespaces only over a store that declares it. Identifiers and rights arrive checked and
    canonical (``store/acl.py``); the owner's own rights are implicit and never stored."""

    def get_acl(user, mailbox):
        """Deferred[dict[str, str]]: identifier → rights of ``user``'s ``mailbox``;
        ``NoSuchMailbox`` for a mailbox that doesn't exist."""

    def set_acl(user, mailbox, identifier, rights):
        """Deferred[None]: give ``identifier`` exactly ``rights`` on the existing
        ``mailbox`` (None or "" removes its entry), durable before the Deferred fires."""

    def change_acl(user, mailbox, identifier, change):
        """Deferred[str]: apply SETACL's ``change`` (``+rights`` adds, ``-rights`` takes
        away, anything else replaces; ``store.acl.modify``) to ``identifier``'s entry on the
        existing ``mailbox`` as one atomic step, and give the rights it now holds ("" when
        the entry is gone). Two sessions adding a right each at once both keep theirs, on
        every worker and node: the read and the write are never apart."""

    def shared_with(identifiers):
        """Deferred[dict[tuple[str, str], dict[str, str]]]: every (owner, mailbox) whose ACL
        has an entry for one of ``identifiers``, with that whole ACL."""


class IFileDelivery(Interface):
    """Optional, for a store whose messages are files (Maildir): add a file that is already
    durable by linking it, without copying its bytes, many recipients in one trip to the
    storage thread. Callers check ``IFileDelivery.providedBy(store)`` and otherwise use
    ``IMailStore.deliver`` with a ``MessageSource``; the SMTP spool's acknowledged local mail
    (``queue/local.py``) needs it and is used only with a store that declares it."""

    pending = Attribute(
        "A ``PendingDeliveries``: readers of a mailbox wait for mail announced into it."
    )

    def deliver_file(recipients, path, internaldate=None, prepare=None, finish=None, flags=None):
        """``IMailStore.deliver`` for the fsync'd file at ``path``, linked into each mailbox.
        The caller still owns (and removes) ``path``. ``prepare``, a blocking callable, runs
        first in the same worker (the SMTP spool's write-and-fsync), and ``finish`` last,
        whatever happened (the spool file's removal): each saves a thread round trip.
        ``flags`` as for ``IMailStore.deliver``."""

    def deliver_named_sync(batch, recovering=False):
        """Blocking: deliver each ``(path, stem, internaldate, targets)`` of ``batch`` under
        names made from ``stem``, so that doing it again after a crash finds the copies instead
        of adding more (``recovering`` also looks for copies a client already read). An entry
        may carry a fifth item, the ``flags`` mapping of ``IMailStore.deliver`` for its targets
        (given only when some copy has flags)."""

    def list_mailboxes_sync(user):
        """The user's mailbox names, for a caller already in a worker thread (the delivery
        thread picking plus-folders after the 250)."""

    def mailbox_directory(user, mailbox):
        """The key ``pending`` counts deliveries into ``mailbox`` of ``user`` under."""

    def staging_directory(user):
        """A directory on the same file system as the user's mail where a protocol may write
        a message before ``IStagedAppend.append_staged`` (so adding it is a link, not a copy)."""


# The fields ``ITextIndex`` answers for: "text" is a whole message as SEARCH TEXT and BODY see
# it; the others are the header fields of SEARCH SUBJECT, FROM, TO, CC and BCC.
TEXT_FIELDS = ("text", "subject", "from", "to", "cc", "bcc")


@dataclass(frozen=True, slots=True)
class TextTerm:
    """Messages whose ``field`` (one of ``TEXT_FIELDS``) may hold ``needle`` (case-folded)."""

    field: str
    needle: str


@dataclass(frozen=True, slots=True)
class TextAll:
    """Messages every part (a ``TextTerm``, ``TextAll`` or ``TextAny``) may match."""

    parts: tuple[TextTerm | TextAll | TextAny, ...]


@dataclass(frozen=True, slots=True)
class TextAny:
    """Messages some part may match."""

    parts: tuple[TextTerm | TextAll | TextAny, ...]


TextQuery = TextTerm | TextAll | TextAny


class ITextIndex(Interface):
    """Optional, for mailboxes with a full-text index: which messages may match a text query.

    The answer is a set of *candidates*, never the result: it holds every message that matches
    (so a caller that tests each candidate with its own matcher gets exactly what testing every
    message gives) and maybe some that don't. What text a field holds is the caller's to say,
    through ``extractor``: an object with a ``version`` string (an index built by another
    version is built again) and ``columns(message)``, a dict of case-folded text for each of
    ``TEXT_FIELDS`` from a ``StoredMessage`` with its header and content. A term the index
    can't narrow (a needle under three characters) leaves every message a candidate. Callers
    check ``ITextIndex.providedBy(mailbox)``."""

    def text_candidates(query, uids, extractor):
        """Deferred[set[int] | None]: the candidates among ``uids`` for ``query`` (a
        ``TextQuery``), after indexing any of ``uids`` the index lacks; None when the index is
        off or can't answer (the caller tests every message)."""

    def rebuild_text_index(extractor):
        """Deferred[int | None]: drop the mailbox's text index and index every message again;
        how many were indexed (None when the index is off)."""


class IIndexRepair(Interface):
    """Optional, for mailboxes whose index is a cache of their message files (Maildir): what
    ``txmailhost index rebuild`` does beyond bringing the index in line with the files."""

    def repair_index(force):
        """Deferred[str | None]: check the index and, if it is damaged (or ``force``), set
        the file aside and build the index again from the messages (a new UIDVALIDITY); the
        name the old file was given, None when it was sound (or missing) and is kept."""


class IMessageRanges(Interface):
    """Optional, for mailboxes whose bodies are remote (an object store): read only the part of
    a message a client asked for (IMAP ``BODY[]<offset.length>``: Thunderbird downloads a large
    message in such pieces), instead of the whole message for each piece."""

    def open_range(uid, offset, length):
        """Deferred[tuple[BinaryIO, int]]: a file holding at least octets ``[offset, offset +
        length)`` of the message (CRLF line ends), and the message offset of the file's first
        octet (``offset``, or 0 when the whole message was read). Fewer octets when the
        message is shorter. Fails with NoSuchMessage when the UID has been expunged."""


class IStagedAppend(Interface):
    """Optional, for mailboxes of an ``IFileDelivery`` store: add a file written (not yet
    fsync'd) in ``IFileDelivery.staging_directory`` by a link, not a copy."""

    def append_staged(path, flags, internaldate):
        """Deferred[tuple[int, int]]: fsync the file at ``path``, add it, and remove ``path``
        whatever happens; (UIDVALIDITY, UID), all in one trip to the storage thread."""


class IQuotaAppend(Interface):
    """Optional: APPEND within the owner's quota as one step, so that sessions appending at
    once (on several nodes of a shared database) can't each find room for their message and
    together pass the limit. Without it IMAP compares the usage, then appends."""

    def append_within_quota(items, limit):
        """Deferred[tuple[int, list[int]]]: ``append_many(items)``, failing with
        ``QuotaExceeded`` (nothing added) when the owner's mailboxes, all of them, would
        then hold more than ``limit`` octets. Appenders with a limit to the same owner's
        mailboxes take their turns; deliveries without one don't wait."""


class IQuotaDelivery(Interface):
    """Optional, for an ``IMailStore`` that stores a delivery before the SMTP reply: the
    direct recipients' quotas checked again in the step that stores the copies, so that
    messages received for one user at once (on several nodes), each let in by its ``RCPT``
    check, can't together go further past the limit than one message alone may."""

    def deliver_within_quota(recipients, source, limits, flags):
        """Deferred[dict[tuple[str, str], int]]: ``IMailStore.deliver``, failing with
        ``QuotaExceeded`` (nothing stored) when a user of ``limits`` (user -> octets) holds
        their limit or more already. Soft by one message, as the RCPT check is for a message
        of undeclared size (docs/admin.rst): however many arrive at once, a user ends at
        most one message past the limit."""


class IQuotaReservation(Interface):
    """Optional, for an ``IFileDelivery`` store, which links SMTP mail into the mailboxes
    after the ``250`` (``delivery/local.py``): room under the direct recipients' quotas is
    reserved before it, in one step with the check, so that messages received for one user
    at once (by several threads or worker processes), each let in by its ``RCPT`` check,
    can't together go further past the limit than one message alone may, as with
    ``IQuotaDelivery``. A reservation counts in every check until the message's copies are
    stored (``deliver_file`` or ``deliver_named_sync`` of the same path), ``release`` or
    the end of the process that made it (Maildir: ``quotalock.py``)."""

    def reserve(path, limits, octets):
        """Deferred[None]: hold ``octets`` for the message at ``path`` under each quota of
        ``limits`` (user -> octets), failing with ``QuotaExceeded`` (nothing reserved) when
        a user holds, stored and reserved, their limit or more already: soft by one
        message, as ``IQuotaDelivery``."""

    def release(path):
        """Drop the reservation for ``path`` (none: nothing to do); from any thread."""


class IMailboxMove(Interface):
    """Optional: MOVE (RFC 6851) as one operation of the store, so that a message is in
    exactly one of the two mailboxes at every moment, after a crash too (§3.3: a server
    SHOULD NOT leave it in both). Without it IMAP copies, then expunges."""

    def move(uids, target):
        """Deferred[list[tuple[int, int]]]: as ``IMailbox.copy`` into ``target`` (a mailbox
        of the same store), and the messages leave this one as ``expunge`` removes them;
        (source UID, new UID) pairs for COPYUID."""


class MessageSource:
    """The octets of one message to add to mailboxes: held in memory, or read from a file.

    Shaped like the mail operation, not like a file system: a backend ``open``s it in its own
    worker thread (never on the reactor's) and reads it once, in CRLF or bare-LF form, as the
    sender gave it. The file stays the caller's: the store neither removes nor keeps it.
    """

    __slots__ = ("_data", "_file", "_path", "size")

    def __init__(
        self,
        *,
        data: bytes | None = None,
        file: BinaryIO | None = None,
        path: str | None = None,
        size: int | None = None,
    ) -> None:
        self._data, self._file, self._path = data, file, path
        self.size = len(data) if data is not None else size

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageSource:
        return cls(data=bytes(data))

    @classmethod
    def from_file(cls, file: BinaryIO, size: int) -> MessageSource:
        """A file object opened for reading, positioned anywhere (it is read from the start)."""
        return cls(file=file, size=size)

    @classmethod
    def from_path(cls, path: str, size: int | None = None) -> MessageSource:
        """The file at ``path``, opened only when a backend reads it (in its thread)."""
        return cls(path=path, size=size)

    @property
    def data(self) -> bytes | None:
        """The bytes when they are in memory already (no read needed), else None."""
        return self._data

    @property
    def path(self) -> str | None:
        """The file the message is read from, when it is one (else None): a store of files
        may link a file written in its own staging directory instead of copying it."""
        return self._path

    def open(self) -> BinaryIO:
        """A binary file positioned at the message's first octet; the caller closes it.
        Blocking when the message is on disk: call it in a worker thread."""
        if self._data is not None:
            return io.BytesIO(self._data)
        if self._file is not None:
            self._file.seek(0)
            return _Unclosed(self._file)  # type: ignore[return-value]
        assert self._path is not None
        # A link or a directory where an import expected a message is refused, not read.
        return open_message_file(self._path)

    def read(self) -> bytes:
        """The whole message (blocking when it is on disk)."""
        if self._data is not None:
            return self._data
        with self.open() as f:
            return f.read()

    def length(self) -> int:
        """The size in octets (a stat, blocking, when it was not given)."""
        if self.size is None:
            assert self._path is not None
            self.size = os.stat(self._path).st_size
        return self.size


class _Unclosed:
    """The caller's file, read through; closing this leaves the caller's file open."""

    def __init__(self, file: BinaryIO) -> None:
        self._wrapped = file

    def read(self, size: int = -1) -> bytes:
        return self._wrapped.read(size)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
