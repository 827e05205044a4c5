"""An ``IMailStore`` held in the process's memory: for tests and for applications that embed
the protocol factories and keep mail elsewhere, never for mail that must survive a restart.

Everything the Maildir store gives the protocols is here too: UIDs that only grow, a
UIDVALIDITY per mailbox (taken from the clock, so a restart, which loses every message, also
tells IMAP clients to drop their caches: RFC 3501 §2.3.1.1), flags and keywords, \\Recent,
modseqs and expunge tombstones for CONDSTORE/QRESYNC (RFC 7162), sizes for quotas, values a
protocol derived once, subscriptions and change notifications for IDLE.

Users are provisioned lazily: the admin CLI runs in another process and cannot reach this
memory, so ``provision`` is only a shortcut, and the first delivery, login or mailbox
operation for an address creates its INBOX and default folders. Who may reach the store is
decided before it (authentication, routing), as with Maildir.

Messages are kept whole, in their CRLF form, so the store is bounded only by what the
configuration bounds (message size, quotas). The work is in-memory bookkeeping under one lock;
only reading a message that arrives as a file is sent to the thread pool (when one is given),
so a large spool file is never read on the reactor thread.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost.store import lineends, objectids
from txmailhost.store.acl import AclTable
from txmailhost.store.changes import ChangeBus
from txmailhost.store.interfaces import (
    DEFAULT_MAILBOXES,
    INBOX,
    SEEN,
    IAclStore,
    IMailbox,
    IMailStore,
    IMetadataStore,
    IndexColumns,
    InvalidMailboxName,
    IQuotaAppend,
    MailboxChanges,
    MailboxExists,
    MailboxSelection,
    MailboxSnapshot,
    MailboxStatus,
    MessageInfo,
    MessageOrigin,
    MessageSource,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StoredMessage,
    check_room,
)
from txmailhost.store.metadata import changed as metadata_changed

T = TypeVar("T")

_uidvalidity_lock = threading.Lock()
_last_uidvalidity = 0


def _new_uidvalidity() -> int:
    """Seconds since the epoch, but never twice the same in a process (RFC 3501 §2.3.1.1)."""
    global _last_uidvalidity
    with _uidvalidity_lock:
        _last_uidvalidity = max(int(time.time()) & 0xFFFFFFFF, _last_uidvalidity + 1)
        return _last_uidvalidity


_MAX_NAME = 255  # what Maildir++ can store (one file name): the same names work everywhere


def _canonical(mailbox: str) -> str:
    """INBOX is case-insensitive (RFC 3501 §5.1); other names are kept as given, once checked
    like a hierarchy with ``/`` separators: no empty parts, no '.' or '..', no controls, and
    no longer than ``_MAX_NAME`` octets."""
    if mailbox.upper() == INBOX:
        return INBOX
    if len(mailbox.encode("utf-8")) > _MAX_NAME:
        raise InvalidMailboxName(f"mailbox name too long: {mailbox[:40]!r}...")
    for part in mailbox.split("/"):
        if not part or part in (".", "..") or any(ord(c) < 32 or c == "\x7f" for c in part):
            raise InvalidMailboxName(f"invalid mailbox name: {mailbox!r}")
    return mailbox


def _owner(user: str) -> str:
    if "@" not in user or "/" in user or not user.strip():
        raise InvalidMailboxName(f"not a mailbox owner address: {user!r}")
    return user.lower()


@dataclass
class _Message:
    uid: int
    content: bytes
    header: bytes
    flags: frozenset[str]
    internaldate: float
    modseq: int
    emailid: str  # RFC 8474: the same in every copy
    savedate: float  # RFC 8514: when it was saved into this folder

    def stored(self, header: bool = False, content: bool = False) -> StoredMessage:
        return StoredMessage(
            self.uid,
            self.flags,
            len(self.content),
            self.internaldate,
            self.modseq,
            self.header if header else None,
            self.content if content else None,
        )


@dataclass
class _Folder:
    """One mailbox's state; every ``MemoryMailbox`` opened on it shares it."""

    uidvalidity: int = field(default_factory=_new_uidvalidity)
    uidnext: int = 1
    highestmodseq: int = 1
    recent_uid: int = 1  # the lowest UID no session has claimed as \Recent yet
    messages: dict[int, _Message] = field(default_factory=dict)  # in UID order
    expunged: list[tuple[int, int]] = field(default_factory=list)  # (uid, modseq)
    derived: dict[str, dict[int, bytes]] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)  # RFC 5464 entries
    mailboxid: str = field(default_factory=objectids.new_mailboxid)  # follows RENAME

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def add(
        self,
        content: bytes,
        flags: Iterable[str],
        internaldate: float | None,
        emailid: str | None = None,
    ) -> int:
        """Save a message here; ``emailid`` is the one of the message copied (a new one for
        new mail)."""
        uid = self.uidnext
        self.uidnext += 1
        end = lineends.header_end(content)
        self.messages[uid] = _Message(
            uid,
            content,
            content[:end] if end >= 0 else content,
            frozenset(f for f in flags if f != "\\Recent"),
            internaldate if internaldate is not None else time.time(),
            self.next_modseq(),
            emailid or objectids.new_emailid(),
            time.time(),
        )
        return uid

    def size(self) -> int:
        return sum(len(m.content) for m in self.messages.values())


@dataclass
class _Account:
    folders: dict[str, _Folder] = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)
    access_keys: dict[str, bytes] = field(default_factory=dict)  # URLAUTH (RFC 4467)
    metadata: dict[str, bytes] = field(default_factory=dict)  # the account's METADATA entries


@implementer(IMailbox, IQuotaAppend)
class MemoryMailbox:
    """One opened mailbox of a ``MemoryStore``."""

    def __init__(self, store: MemoryStore, user: str, name: str) -> None:
        self._store = store
        self.user = user
        self.name = name

    def _folder(self) -> _Folder:
        """The mailbox's state now (it may have been deleted or renamed meanwhile)."""
        folder = self._store._account(self.user).folders.get(self.name)
        if folder is None:
            raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")
        return folder

    def _do(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._store._do(fn, *args)

    def _changed(self) -> None:
        self._store._changed(self.user, self.name)

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Deferred[MailboxSnapshot]:
        def job() -> MailboxSnapshot:
            folder = self._folder()
            return MailboxSnapshot(
                self.name,
                folder.uidvalidity,
                folder.uidnext,
                folder.highestmodseq,
                tuple(
                    MessageInfo(m.uid, m.flags, len(m.content), m.internaldate, m.modseq)
                    for m in folder.messages.values()
                ),
            )

        return self._do(job)

    def open_message(self, uid: int) -> Deferred[BinaryIO]:
        def job() -> BinaryIO:
            message = self._folder().messages.get(uid)
            if message is None:
                raise NoSuchMessage(f"UID {uid} is not in {self.name}")
            return io.BytesIO(message.content)

        return self._do(job)

    def select(self, claim_recent: bool) -> Deferred[MailboxSelection]:
        return self._do(self._select, claim_recent)

    def _select(self, claim_recent: bool) -> MailboxSelection:
        folder = self._folder()
        first_recent = folder.recent_uid
        if claim_recent:
            folder.recent_uid = max(folder.recent_uid, folder.uidnext)
        messages = list(folder.messages.values())
        unseen = [i for i, m in enumerate(messages, 1) if SEEN not in m.flags]
        keywords = {f for m in messages for f in m.flags if not f.startswith("\\")}
        return MailboxSelection(
            uidvalidity=folder.uidvalidity,
            uidnext=folder.uidnext,
            highestmodseq=folder.highestmodseq,
            uids=array("I", folder.messages),
            first_unseen=unseen[0] if unseen else 0,
            unseen=len(unseen),
            first_recent=first_recent,
            keywords=frozenset(keywords),
            mailboxid=folder.mailboxid,
        )

    def claim_recent(self, upto: int) -> Deferred[int]:
        def job() -> int:
            folder = self._folder()
            first = folder.recent_uid
            folder.recent_uid = max(first, upto)
            return first

        return self._do(job)

    def status(self) -> Deferred[MailboxStatus]:
        def job() -> MailboxStatus:
            folder = self._folder()
            messages = folder.messages.values()
            return MailboxStatus(
                messages=len(folder.messages),
                recent=sum(1 for uid in folder.messages if uid >= folder.recent_uid),
                unseen=sum(1 for m in messages if SEEN not in m.flags),
                uidvalidity=folder.uidvalidity,
                uidnext=folder.uidnext,
                highestmodseq=folder.highestmodseq,
                size=folder.size(),
                mailboxid=folder.mailboxid,
            )

        return self._do(job)

    def changes_since(self, modseq: int) -> Deferred[MailboxChanges]:
        def job() -> MailboxChanges:
            folder = self._folder()
            changed = tuple(m.stored() for m in folder.messages.values() if m.modseq > modseq)
            gone = tuple(uid for uid, when in folder.expunged if when > modseq)
            return MailboxChanges(folder.highestmodseq, changed, gone)

        return self._do(job)

    def messages(
        self, uids: Iterable[int], header: bool = False, content: bool = False
    ) -> Deferred[list[StoredMessage]]:
        def job(wanted: list[int]) -> list[StoredMessage]:
            present = self._folder().messages
            return [present[uid].stored(header, content) for uid in wanted if uid in present]

        return self._do(job, sorted(set(uids)))

    def columns(self, uids: Iterable[int]) -> Deferred[IndexColumns]:
        def job(wanted: list[int]) -> IndexColumns:
            present = self._folder().messages
            found = [present[uid] for uid in wanted if uid in present]
            return IndexColumns(
                array("I", (m.uid for m in found)),
                [m.flags for m in found],
                [len(m.content) for m in found],
                [m.internaldate for m in found],
                [m.modseq for m in found],
            )

        return self._do(job, sorted(set(uids)))

    def uid_range(self, low: int, high: int) -> Deferred[list[StoredMessage]]:
        def job() -> list[StoredMessage]:
            return [m.stored() for uid, m in self._folder().messages.items() if low <= uid <= high]

        return self._do(job)

    def expunged_since(self, modseq: int) -> Deferred[list[int]]:
        return self._do(lambda: [uid for uid, when in self._folder().expunged if when > modseq])

    def origins(self, uids: Iterable[int]) -> Deferred[dict[int, MessageOrigin]]:
        def job(wanted: list[int]) -> dict[int, MessageOrigin]:
            messages = self._folder().messages
            return {
                uid: MessageOrigin(m.emailid, m.savedate)
                for uid in wanted
                if (m := messages.get(uid)) is not None
            }

        return self._do(job, list(uids))

    def derived(self, uids: Iterable[int], name: str) -> Deferred[dict[int, bytes]]:
        def job(wanted: list[int]) -> dict[int, bytes]:
            values = self._folder().derived.get(name, {})
            return {uid: values[uid] for uid in wanted if uid in values}

        return self._do(job, list(uids))

    def remember(self, name: str, values: dict[int, bytes]) -> Deferred[None]:
        def job(values: dict[int, bytes]) -> None:
            folder = self._folder()
            kept = folder.derived.setdefault(name, {})
            kept.update((uid, v) for uid, v in values.items() if uid in folder.messages)

        return self._do(job, dict(values))

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._store.changes.watch(self._store._key(self.user, self.name), callback)

    # -- changing ----------------------------------------------------------------------------

    def store_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: str
    ) -> Deferred[list[MessageInfo]]:
        d = self.store_flags_if_unchanged(uids, flags, mode, None)
        return d.addCallback(lambda result: result[0])

    def store_flags_if_unchanged(
        self, uids: Iterable[int], flags: Iterable[str], mode: str, unchangedsince: int | None
    ) -> Deferred[tuple[list[MessageInfo], list[int]]]:
        def job(wanted: list[int], flags: frozenset[str]) -> tuple[list[MessageInfo], list[int]]:
            folder = self._folder()
            changed, modified = [], []
            for uid in wanted:
                message = folder.messages.get(uid)
                if message is None:
                    continue
                if unchangedsince is not None and message.modseq > unchangedsince:
                    modified.append(uid)
                    continue
                if mode == "+":
                    new = message.flags | flags
                elif mode == "-":
                    new = message.flags - flags
                else:
                    new = flags
                if new != message.flags:
                    changed.append((message, new))
            if not changed:
                return [], modified
            modseq = folder.next_modseq()
            for message, new in changed:
                message.flags, message.modseq = new, modseq
            self._changed()
            infos = [
                MessageInfo(m.uid, m.flags, len(m.content), m.internaldate, m.modseq)
                for m, _new in changed
            ]
            return infos, modified

        wanted = frozenset(f for f in flags if f != "\\Recent")
        return self._do(job, sorted(set(uids)), wanted)

    def append_within_quota(
        self, items: Iterable[tuple[MessageSource, Iterable[str], float | None]], limit: int
    ) -> Deferred[tuple[int, list[int]]]:
        return self.append_many(items, limit)

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:
        def job(wanted: list[int]) -> list[int]:
            folder = self._folder()
            removed = [uid for uid in wanted if uid in folder.messages]
            if not removed:
                return []
            modseq = folder.next_modseq()
            for uid in removed:
                del folder.messages[uid]
                for values in folder.derived.values():
                    values.pop(uid, None)
                folder.expunged.append((uid, modseq))
            self._changed()
            return removed

        return self._do(job, sorted(set(uids)))

    def append(
        self, source: MessageSource, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> Deferred[tuple[int, int]]:
        def add(content: bytes) -> tuple[int, int]:
            folder = self._folder()
            uid = folder.add(content, flags, internaldate)
            self._changed()
            return folder.uidvalidity, uid

        flags = list(flags)
        return self._store._read(source).addCallback(lambda content: self._do(add, content))

    def append_many(
        self,
        items: Iterable[tuple[MessageSource, Iterable[str], float | None]],
        limit: int | None = None,
    ) -> Deferred[tuple[int, list[int]]]:
        """Every message is read first; they are added in one step, so all or none (and,
        with ``limit``, the owner's usage is compared in that step: ``IQuotaAppend``)."""
        batch = [(source, list(flags), date) for source, flags, date in items]

        def add(contents: list[bytes]) -> tuple[int, list[int]]:
            if limit is not None:
                used = sum(f.size() for f in self._store._account(self.user).folders.values())
                octets = sum(len(content) for content in contents)
                if used + octets > limit:
                    raise QuotaExceeded(f"{self.user} holds {used} octets; {octets} more")
            folder = self._folder()
            uids = [
                folder.add(content, flags, date)
                for content, (_source, flags, date) in zip(contents, batch, strict=True)
            ]
            self._changed()
            return folder.uidvalidity, uids

        reads = gatherResults(
            [self._store._read(source) for source, _f, _d in batch], consumeErrors=True
        )
        reads.addErrback(lambda failure: failure.value.subFailure)
        return reads.addCallback(lambda contents: self._do(add, contents))

    def copy(self, uids: Iterable[int], target: MemoryMailbox) -> Deferred[list[tuple[int, int]]]:
        def job(wanted: list[int]) -> list[tuple[int, int]]:
            source, destination = self._folder(), target._folder()
            pairs = []
            for uid in wanted:
                message = source.messages.get(uid)
                if message is not None:
                    new = destination.add(
                        message.content, message.flags, message.internaldate, message.emailid
                    )
                    pairs.append((uid, new))
            if pairs:
                target._changed()
            return pairs

        return self._do(job, sorted(set(uids)))


@implementer(IMailStore, IMetadataStore, IAclStore)
class MemoryStore:
    """Every user's mailboxes, in memory; see the module docstring for what that costs.

    ``reactor`` and ``pool`` (both optional) are where a message that arrives as a file is
    read, and how IDLE watchers are told of changes on the next turn of the reactor; without
    them everything happens before each call returns.
    """

    def __init__(self, reactor: Any = None, pool: ThreadPool | None = None) -> None:
        self._reactor = reactor
        self._pool = pool
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.RLock()
        self.changes = ChangeBus()
        self.acl = AclTable(":memory:")  # RFC 4314 ACLs (store/acl.py), gone with the process
        self.max_mailboxes = 0  # mailboxes a user may have, INBOX too (0: no limit)

    # -- helpers -----------------------------------------------------------------------------

    def _do(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        try:
            with self._lock:
                return succeed(fn(*args))
        except Exception:
            return fail()

    def _read(self, source: MessageSource) -> Deferred[bytes]:
        """The message in its CRLF form; a file is read in the pool when there is one."""

        def read() -> bytes:
            return lineends.crlf_form(source.read())

        if source.data is None and self._pool is not None:
            return threads.deferToThreadPool(self._reactor, self._pool, read)
        return self._do(read)

    @staticmethod
    def _key(user: str, mailbox: str) -> str:
        return f"{user}\0{mailbox}"

    def _changed(self, user: str, mailbox: str) -> None:
        if not self.changes.wanted():
            return
        key = self._key(user, mailbox)
        if self._reactor is not None:
            self._reactor.callFromThread(self.changes.publish, key)  # after the reply
        else:
            self.changes.publish(key)

    def _account(self, user: str) -> _Account:
        """The user's mailboxes, created on first use (the lazy provisioning)."""
        user = _owner(user)
        account = self._accounts.get(user)
        if account is None:
            account = self._accounts[user] = _Account()
            account.folders[INBOX] = _Folder()
            for name in DEFAULT_MAILBOXES:
                account.folders[name] = _Folder()
            account.subscriptions = list(DEFAULT_MAILBOXES)
        return account

    def _existing(self, user: str, mailbox: str) -> tuple[str, _Folder]:
        name = _canonical(mailbox)
        folder = self._account(user).folders.get(name)
        if folder is None:
            raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return name, folder

    # -- IMailStore --------------------------------------------------------------------------

    def provision(self, user: str) -> Deferred[None]:
        """Creates the mailboxes now; done anyway on first use (see the module docstring)."""

        def job() -> None:
            self._account(user)

        return self._do(job)

    def remove_user(self, user: str) -> Deferred[None]:
        def job() -> None:
            self._accounts.pop(_owner(user), None)
            self.acl.deleted(_owner(user), None)

        return self._do(job)

    def location(self, user: str) -> str:
        return "the memory of the running server (lost when it stops)"

    def deliver(
        self,
        recipients: Iterable[tuple[str, str]],
        source: MessageSource,
        internaldate: float | None = None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> Deferred[dict[tuple[str, str], int]]:
        def add(content: bytes, targets: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
            folders = {target: self._existing(*target) for target in targets}  # all or none
            results = {}
            emailid = objectids.new_emailid()  # one message in every mailbox (RFC 8474)
            for (user, mailbox), (name, folder) in folders.items():
                copy_flags = flags.get((user, mailbox), ()) if flags else ()
                results[(user, mailbox)] = folder.add(content, copy_flags, internaldate, emailid)
                self._changed(_owner(user), name)
            return results

        targets = list(dict.fromkeys(recipients))
        return self._read(source).addCallback(lambda content: self._do(add, content, targets))

    def open(self, user: str, mailbox: str) -> Deferred[MemoryMailbox]:
        def job() -> MemoryMailbox:
            name, _folder = self._existing(user, mailbox)
            return MemoryMailbox(self, _owner(user), name)

        return self._do(job)

    def open_selected(
        self, user: str, mailbox: str, claim_recent: bool
    ) -> Deferred[tuple[MemoryMailbox, MailboxSelection]]:
        def job() -> tuple[MemoryMailbox, MailboxSelection]:
            name, _folder = self._existing(user, mailbox)
            opened = MemoryMailbox(self, _owner(user), name)
            return opened, opened._select(claim_recent)

        return self._do(job)

    def list_mailboxes(self, user: str) -> Deferred[list[str]]:
        def job() -> list[str]:
            names = sorted(n for n in self._account(user).folders if n != INBOX)
            return [INBOX, *names]

        return self._do(job)

    def create_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        def job() -> None:
            name = _canonical(mailbox)
            folders = self._account(user).folders
            if name in folders:
                raise MailboxExists(f"mailbox {mailbox!r} exists")
            check_room(len(folders), self.max_mailboxes, name)
            folders[name] = _Folder()

        return self._do(job)

    def delete_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        def job() -> None:
            name = _canonical(mailbox)
            if name == INBOX:
                raise InvalidMailboxName("INBOX can't be deleted")
            self._existing(user, name)
            del self._account(user).folders[name]
            self.acl.deleted(_owner(user), name)
            self._changed(_owner(user), name)

        return self._do(job)

    def rename_mailbox(self, user: str, old: str, new: str) -> Deferred[None]:
        return self._do(self._rename, user, old, new)

    def _rename(self, user: str, old: str, new: str) -> None:
        account = self._account(user)
        old_name, folder = self._existing(user, old)
        new_name = _canonical(new)
        if new_name == INBOX or new_name in account.folders:
            raise MailboxExists(f"mailbox {new!r} exists")
        if old_name == INBOX:
            # RFC 3501 §6.3.5: INBOX's messages move to the new mailbox; INBOX stays, empty.
            moved = account.folders[new_name] = _Folder()
            for message in folder.messages.values():
                moved.add(message.content, message.flags, message.internaldate, message.emailid)
            if folder.messages:
                modseq = folder.next_modseq()
                folder.expunged.extend((uid, modseq) for uid in folder.messages)
                folder.messages.clear()
                folder.derived.clear()
                self._changed(_owner(user), INBOX)
            return
        if new_name.startswith(old_name + "/"):
            raise InvalidMailboxName("can't rename a mailbox into its own child")
        moves = [
            (name, new_name + name[len(old_name) :])
            for name in account.folders
            if name == old_name or name.startswith(old_name + "/")
        ]
        if any(renamed in account.folders for _name, renamed in moves):
            raise MailboxExists(f"mailbox {new!r} has a child that exists")
        for name, renamed in moves:
            account.folders[renamed] = account.folders.pop(name)
        self.acl.renamed(_owner(user), old_name, new_name)
        account.subscriptions = [
            new_name + s[len(old_name) :] if s == old_name or s.startswith(old_name + "/") else s
            for s in account.subscriptions
        ]

    def subscriptions(self, user: str) -> Deferred[list[str]]:
        return self._do(lambda: list(self._account(user).subscriptions))

    def _metadata(self, user: str, mailbox: str | None) -> dict[str, bytes]:
        if mailbox is None:
            return self._account(user).metadata
        return self._existing(user, mailbox)[1].metadata  # moves and goes with its folder

    def get_metadata(self, user: str, mailbox: str | None) -> Deferred[dict[str, bytes]]:
        return self._do(lambda: dict(self._metadata(user, mailbox)))

    def set_metadata(
        self,
        user: str,
        mailbox: str | None,
        changes: dict[str, bytes | None],
        limit: int | None = None,
    ) -> Deferred[None]:
        def job() -> None:
            entries = self._metadata(user, mailbox)
            after = metadata_changed(entries, changes, limit)
            entries.clear()
            entries.update(after)

        return self._do(job)

    def _acl_mailbox(self, user: str, mailbox: str) -> str:
        """The canonical name of an existing mailbox; a user never seen has none (an ACL
        question must not create the account)."""
        account = self._accounts.get(_owner(user))
        name = _canonical(mailbox)
        if account is None or name not in account.folders:
            raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return name

    def get_acl(self, user: str, mailbox: str) -> Deferred[dict[str, str]]:
        return self._do(lambda: self.acl.get(_owner(user), self._acl_mailbox(user, mailbox)))

    def set_acl(
        self, user: str, mailbox: str, identifier: str, rights: str | None
    ) -> Deferred[None]:
        def job() -> None:
            self.acl.set(_owner(user), self._acl_mailbox(user, mailbox), identifier, rights)

        return self._do(job)

    def change_acl(self, user: str, mailbox: str, identifier: str, change: str) -> Deferred[str]:
        return self._do(
            lambda: self.acl.change(
                _owner(user), self._acl_mailbox(user, mailbox), identifier, change
            )
        )

    def shared_with(self, identifiers: list[str]) -> Deferred[dict]:
        return self._do(self.acl.granted, list(identifiers))

    def subscribe(self, user: str, mailbox: str, subscribed: bool) -> Deferred[None]:
        def job() -> None:
            name = _canonical(mailbox)
            names = self._account(user).subscriptions
            if subscribed and name not in names:
                names.append(name)
            elif not subscribed and name in names:
                names.remove(name)

        return self._do(job)

    def access_key(self, user: str, mailbox: str, create: bool = True) -> Deferred[bytes | None]:
        def job() -> bytes | None:
            account = self._accounts.get(_owner(user))
            if account is None:
                return None
            key = account.access_keys.get(mailbox)
            if key is None and create:
                key = account.access_keys[mailbox] = secrets.token_bytes(32)
            return key

        return self._do(job)

    def reset_access_keys(self, user: str, mailbox: str | None = None) -> Deferred[None]:
        def job() -> None:
            keys = self._account(user).access_keys
            if mailbox is None:
                keys.clear()
            else:
                keys.pop(mailbox, None)

        return self._do(job)

    def usage(self, user: str) -> Deferred[int]:
        return self._do(lambda: sum(f.size() for f in self._account(user).folders.values()))
