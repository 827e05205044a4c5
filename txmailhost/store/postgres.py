"""An ``IMailStore`` in PostgreSQL: every node that reaches the database serves the same mail.

Why PostgreSQL: one Maildir lives on one machine's disk; a database that several txmailhost
nodes share lets a user's sessions land on any node (issue 22). What is stored where is in
``postgres_schema.py``; how to configure it, in docs/scaling.rst.

How it keeps the store's promises across nodes:

- *UIDs and MODSEQs* are allocated inside the committing transaction, under the mailbox row's
  lock (``UPDATE mailboxes ... RETURNING``): two nodes appending at once get distinct UIDs,
  and a UID becomes visible only after every smaller one has committed (or failed), so an
  IMAP client never sees UID 7 and later UID 6.
- *Durability*: ``append``/``deliver`` fire after COMMIT, which PostgreSQL makes durable
  (``synchronous_commit``, on by default, fsyncs the WAL) before it answers.
- *Bodies* are streamed into ``message_chunks`` 1 MiB at a time, before the mailbox row is
  locked, so a large upload never holds up other writers; a copy duplicates chunks inside the
  server (``INSERT ... SELECT``), without the bytes crossing the network; ``open_message``
  reads one chunk at a time into a spooled file. With ``[store] blobs = "s3"`` a body goes
  instead to an object store (``s3blobs.py``) before the transaction naming it commits; its
  copies share the object, which is deleted after the last row naming it is (``_forget``).
- *Change notification*: each write sends ``NOTIFY txmailhost_changes`` in its transaction
  (delivered on commit); a listener thread per store (started with the first watcher) relays
  other nodes' notifications to this process's ``ChangeBus``, so IDLE on node B sees a delivery
  made on node A. This process's own changes are published directly after the commit.

The work runs in the store's thread pool with synchronous psycopg, one connection per pool
thread (kept in a thread-local), as the Maildir store runs its disk work: the reactor never
waits on the database. Without a pool (the admin CLI) each call runs before it returns.
"""

from __future__ import annotations

import io
import secrets
import tempfile
import threading
import time
import uuid
import weakref
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost.store import acl as acl_rights
from txmailhost.store import lineends, objectids
from txmailhost.store.changes import ChangeBus
from txmailhost.store.interfaces import (
    DEFAULT_MAILBOXES,
    INBOX,
    SEEN,
    IAclStore,
    IMailbox,
    IMailStore,
    IMessageRanges,
    IMetadataStore,
    IndexColumns,
    InvalidMailboxName,
    IQuotaAppend,
    IQuotaDelivery,
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
    StoreError,
    TooManyEntries,
    check_room,
)
from txmailhost.store.memory import _canonical, _owner
from txmailhost.store.pgconn import usable
from txmailhost.store.postgres_listen import PostgresListener, listening
from txmailhost.store.postgres_schema import upgrade

if TYPE_CHECKING:
    from txmailhost.store.s3blobs import S3Blobs

log = Logger(namespace="txmailhost.store")

T = TypeVar("T")

CHANNEL = "txmailhost_changes"
CHUNK = 1 << 20  # octets per message_chunks row
_SPOOL = 1 << 20  # open_message keeps up to this much in memory, the rest in a temporary file
_INDEX = "uid, flags, size, internaldate, modseq"


class DatabaseUnavailable(StoreError):
    """The database could not be reached or the connection broke: retrying may help."""


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _key(user: str, mailbox: str) -> str:
    """The ChangeBus key and NOTIFY payload of a mailbox: names hold no tab (no controls)."""
    return f"{user}\t{mailbox}"


def _write_acl(conn: Any, box: int, identifier: str, rights: str | None) -> None:
    """``identifier``'s entry on the mailbox row ``box`` set to ``rights``; None or ""
    removes it."""
    if rights:
        conn.execute(
            "INSERT INTO mailbox_acl (mailbox_id, identifier, rights) VALUES (%s, %s, %s)"
            " ON CONFLICT (mailbox_id, identifier) DO UPDATE SET rights = EXCLUDED.rights",
            (box, identifier, rights),
        )
    else:
        conn.execute(
            "DELETE FROM mailbox_acl WHERE mailbox_id = %s AND identifier = %s", (box, identifier)
        )


class _Flags:
    """One frozenset per distinct flag list, shared by every message that has it."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, ...], frozenset[str]] = {}

    def __call__(self, flags: list[str]) -> frozenset[str]:
        key = tuple(flags)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = frozenset(flags)
        return found


def _stored(row: tuple[Any, ...], flags: _Flags) -> StoredMessage:
    uid, flag_list, size, internaldate, modseq = row[:5]
    return StoredMessage(uid, flags(flag_list), size, internaldate, modseq)


class _Body:
    """A message read in ``CHUNK`` pieces turned into its CRLF form, counting as it goes and
    keeping the header block (up to the first blank line; a message without one is all
    header) for the index row."""

    def __init__(self) -> None:
        self.size = self.chunks = 0
        self._head = b""
        self._header: bytes | None = None

    @property
    def header(self) -> bytes:
        return self._header if self._header is not None else self._head

    def pieces(self, f: BinaryIO) -> Iterator[bytes]:
        after_cr = False
        while raw := f.read(CHUNK):
            data = lineends.convert_chunk(raw, after_cr)
            after_cr = raw.endswith(b"\r")
            if self._header is None:
                self._head += data
                end = lineends.header_end(self._head)
                if end >= 0:
                    self._header, self._head = self._head[:end], b""
            self.size += len(data)
            self.chunks += 1
            yield data


@implementer(IMailbox, IMessageRanges, IQuotaAppend)
class PostgresMailbox:
    """One opened mailbox: the owner, the name, and the row it was found in."""

    def __init__(self, store: PostgresStore, user: str, name: str, mailbox_id: int) -> None:
        self._store = store
        self.user = user
        self.name = name
        self.id = mailbox_id

    def _run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._store._run(fn, *args)

    def _lock(self, conn: Any, exclusive: bool) -> tuple[int, int, int, int]:
        """(uidvalidity, uidnext, highestmodseq, recent_uid) with the mailbox row locked:
        ``exclusive`` for a writer, shared for a reader that needs the index to agree with
        them. Fails with NoSuchMailbox when the mailbox was deleted or renamed meanwhile (as
        the memory and Maildir stores, which find a mailbox by its name: a session that has
        it selected is told so, ``imap/updates.py``)."""
        row = conn.execute(  # by its name too: renamed, it is not the mailbox opened
            "SELECT uidvalidity, uidnext, highestmodseq, recent_uid FROM mailboxes"
            f" WHERE id = %s AND name = %s FOR {'UPDATE' if exclusive else 'SHARE'}",
            (self.id, self.name),
        ).fetchone()
        if row is None:
            raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")
        return row

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Deferred[MailboxSnapshot]:
        def job(conn: Any) -> MailboxSnapshot:
            with conn.transaction():
                uidvalidity, uidnext, highestmodseq, _recent = self._lock(conn, False)
                rows = conn.execute(
                    f"SELECT {_INDEX} FROM messages WHERE mailbox_id = %s ORDER BY uid",
                    (self.id,),
                ).fetchall()
            flags = _Flags()
            return MailboxSnapshot(
                self.name,
                uidvalidity,
                uidnext,
                highestmodseq,
                tuple(MessageInfo(r[0], flags(r[1]), r[2], r[3], r[4]) for r in rows),
            )

        return self._run(job)

    def open_message(self, uid: int) -> Deferred[BinaryIO]:
        def job(conn: Any) -> BinaryIO:
            with conn.transaction():
                row = conn.execute(
                    "SELECT id, chunks, blob FROM messages WHERE mailbox_id = %s AND uid = %s"
                    " FOR SHARE",  # not expunged while its chunks (or its object) are read
                    (self.id, uid),
                ).fetchone()
                if row is None:
                    raise NoSuchMessage(f"UID {uid} is not in {self.name}")
                return self._store._read_chunks(conn, row[0], row[1], row[2])

        return self._run(job)

    def open_range(self, uid: int, offset: int, length: int) -> Deferred[tuple[BinaryIO, int]]:
        """A ranged GET for a body in the object store; a body in ``message_chunks`` is read
        whole, as ``open_message`` does (its chunks' CRLF boundaries aren't at fixed octets)."""

        def job(conn: Any) -> tuple[BinaryIO, int]:
            with conn.transaction():
                row = conn.execute(
                    "SELECT id, chunks, blob FROM messages WHERE mailbox_id = %s AND uid = %s"
                    " FOR SHARE",
                    (self.id, uid),
                ).fetchone()
                if row is None:
                    raise NoSuchMessage(f"UID {uid} is not in {self.name}")
                message_id, chunks, blob = row
                if blob is None:
                    return self._store._read_chunks(conn, message_id, chunks), 0
                return self._store._read_object_range(blob, offset, length), offset

        return self._run(job)

    def select(self, claim_recent: bool) -> Deferred[MailboxSelection]:
        return self._run(self._select, claim_recent)

    def _select(self, conn: Any, claim_recent: bool) -> MailboxSelection:
        with conn.transaction():
            uidvalidity, uidnext, highestmodseq, first_recent = self._lock(conn, claim_recent)
            if claim_recent and uidnext > first_recent:
                conn.execute(
                    "UPDATE mailboxes SET recent_uid = %s WHERE id = %s", (uidnext, self.id)
                )
            rows = conn.execute(
                "SELECT uid, flags FROM messages WHERE mailbox_id = %s ORDER BY uid", (self.id,)
            ).fetchall()
            (mailboxid,) = conn.execute(
                "SELECT objectid FROM mailboxes WHERE id = %s", (self.id,)
            ).fetchone()
        uids = array("I")
        unseen, first_unseen = 0, 0
        keywords: set[str] = set()
        for position, (uid, flags) in enumerate(rows, 1):
            uids.append(uid)
            if SEEN not in flags:
                unseen += 1
                first_unseen = first_unseen or position
            keywords.update(f for f in flags if not f.startswith("\\"))
        return MailboxSelection(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            highestmodseq=highestmodseq,
            uids=uids,
            first_unseen=first_unseen,
            unseen=unseen,
            first_recent=first_recent,
            keywords=frozenset(keywords),
            mailboxid=mailboxid,
        )

    def claim_recent(self, upto: int) -> Deferred[int]:
        def job(conn: Any) -> int:
            with conn.transaction():
                first = self._lock(conn, True)[3]
                if upto > first:
                    conn.execute(
                        "UPDATE mailboxes SET recent_uid = %s WHERE id = %s", (upto, self.id)
                    )
            return first

        return self._run(job)

    def status(self) -> Deferred[MailboxStatus]:
        def job(conn: Any) -> MailboxStatus:
            row = conn.execute(
                "SELECT b.uidvalidity, b.uidnext, b.highestmodseq, b.objectid,"
                " count(m.uid), count(m.uid) FILTER (WHERE m.uid >= b.recent_uid),"
                " count(m.uid) FILTER (WHERE NOT (%s = ANY (m.flags))), coalesce(sum(m.size), 0)"
                " FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id"
                " WHERE b.id = %s GROUP BY b.id",
                (SEEN, self.id),
            ).fetchone()
            if row is None:
                raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")
            uidvalidity, uidnext, highestmodseq, mailboxid, messages, recent, unseen, size = row
            return MailboxStatus(
                messages=messages,
                recent=recent,
                unseen=unseen,
                uidvalidity=uidvalidity,
                uidnext=uidnext,
                highestmodseq=highestmodseq,
                size=int(size),
                mailboxid=mailboxid,
            )

        return self._run(job)

    def changes_since(self, modseq: int) -> Deferred[MailboxChanges]:
        def job(conn: Any) -> MailboxChanges:
            with conn.transaction():
                highest = self._lock(conn, False)[2]
                changed = conn.execute(
                    f"SELECT {_INDEX} FROM messages WHERE mailbox_id = %s AND modseq > %s"
                    " ORDER BY uid",
                    (self.id, modseq),
                ).fetchall()
                gone = conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = %s AND modseq > %s ORDER BY uid",
                    (self.id, modseq),
                ).fetchall()
            flags = _Flags()
            return MailboxChanges(
                highest, tuple(_stored(r, flags) for r in changed), tuple(r[0] for r in gone)
            )

        return self._run(job)

    def messages(
        self, uids: Iterable[int], header: bool = False, content: bool = False
    ) -> Deferred[list[StoredMessage]]:
        def job(conn: Any, wanted: list[int]) -> list[StoredMessage]:
            flags = _Flags()
            with conn.transaction():
                rows = conn.execute(
                    f"SELECT {_INDEX}, header, id, blob FROM messages"
                    " WHERE mailbox_id = %s AND uid = ANY (%s) ORDER BY uid"
                    + (" FOR SHARE" if content else ""),
                    (self.id, wanted),
                ).fetchall()
                bodies: dict[int, list[bytes]] = {}
                objects = {r[6]: r[7] for r in rows if r[7] is not None} if content else {}
                if objects:  # in the object store: GETs, several at once
                    found = self._store._need_blobs().read_many(objects.values())
                    bodies.update({mid: [found[key]] for mid, key in objects.items()})
                if content and len(bodies) < len(rows):
                    for message_id, data in conn.execute(
                        "SELECT message_id, data FROM message_chunks"
                        " WHERE message_id = ANY (%s) ORDER BY message_id, seq",
                        ([r[6] for r in rows],),
                    ):
                        bodies.setdefault(message_id, []).append(data)
            return [
                _stored(r, flags)._replace(
                    header=bytes(r[5]) if header else None,
                    content=b"".join(bodies.get(r[6], ())) if content else None,
                )
                for r in rows
            ]

        return self._run(job, sorted(set(uids)))

    def columns(self, uids: Iterable[int]) -> Deferred[IndexColumns]:
        def job(conn: Any, wanted: list[int]) -> IndexColumns:
            rows = conn.execute(
                f"SELECT {_INDEX} FROM messages WHERE mailbox_id = %s AND uid = ANY (%s)"
                " ORDER BY uid",
                (self.id, wanted),
            ).fetchall()
            flags = _Flags()
            return IndexColumns(
                array("I", (r[0] for r in rows)),
                [flags(r[1]) for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
                [r[4] for r in rows],
            )

        return self._run(job, sorted(set(uids)))

    def uid_range(self, low: int, high: int) -> Deferred[list[StoredMessage]]:
        def job(conn: Any) -> list[StoredMessage]:
            rows = conn.execute(
                f"SELECT {_INDEX} FROM messages WHERE mailbox_id = %s AND uid BETWEEN %s AND %s"
                " ORDER BY uid",
                (self.id, low, high),
            ).fetchall()
            flags = _Flags()
            return [_stored(r, flags) for r in rows]

        return self._run(job)

    def expunged_since(self, modseq: int) -> Deferred[list[int]]:
        def job(conn: Any) -> list[int]:
            rows = conn.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = %s AND modseq > %s ORDER BY uid",
                (self.id, modseq),
            ).fetchall()
            return [r[0] for r in rows]

        return self._run(job)

    def origins(self, uids: Iterable[int]) -> Deferred[dict[int, MessageOrigin]]:
        def job(conn: Any, wanted: list[int]) -> dict[int, MessageOrigin]:
            rows = conn.execute(
                "SELECT uid, emailid, coalesce(savedate, internaldate) FROM messages"
                " WHERE mailbox_id = %s AND uid = ANY (%s)",
                (self.id, wanted),
            ).fetchall()
            return {uid: MessageOrigin(emailid, savedate) for uid, emailid, savedate in rows}

        return self._run(job, list(uids))

    def derived(self, uids: Iterable[int], name: str) -> Deferred[dict[int, bytes]]:
        def job(conn: Any, wanted: list[int]) -> dict[int, bytes]:
            rows = conn.execute(
                "SELECT m.uid, d.value FROM derived d JOIN messages m ON m.id = d.message_id"
                " WHERE m.mailbox_id = %s AND m.uid = ANY (%s) AND d.name = %s",
                (self.id, wanted, name),
            ).fetchall()
            return {uid: bytes(value) for uid, value in rows}

        return self._run(job, list(uids))

    def remember(self, name: str, values: dict[int, bytes]) -> Deferred[None]:
        def job(conn: Any, values: dict[int, bytes]) -> None:
            if not values:
                return
            uids = list(values)
            with conn.transaction():
                # The mailbox shared, as a reader: an EXPUNGE (which takes it exclusive) can't
                # delete a message between this SELECT and the INSERT's foreign-key check. The
                # messages' rows are then read and written in id order, so two sessions
                # remembering the same messages can't deadlock on the derived rows.
                try:
                    self._lock(conn, False)
                except NoSuchMailbox:
                    return  # deleted meanwhile: nothing left to remember it for
                ids = conn.execute(
                    "SELECT uid, id FROM messages WHERE mailbox_id = %s AND uid = ANY (%s)"
                    " ORDER BY id",
                    (self.id, uids),
                ).fetchall()
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO derived (message_id, name, value) VALUES (%s, %s, %s)"
                        " ON CONFLICT (message_id, name) DO UPDATE SET value = excluded.value",
                        [(message_id, name, values[uid]) for uid, message_id in ids],
                    )

        return self._run(job, dict(values))

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._store._watch(_key(self.user, self.name), callback)

    # -- changing ----------------------------------------------------------------------------

    def store_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: str
    ) -> Deferred[list[MessageInfo]]:
        d = self.store_flags_if_unchanged(uids, flags, mode, None)
        return d.addCallback(lambda result: result[0])

    def store_flags_if_unchanged(
        self, uids: Iterable[int], flags: Iterable[str], mode: str, unchangedsince: int | None
    ) -> Deferred[tuple[list[MessageInfo], list[int]]]:
        """The MODSEQs are compared in the transaction that holds the mailbox row: no other
        node's STORE can come between the comparison and the change."""

        def job(
            conn: Any, wanted: list[int], given: frozenset[str]
        ) -> tuple[list[MessageInfo], list[int]]:
            with conn.transaction():
                highest = self._lock(conn, True)[2]
                rows = conn.execute(
                    "SELECT uid, flags, size, internaldate, modseq FROM messages"
                    " WHERE mailbox_id = %s AND uid = ANY (%s) ORDER BY uid",
                    (self.id, wanted),
                ).fetchall()
                changed, modified = [], []
                for uid, old, size, internaldate, modseq in rows:
                    if unchangedsince is not None and modseq > unchangedsince:
                        modified.append(uid)
                        continue
                    current = frozenset(old)
                    if mode == "+":
                        new = current | given
                    elif mode == "-":
                        new = current - given
                    else:
                        new = given
                    if new != current:
                        changed.append((uid, new, size, internaldate))
                if not changed:
                    return [], modified
                modseq = highest + 1
                conn.execute(
                    "UPDATE mailboxes SET highestmodseq = %s WHERE id = %s", (modseq, self.id)
                )
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE messages SET flags = %s, modseq = %s"
                        " WHERE mailbox_id = %s AND uid = %s",
                        [(sorted(new), modseq, self.id, uid) for uid, new, _s, _d in changed],
                    )
                self._store._notify(conn, self.user, self.name)
            self._store._changed([(self.user, self.name)])
            infos = [MessageInfo(uid, new, size, date, modseq) for uid, new, size, date in changed]
            return infos, modified

        given = frozenset(f for f in flags if f != "\\Recent")
        return self._run(job, sorted(set(uids)), given)

    def expunge(self, uids: Iterable[int]) -> Deferred[list[int]]:
        def job(conn: Any, wanted: list[int]) -> list[int]:
            with conn.transaction():
                highest = self._lock(conn, True)[2]
                gone = conn.execute(
                    "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY (%s)"
                    " RETURNING uid, size, blob",
                    (self.id, wanted),
                ).fetchall()
                if not gone:
                    return []
                removed = sorted(uid for uid, _size, _blob in gone)
                modseq = highest + 1
                conn.execute(
                    "UPDATE mailboxes SET highestmodseq = %s, size = size - %s WHERE id = %s",
                    (modseq, sum(size for _uid, size, _blob in gone), self.id),
                )
                conn.execute(
                    "INSERT INTO expunged (mailbox_id, uid, modseq)"
                    " SELECT %s, unnest(%s::bigint[]), %s",
                    (self.id, removed, modseq),
                )
                self._store._notify(conn, self.user, self.name)
            self._store._changed([(self.user, self.name)])
            self._store._forget(conn, [blob for _uid, _size, blob in gone])
            return removed

        return self._run(job, sorted(set(uids)))

    def append(
        self, source: MessageSource, flags: Iterable[str] = (), internaldate: float | None = None
    ) -> Deferred[tuple[int, int]]:
        def job(conn: Any) -> tuple[int, int]:
            small = self._store._small(source)
            if small is not None:
                return self._store._add_small(conn, self, small, flags, internaldate)
            uidvalidity, uids = self._append(conn, [(source, flags, internaldate)])
            return uidvalidity, uids[0]

        flags = list(flags)
        return self._run(job)

    def append_many(
        self, items: Iterable[tuple[MessageSource, Iterable[str], float | None]]
    ) -> Deferred[tuple[int, list[int]]]:
        """One transaction: every message is stored, or (on any failure) none."""
        batch = [(source, list(flags), date) for source, flags, date in items]
        return self._run(self._append, batch)

    def append_within_quota(
        self, items: Iterable[tuple[MessageSource, Iterable[str], float | None]], limit: int
    ) -> Deferred[tuple[int, list[int]]]:
        """The bodies are stored first; then, under a lock of the owner's that every
        appender with a limit takes until its COMMIT, the usage is read and the messages
        added or refused: two nodes can't both add the message that fits once."""
        batch = [(source, list(flags), date) for source, flags, date in items]
        return self._run(self._append, batch, limit)

    def _append(
        self,
        conn: Any,
        batch: list[tuple[MessageSource, Iterable[str], float | None]],
        limit: int | None = None,
    ) -> tuple[int, list[int]]:
        store = self._store
        with conn.transaction():
            uploaded = [store._upload(conn, source) for source, _flags, _date in batch]
            octets = sum(size for _id, size, _chunks, _header, _blob in uploaded)
            if limit is not None:
                try:
                    store._hold_quota(conn, self.user, octets, limit)
                except QuotaExceeded:
                    # the chunk rows go with the rollback; objects are no row's
                    store._forget(conn, [blob for *_rest, blob in uploaded])
                    raise
            uidvalidity, first, modseq = store._allocate(
                conn, self.id, len(batch), octets, self.name
            )
            uids = list(range(first, first + len(batch)))
            for uid, (message_id, size, chunks, header, blob), (_s, flags, date) in zip(
                uids, uploaded, batch, strict=True
            ):
                store._insert(
                    conn, message_id, self.id, uid, modseq, flags, size, date, chunks, header,
                    blob=blob,
                )  # fmt: skip
            store._notify(conn, self.user, self.name)
        store._changed([(self.user, self.name)])
        return uidvalidity, uids

    def copy(self, uids: Iterable[int], target: PostgresMailbox) -> Deferred[list[tuple[int, int]]]:
        def job(conn: Any, wanted: list[int]) -> list[tuple[int, int]]:
            store = self._store
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, uid, flags, size, internaldate, chunks, header, emailid, blob"
                    " FROM messages WHERE mailbox_id = %s AND uid = ANY (%s) ORDER BY uid"
                    " FOR SHARE",
                    (self.id, wanted),
                ).fetchall()
                if not rows:
                    return []
                octets = sum(row[3] for row in rows)
                uidvalidity, first, modseq = store._allocate(
                    conn, target.id, len(rows), octets, target.name
                )
                pairs = []
                for new_uid, row in enumerate(rows, first):
                    old_id, uid, flags, size, date, chunks, header, emailid, blob = row
                    new_id = store._copy_chunks(conn, old_id, blob)  # a copy shares the object
                    store._insert(
                        conn, new_id, target.id, new_uid, modseq, flags, size, date, chunks, header,
                        emailid, blob,
                    )  # fmt: skip
                    pairs.append((uid, new_uid))
                store._notify(conn, target.user, target.name)
            store._changed([(target.user, target.name)])
            return pairs

        return self._run(job, sorted(set(uids)))


@implementer(IMailStore, IMetadataStore, IAclStore, IQuotaDelivery)
class PostgresStore:
    """Every user's mailboxes in the PostgreSQL database at ``dsn`` (a libpq connection string
    or URI). The schema is brought up to date when the store is made (``upgrade``).
    ``blobs``: the object store new message bodies go to (``[store] blobs = "s3"``); None
    keeps them in ``message_chunks``. Bodies already in either place are read from it."""

    def __init__(
        self,
        dsn: str,
        reactor: Any = None,
        pool: ThreadPool | None = None,
        migrate: bool = True,
        blobs: S3Blobs | None = None,
    ) -> None:
        if not dsn:
            raise StoreError('[store] backend = "postgres" needs [store] dsn')
        self._dsn = dsn
        self.blobs = blobs
        self._reactor = reactor
        self._pool = pool
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        self._origin = uuid.uuid4().hex[:12]  # this store's NOTIFY payloads say it sent them
        self.max_mailboxes = 0  # mailboxes a user may have, INBOX too (0: no limit)
        self._listener: PostgresListener | None = None
        self.changes = ChangeBus()
        if migrate:
            self.upgrade()
        if pool is not None and blobs is not None:
            blobs.check()  # a server: a misconfigured bucket stops it at start, not at mail
        if pool is not None:
            # A server: LISTEN before the first session can look at a mailbox, so no change
            # falls between a session's SELECT and the notices it will hear. Blocking, like
            # the upgrade above: the store is made before the reactor runs.
            self._listener = self._new_listener(self._listening())
            self._listener.start()

    # -- plumbing ----------------------------------------------------------------------------

    def upgrade(self) -> tuple[int, int]:
        """Apply the schema migrations the database lacks (blocking); (before, after)."""
        import psycopg

        try:
            conn = _connect(self._dsn)
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"mail database unavailable: {e}") from e
        try:
            return upgrade(conn)
        finally:
            conn.close()

    def _listening(self) -> Any:
        """A new connection in ``LISTEN txmailhost_changes``."""
        import psycopg

        try:
            return listening(self._dsn, CHANNEL)
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"mail database unavailable: {e}") from e

    def _new_listener(self, connection: Any = None) -> PostgresListener:
        """The thread relaying other nodes' notifications to ``_heard``; once LISTEN is in
        place (a change just before it sent no notice here), and again after reconnecting,
        every watcher looks (``_resync``). It holds the store weakly and ends within half a
        second of the store being dropped without ``close()`` (an embedding application, a
        test), so it never keeps a store alive."""
        ref = weakref.ref(self)

        def heard(payload: str) -> None:
            if (store := ref()) is not None:
                store._heard(payload)

        def listened() -> None:
            if (store := ref()) is not None:
                store._resync()

        return PostgresListener(
            self._dsn,
            CHANNEL,
            heard,
            name="txmailhost-pg-listen",
            connection=connection,
            listened=listened,
            alive=lambda: ref() is not None,
        )

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if not usable(conn):  # a connection the server closed meanwhile is replaced first
            if conn is not None:
                conn.close()
            conn = self._local.conn = _connect(self._dsn)
            with self._connections_lock:
                self._connections = [c for c in self._connections if not c.closed]
                self._connections.append(conn)
        return conn

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on this thread's connection; a lost database is a
        temporary ``StoreError`` (the SMTP server answers 4xx, IMAP NO)."""
        import psycopg

        try:
            return fn(self._connection(), *args)
        except psycopg.errors.DeadlockDetected as e:
            raise DatabaseUnavailable(f"database deadlock, try again: {e}") from e
        except psycopg.OperationalError as e:
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.broken:
                self._local.conn = None
            raise DatabaseUnavailable(f"mail database unavailable: {e}") from e

    def _run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            try:
                return succeed(self._call(fn, *args))
            except Exception:
                return fail()
        return threads.deferToThreadPool(self._reactor, self._pool, self._call, fn, *args)

    def close(self) -> None:
        """Close every connection and stop listening (at shutdown)."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        if self.blobs is not None:
            self.blobs.close()

    def _notify(self, conn: Any, user: str, mailbox: str) -> None:
        """Tell the other nodes, when this transaction commits, that the mailbox changed."""
        conn.execute(
            "SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._origin}\t{_key(user, mailbox)}")
        )

    def _changed(self, targets: Iterable[tuple[str, str]]) -> None:
        """After a commit, from the pool thread: wake this process's watchers."""
        if not self.changes._watchers:
            return
        for user, mailbox in dict.fromkeys(targets):
            if self._reactor is not None:
                self._reactor.callFromThread(self.changes.publish, _key(user, mailbox))
            else:
                self.changes.publish(_key(user, mailbox))

    def _watch(self, key: str, callback: Callable[[], None]) -> Callable[[], None]:
        # The watcher first: the listener's thread, once LISTEN is in place, wakes every
        # watcher (``_resync``), and it may get there before this thread goes on.
        stop = self.changes.watch(key, callback)
        if self._listener is None:  # no pool: listen from the first watcher on
            self._listener = self._new_listener()
            self._listener.start()
        return stop

    def _heard(self, payload: str) -> None:
        """A NOTIFY from the database (listener thread): another store's change."""
        origin, _sep, key = payload.partition("\t")
        if origin == self._origin or key not in self.changes._watchers:
            return
        # Local watchers only: every other process sharing the database heard it too.
        if self._reactor is not None:
            self._reactor.callFromThread(self.changes.publish_local, key)
        else:
            self.changes.publish_local(key)

    def _resync(self) -> None:
        """The listener (re)connected: NOTIFYs may have been missed, so every watcher looks."""
        for key in list(self.changes._watchers):
            if self._reactor is not None:
                self._reactor.callFromThread(self.changes.publish_local, key)
            else:
                self.changes.publish_local(key)

    # -- blocking helpers (pool thread, inside the caller's transaction) ---------------------

    def _user_id(self, conn: Any, user: str, create: bool = True) -> int | None:
        """The owner's row, made with INBOX, the default folders and their subscriptions on
        first use (lazy provisioning, as the memory store: any node may see a user first)."""
        address = _owner(user)
        row = conn.execute("SELECT id FROM mail_users WHERE address = %s", (address,)).fetchone()
        if row is not None or not create:
            return row[0] if row is not None else None
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO mail_users (address) VALUES (%s) ON CONFLICT (address) DO NOTHING"
                " RETURNING id",
                (address,),
            ).fetchone()
            if row is None:  # another node made it meanwhile
                row = conn.execute(
                    "SELECT id FROM mail_users WHERE address = %s", (address,)
                ).fetchone()
                return row[0]
            user_id = row[0]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO mailboxes (user_id, name) VALUES (%s, %s)",
                    [(user_id, name) for name in (INBOX, *DEFAULT_MAILBOXES)],
                )
                cur.executemany(
                    "INSERT INTO subscriptions (user_id, name) VALUES (%s, %s)",
                    [(user_id, name) for name in DEFAULT_MAILBOXES],
                )
        return user_id

    def _mailbox(self, conn: Any, user: str, mailbox: str) -> PostgresMailbox:
        name, address = _canonical(mailbox), _owner(user)
        row = conn.execute(  # one round trip for a user seen before: every delivery's case
            "SELECT b.id FROM mailboxes b JOIN mail_users u ON u.id = b.user_id"
            " WHERE u.address = %s AND b.name = %s",
            (address, name),
        ).fetchone()
        if row is None:
            user_id = self._user_id(conn, user)
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE user_id = %s AND name = %s", (user_id, name)
            ).fetchone()
        if row is None:
            raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return PostgresMailbox(self, address, name, row[0])

    @staticmethod
    def _small(source: MessageSource) -> tuple[bytes, bytes] | None:
        """(CRLF form, header block) of a message that fits one chunk, else None: such a
        message (most mail) is added in one statement, ``_add_small``."""
        data = source.data
        if data is None:
            with source.open() as f:
                data = f.read(CHUNK + 1)
        if len(data) > CHUNK:
            return None
        data = lineends.crlf_form(data)
        end = lineends.header_end(data)
        return data, data[:end] if end >= 0 else data

    def _add_small(
        self,
        conn: Any,
        box: PostgresMailbox,
        small: tuple[bytes, bytes],
        flags: Iterable[str],
        internaldate: float | None,
    ) -> tuple[int, int]:
        """Add a one-chunk message in one statement, its own transaction: UID and MODSEQ
        taken, row and chunk inserted, other nodes notified, committed, in one round trip
        (the mailbox row stays locked only for that statement and its commit)."""
        data, header = small
        # In the object store: acknowledged there before the statement naming it commits.
        blob = self.blobs.upload([data])[0] if self.blobs is not None else None
        row = conn.execute(
            "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + 1,"
            "   highestmodseq = highestmodseq + 1, size = size + %(size)s WHERE id = %(box)s"
            "   RETURNING id, uidvalidity, uidnext - 1 AS uid, highestmodseq),"
            " m AS (INSERT INTO messages (mailbox_id, uid, modseq, flags, size, internaldate,"
            "   chunks, header, blob) SELECT b.id, b.uid, b.highestmodseq, %(flags)s, %(size)s,"
            "   %(date)s, %(chunks)s, %(header)s, %(blob)s FROM b RETURNING id)"
            + (
                ", c AS (INSERT INTO message_chunks (message_id, seq, data)"
                "   SELECT m.id, 0, %(data)s FROM m)"
                if blob is None
                else ""
            )
            + " SELECT b.uidvalidity, b.uid, pg_notify(%(channel)s, %(payload)s) FROM b",
            {
                "box": box.id,
                "flags": sorted({f for f in flags if f != "\\Recent"}),
                "size": len(data),
                "date": internaldate if internaldate is not None else time.time(),
                "chunks": 1 if blob is None else 0,
                "header": header,
                "blob": blob,
                "data": data if blob is None else None,
                "channel": CHANNEL,
                "payload": f"{self._origin}\t{_key(box.user, box.name)}",
            },
        ).fetchone()
        if row is None:
            self._forget(conn, [blob])  # nothing was inserted: no row names it
            raise NoSuchMailbox(f"mailbox {box.name!r} no longer exists")
        self._changed([(box.user, box.name)])
        return row[0], row[1]

    def _upload(self, conn: Any, source: MessageSource) -> tuple[int, int, int, bytes, str | None]:
        """Stream the message, in its CRLF form, into chunk rows under a new message id, or
        into a new object of the object store; (id, CRLF size, chunks, header block, object
        key or None). The object is acknowledged by the store when this returns."""
        message_id = conn.execute("SELECT nextval('messages_id_seq')").fetchone()[0]
        body = _Body()
        with source.open() as f:
            if self.blobs is not None:
                blob, _size = self.blobs.upload(body.pieces(f))
                return message_id, body.size, 0, body.header, blob
            with conn.cursor() as cur:
                for seq, data in enumerate(body.pieces(f)):
                    cur.execute(
                        "INSERT INTO message_chunks (message_id, seq, data) VALUES (%s, %s, %s)",
                        (message_id, seq, data),
                    )
        return message_id, body.size, body.chunks, body.header, None

    def _copy_chunks(self, conn: Any, old_id: int, blob: str | None = None) -> int:
        """A new message id whose chunks are those of ``old_id``, copied inside the server;
        a message in the object store has no chunks: the copy names the same object."""
        new_id = conn.execute("SELECT nextval('messages_id_seq')").fetchone()[0]
        if blob is not None:
            return new_id
        conn.execute(
            "INSERT INTO message_chunks (message_id, seq, data)"
            " SELECT %s, seq, data FROM message_chunks WHERE message_id = %s",
            (new_id, old_id),
        )
        return new_id

    @staticmethod
    def _hold_quota(conn: Any, user: str, octets: int, limit: int, soft: bool = False) -> None:
        """Take ``user``'s quota lock until the transaction ends, then fail with
        ``QuotaExceeded`` when ``octets`` more would pass ``limit`` (``soft``: when the user
        holds ``limit`` or more already, so that one message may take them past it). The
        usage is read after the lock is held, so it counts what the previous holder
        committed."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"quota:{user}",))
        (used,) = conn.execute(
            "SELECT coalesce(sum(b.size), 0) FROM mailboxes b"
            " JOIN mail_users u ON u.id = b.user_id WHERE u.address = %s",
            (user,),
        ).fetchone()
        over = used >= limit if soft else used + octets > limit
        if over:
            raise QuotaExceeded(f"{user} holds {used} octets; {octets} more pass {limit}")

    def _allocate(
        self, conn: Any, mailbox_id: int, count: int, octets: int, name: str
    ) -> tuple[int, int, int]:
        """Take ``count`` UIDs and one MODSEQ from the mailbox for messages of ``octets`` in
        all, holding its row until commit; (uidvalidity, first UID, modseq)."""
        row = conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + %s, highestmodseq = highestmodseq + 1,"
            " size = size + %s WHERE id = %s RETURNING uidvalidity, uidnext - %s, highestmodseq",
            (count, octets, mailbox_id, count),
        ).fetchone()
        if row is None:
            raise NoSuchMailbox(f"mailbox {name!r} no longer exists")
        return row

    def _insert(
        self,
        conn: Any,
        message_id: int,
        mailbox_id: int,
        uid: int,
        modseq: int,
        flags: Iterable[str],
        size: int,
        internaldate: float | None,
        chunks: int,
        header: bytes,
        emailid: str | None = None,
        blob: str | None = None,
    ) -> None:
        """One message row, saved now (RFC 8514); ``emailid`` is the one of the message it
        copies (RFC 8474), a new one when None; ``blob`` the object holding its body."""
        conn.execute(
            "INSERT INTO messages (id, mailbox_id, uid, modseq, flags, size, internaldate,"
            " chunks, header, emailid, blob)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                message_id,
                mailbox_id,
                uid,
                modseq,
                sorted({f for f in flags if f != "\\Recent"}),
                size,
                internaldate if internaldate is not None else time.time(),
                chunks,
                header,
                emailid or objectids.new_emailid(),
                blob,
            ),
        )

    def _read_chunks(
        self, conn: Any, message_id: int, chunks: int, blob: str | None = None
    ) -> BinaryIO:
        """The message as a file: in memory when small, spilling to a temporary file when
        large, read from the database one chunk per query (or streamed from its object) so
        neither side holds it whole."""
        if blob is not None:
            spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - returned
            try:
                self._need_blobs().read_into(blob, spool)
            except BaseException:
                spool.close()
                raise
            spool.seek(0)
            return spool  # type: ignore[return-value]
        if chunks <= 1:
            row = conn.execute(
                "SELECT data FROM message_chunks WHERE message_id = %s", (message_id,)
            ).fetchone()
            return io.BytesIO(bytes(row[0]) if row else b"")
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - returned open
        for seq in range(chunks):
            row = conn.execute(
                "SELECT data FROM message_chunks WHERE message_id = %s AND seq = %s",
                (message_id, seq),
            ).fetchone()
            spool.write(row[0])
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def _read_object_range(self, blob: str, offset: int, length: int) -> BinaryIO:
        """Octets ``[offset, offset + length)`` of an object, streamed into a spooled file."""
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - returned
        try:
            self._need_blobs().read_into(blob, spool, offset, length)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def _need_blobs(self) -> S3Blobs:
        """The object store, for reading a body kept there."""
        if self.blobs is None:
            raise StoreError(
                'this message\'s body is in the object store: set [store] blobs = "s3" and'
                " its s3_* keys"
            )
        return self.blobs

    @staticmethod
    def _objects(conn: Any, where: str, *args: Any) -> list[str]:
        """The objects named by the messages ``where`` picks, before they are deleted."""
        rows = conn.execute(
            f"SELECT blob FROM messages WHERE blob IS NOT NULL AND {where}",  # noqa: S608
            args,
        ).fetchall()
        return [r[0] for r in rows]

    def _forget(self, conn: Any, objects: Iterable[str | None]) -> None:
        """After the commit that deleted rows naming ``objects``: delete those no row names
        any more (copies share an object). Never before the commit, so a rolled-back
        deletion keeps its bodies; a failure here leaves orphans, which ``db gc`` reaps."""
        keys = list(dict.fromkeys(k for k in objects if k is not None))
        if not keys or self.blobs is None:
            return
        try:
            named = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT blob FROM messages WHERE blob = ANY (%s)", (keys,)
                )
            }
            self.blobs.delete(k for k in keys if k not in named)
        except Exception as e:
            log.warn(
                "could not delete {count} objects of removed messages ({error});"
                " `txmailhost db gc` will",
                count=len(keys),
                error=str(e),
            )

    # -- IMailStore --------------------------------------------------------------------------

    def provision(self, user: str) -> Deferred[None]:
        def job(conn: Any) -> None:
            self._user_id(conn, user)

        return self._run(job)

    def remove_user(self, user: str) -> Deferred[None]:
        def job(conn: Any) -> None:
            with conn.transaction():  # ACLs and METADATA entries go by cascade
                objects = self._objects(
                    conn,
                    "mailbox_id IN (SELECT b.id FROM mailboxes b JOIN mail_users u"
                    " ON u.id = b.user_id WHERE u.address = %s)",
                    _owner(user),
                )
                conn.execute("DELETE FROM mail_users WHERE address = %s", (_owner(user),))
                # and the rights granted to the user, so that an account made later under
                # the address doesn't inherit them (negative entries only take rights away)
                conn.execute("DELETE FROM mailbox_acl WHERE identifier = %s", (_owner(user),))
            self._forget(conn, objects)

        return self._run(job)

    # -- IAclStore (RFC 4314; rights and identifiers checked by store/acl.py) ----------------

    def _acl_mailbox_id(self, conn: Any, user: str, mailbox: str, lock: bool = False) -> int:
        """The row of an existing mailbox; never provisions (another user asking about
        ``Other Users/x@example.org/INBOX`` creates nothing). ``lock``: the row locked ``FOR
        UPDATE`` until the transaction ends."""
        row = conn.execute(
            "SELECT b.id FROM mailboxes b JOIN mail_users u ON u.id = b.user_id"
            " WHERE u.address = %s AND b.name = %s" + (" FOR UPDATE OF b" if lock else ""),
            (_owner(user), _canonical(mailbox)),
        ).fetchone()
        if row is None:
            raise NoSuchMailbox(f"no mailbox {mailbox!r}")
        return row[0]

    def get_acl(self, user: str, mailbox: str) -> Deferred[dict[str, str]]:
        def job(conn: Any) -> dict[str, str]:
            box = self._acl_mailbox_id(conn, user, mailbox)
            rows = conn.execute(
                "SELECT identifier, rights FROM mailbox_acl WHERE mailbox_id = %s", (box,)
            )
            return dict(rows.fetchall())

        return self._run(job)

    def set_acl(
        self, user: str, mailbox: str, identifier: str, rights: str | None
    ) -> Deferred[None]:
        def job(conn: Any) -> None:
            _write_acl(conn, self._acl_mailbox_id(conn, user, mailbox), identifier, rights)

        return self._run(job)

    def change_acl(self, user: str, mailbox: str, identifier: str, change: str) -> Deferred[str]:
        """The mailbox's row is locked ``FOR UPDATE`` before the entry is read (so that two
        nodes changing an entry, even one that doesn't exist yet, wait for each other), and
        the entry written in the same transaction."""

        def job(conn: Any) -> str:
            with conn.transaction():
                box = self._acl_mailbox_id(conn, user, mailbox, lock=True)
                row = conn.execute(
                    "SELECT rights FROM mailbox_acl WHERE mailbox_id = %s AND identifier = %s",
                    (box, identifier),
                ).fetchone()
                new = acl_rights.modify(row[0] if row else "", change)
                _write_acl(conn, box, identifier, new)
                return new

        return self._run(job)

    def shared_with(self, identifiers: list[str]) -> Deferred[dict]:
        wanted = list(identifiers)

        def job(conn: Any) -> dict[tuple[str, str], dict[str, str]]:
            if not wanted:
                return {}
            rows = conn.execute(
                "SELECT u.address, b.name, a.identifier, a.rights FROM mailbox_acl a"
                " JOIN mailboxes b ON b.id = a.mailbox_id JOIN mail_users u ON u.id = b.user_id"
                " WHERE a.mailbox_id IN"
                " (SELECT mailbox_id FROM mailbox_acl WHERE identifier = ANY(%s))",
                (wanted,),
            ).fetchall()
            found: dict[tuple[str, str], dict[str, str]] = {}
            for owner, name, identifier, rights in rows:
                found.setdefault((owner, name), {})[identifier] = rights
            return found

        return self._run(job)

    # -- IMetadataStore (RFC 5464; entry names and limits checked by imap/metadata.py) --------

    def _metadata_rows(self, conn: Any, user: str, mailbox: str | None) -> tuple[str, str, int]:
        """(table, key column, key) of the entries of ``mailbox``, or of the account's own
        ("server") entries when None. The user is provisioned, as by any other command of
        the owner; a missing mailbox is ``NoSuchMailbox``."""
        if mailbox is None:
            return "server_metadata", "user_id", self._user_id(conn, user)
        return "mailbox_metadata", "mailbox_id", self._mailbox(conn, user, mailbox).id

    def get_metadata(self, user: str, mailbox: str | None) -> Deferred[dict[str, bytes]]:
        def job(conn: Any) -> dict[str, bytes]:
            table, column, key = self._metadata_rows(conn, user, mailbox)
            rows = conn.execute(
                f"SELECT entry, value FROM {table} WHERE {column} = %s",  # noqa: S608 - fixed
                (key,),
            )
            return {entry: bytes(value) for entry, value in rows}

        return self._run(job)

    def set_metadata(
        self,
        user: str,
        mailbox: str | None,
        changes: dict[str, bytes | None],
        limit: int | None = None,
    ) -> Deferred[None]:
        """All the changes in one transaction: its COMMIT (on disk, ``synchronous_commit``)
        comes before the Deferred fires. With ``limit``, the entries are counted in that
        transaction under a lock of the mailbox's (or account's) entries that every writer
        takes, so sessions on several nodes can't together go past it."""
        removed = [entry for entry, value in changes.items() if value is None]
        written = [(entry, value) for entry, value in changes.items() if value is not None]

        def job(conn: Any) -> None:
            import psycopg

            try:
                with conn.transaction():
                    table, column, key = self._metadata_rows(conn, user, mailbox)
                    # Writers of the same entries one at a time (until COMMIT): the count
                    # below then sees every other writer's entries.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{table}:{key}",))
                    count = f"SELECT count(*) FROM {table} WHERE {column} = %s"  # noqa: S608
                    before = conn.execute(count, (key,)).fetchone()[0] if limit is not None else 0
                    if removed:
                        conn.execute(
                            f"DELETE FROM {table} WHERE {column} = %s"  # noqa: S608 - fixed
                            " AND entry = ANY(%s)",
                            (key, removed),
                        )
                    if written:
                        with conn.cursor() as cur:
                            cur.executemany(
                                f"INSERT INTO {table} ({column}, entry, value)"  # noqa: S608
                                f" VALUES (%s, %s, %s) ON CONFLICT ({column}, entry)"
                                " DO UPDATE SET value = EXCLUDED.value",
                                [(key, entry, value) for entry, value in written],
                            )
                    if limit is not None and written:
                        after = conn.execute(count, (key,)).fetchone()[0]
                        if after > limit and after > before:  # inside the transaction: undone
                            raise TooManyEntries(f"{after} metadata entries, at most {limit}")
            except psycopg.errors.ForeignKeyViolation as e:
                # another session deleted the mailbox (or the user) between the lookup and
                # the write: nothing was written
                raise NoSuchMailbox(f"no mailbox {mailbox!r}") from e

        return self._run(job)

    def location(self, user: str) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self._dsn)
        where = info.get("host") or "localhost"
        return f"PostgreSQL database {info.get('dbname', '')!s} on {where} (user {_owner(user)})"

    def deliver(
        self,
        recipients: Iterable[tuple[str, str]],
        source: MessageSource,
        internaldate: float | None = None,
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
    ) -> Deferred[dict[tuple[str, str], int]]:
        """One transaction: the body is uploaded once and copied inside the server for each
        further mailbox; mailbox rows are locked in id order (no deadlock between nodes).
        ``flags``: each copy's flags (Sieve imap4flags), as ``IMailStore.deliver`` says."""
        return self.deliver_within_quota(recipients, source, {}, flags, internaldate)

    def deliver_within_quota(
        self,
        recipients: Iterable[tuple[str, str]],
        source: MessageSource,
        limits: Mapping[str, int],
        flags: Mapping[tuple[str, str], Iterable[str]] | None = None,
        internaldate: float | None = None,
    ) -> Deferred[dict[tuple[str, str], int]]:
        """With ``limits``, each of those users' quota lock (``_hold_quota``, the one IMAP
        APPEND takes) is taken, in the order of their names, once the body is uploaded, and
        held until the COMMIT: the usage is read after the previous holder committed. The
        limit is soft by one message, as at RCPT for a message of undeclared size: a user
        below it takes the message, one who holds it already refuses it."""
        wanted = flags or {}
        quotas = {_owner(user): limit for user, limit in limits.items()}

        def job(conn: Any, targets: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
            results: dict[tuple[str, str], int] = {}
            if len(targets) == 1 and not quotas:
                small = self._small(source)
                if small is not None:
                    box = self._mailbox(conn, *targets[0])
                    marks = list(wanted.get(targets[0], ()))
                    results[targets[0]] = self._add_small(conn, box, small, marks, internaldate)[1]
                    return results
            with conn.transaction():
                boxes = {target: self._mailbox(conn, *target) for target in targets}
                if not boxes:
                    return results
                message_id, size, chunks, header, blob = self._upload(conn, source)
                copies = Counter(box.user for box in boxes.values())
                try:
                    for user in sorted(set(quotas) & set(copies)):
                        self._hold_quota(conn, user, size * copies[user], quotas[user], True)
                except QuotaExceeded:
                    self._forget(conn, [blob])  # the chunk rows go with the rollback
                    raise
                emailid = objectids.new_emailid()  # one message in every mailbox (RFC 8474)
                first = True
                for target, box in sorted(boxes.items(), key=lambda item: item[1].id):
                    _validity, uid, modseq = self._allocate(conn, box.id, 1, size, box.name)
                    copy_id = message_id if first else self._copy_chunks(conn, message_id, blob)
                    first = False
                    marks = list(wanted.get(target, ()))
                    self._insert(
                        conn, copy_id, box.id, uid, modseq, marks, size, internaldate, chunks,
                        header, emailid, blob,
                    )  # fmt: skip
                    self._notify(conn, box.user, box.name)
                    results[target] = uid
            self._changed((box.user, box.name) for box in boxes.values())
            return results

        return self._run(job, list(dict.fromkeys(recipients)))

    def open(self, user: str, mailbox: str) -> Deferred[PostgresMailbox]:
        return self._run(self._mailbox, user, mailbox)

    def open_selected(
        self, user: str, mailbox: str, claim_recent: bool
    ) -> Deferred[tuple[PostgresMailbox, MailboxSelection]]:
        def job(conn: Any) -> tuple[PostgresMailbox, MailboxSelection]:
            box = self._mailbox(conn, user, mailbox)
            return box, box._select(conn, claim_recent)

        return self._run(job)

    def list_mailboxes(self, user: str) -> Deferred[list[str]]:
        def job(conn: Any) -> list[str]:
            user_id = self._user_id(conn, user)
            rows = conn.execute("SELECT name FROM mailboxes WHERE user_id = %s", (user_id,))
            names = sorted(r[0] for r in rows if r[0] != INBOX)
            return [INBOX, *names]

        return self._run(job)

    def create_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        def job(conn: Any) -> None:
            name = _canonical(mailbox)
            user_id = self._user_id(conn, user)
            if self.max_mailboxes:  # how many, and whether this one is among them: one trip
                count, exists = conn.execute(
                    "SELECT count(*), coalesce(bool_or(name = %s), false)"
                    " FROM mailboxes WHERE user_id = %s",
                    (name, user_id),
                ).fetchone()
                if not exists:
                    check_room(count, self.max_mailboxes, name)
            row = conn.execute(
                "INSERT INTO mailboxes (user_id, name) VALUES (%s, %s)"
                " ON CONFLICT (user_id, name) DO NOTHING RETURNING id",
                (user_id, name),
            ).fetchone()
            if row is None:
                raise MailboxExists(f"mailbox {mailbox!r} exists")

        return self._run(job)

    def delete_mailbox(self, user: str, mailbox: str) -> Deferred[None]:
        def job(conn: Any) -> None:
            name = _canonical(mailbox)
            if name == INBOX:
                raise InvalidMailboxName("INBOX can't be deleted")
            box = self._mailbox(conn, user, name)
            with conn.transaction():
                box._lock(conn, True)  # no delivery adds a row (and an object) meanwhile
                objects = self._objects(conn, "mailbox_id = %s", box.id)
                conn.execute("DELETE FROM mailboxes WHERE id = %s", (box.id,))
                self._notify(conn, box.user, box.name)
            self._changed([(box.user, box.name)])
            self._forget(conn, objects)

        return self._run(job)

    def rename_mailbox(self, user: str, old: str, new: str) -> Deferred[None]:
        return self._run(self._rename, user, old, new)

    def _rename(self, conn: Any, user: str, old: str, new: str) -> None:
        source = self._mailbox(conn, user, old)
        new_name = _canonical(new)
        user_id = self._user_id(conn, user)
        emptied = False
        renamed: list[str] = []
        with conn.transaction():
            taken = conn.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = %s AND name = %s", (user_id, new_name)
            ).fetchone()
            if new_name == INBOX or taken:
                raise MailboxExists(f"mailbox {new!r} exists")
            if source.name == INBOX:
                emptied = self._rename_inbox(conn, source, user_id, new_name)
            else:
                renamed = self._rename_tree(conn, source.name, user_id, new_name)
                for name in renamed:  # sessions that have one selected, on any node, look
                    self._notify(conn, source.user, name)
        if emptied:
            self._changed([(source.user, INBOX)])
        self._changed((source.user, name) for name in renamed)

    def _rename_tree(self, conn: Any, old: str, user_id: int, new: str) -> list[str]:
        """Rename ``old`` and its children (their rows keep their ids, so UIDVALIDITY and
        messages stay), and the subscriptions to them; the mailboxes' old names."""
        if new.startswith(old + "/"):
            raise InvalidMailboxName("can't rename a mailbox into its own child")
        prefix = old + "/"
        clash = conn.execute(
            "SELECT 1 FROM mailboxes WHERE user_id = %s AND left(name, %s) = %s"
            " AND %s || substr(name, %s) IN (SELECT name FROM mailboxes WHERE user_id = %s)",
            (user_id, len(prefix), prefix, new, len(old) + 1, user_id),
        ).fetchone()
        if clash:
            raise MailboxExists(f"mailbox {new!r} has a child that exists")
        conn.execute(  # subscriptions to the new names, kept though no such mailbox existed
            "DELETE FROM subscriptions WHERE user_id = %s AND (name = %s OR left(name, %s) = %s)",
            (user_id, new, len(new) + 1, new + "/"),
        )
        renamed = conn.execute(
            "SELECT name FROM mailboxes WHERE user_id = %s AND (name = %s OR left(name, %s) = %s)",
            (user_id, old, len(prefix), prefix),
        ).fetchall()
        for table in ("mailboxes", "subscriptions"):
            conn.execute(
                f"UPDATE {table} SET name = %s || substr(name, %s)"  # noqa: S608 - fixed names
                " WHERE user_id = %s AND (name = %s OR left(name, %s) = %s)",
                (new, len(old) + 1, user_id, old, len(prefix), prefix),
            )
        return [r[0] for r in renamed]

    def _rename_inbox(self, conn: Any, inbox: PostgresMailbox, user_id: int, new_name: str) -> bool:
        """RFC 3501 §6.3.5: INBOX's messages move to the new mailbox (renumbered from 1,
        under its own UIDVALIDITY); INBOX stays, empty, its old UIDs expunged. Whether any
        message moved (INBOX changed)."""
        highest = inbox._lock(conn, True)[2]
        target = conn.execute(
            "INSERT INTO mailboxes (user_id, name) VALUES (%s, %s) RETURNING id",
            (user_id, new_name),
        ).fetchone()[0]
        moved = conn.execute(
            "UPDATE messages m SET mailbox_id = %s, uid = r.n, modseq = 1,"
            " savedate = extract(epoch FROM clock_timestamp())"
            " FROM (SELECT id, uid, row_number() OVER (ORDER BY uid) AS n FROM messages"
            "       WHERE mailbox_id = %s) r WHERE m.id = r.id RETURNING r.uid, m.size",
            (target, inbox.id),
        ).fetchall()
        if not moved:
            return False
        conn.execute(
            "UPDATE mailboxes SET uidnext = %s, size = %s WHERE id = %s",
            (len(moved) + 1, sum(size for _uid, size in moved), target),
        )
        conn.execute(
            "UPDATE mailboxes SET highestmodseq = %s, size = 0 WHERE id = %s",
            (highest + 1, inbox.id),
        )
        conn.execute(
            "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT %s, unnest(%s::bigint[]), %s",
            (inbox.id, [r[0] for r in moved], highest + 1),
        )
        self._notify(conn, inbox.user, INBOX)
        return True

    def subscriptions(self, user: str) -> Deferred[list[str]]:
        def job(conn: Any) -> list[str]:
            user_id = self._user_id(conn, user)
            rows = conn.execute(
                "SELECT name FROM subscriptions WHERE user_id = %s ORDER BY name", (user_id,)
            )
            return [r[0] for r in rows]

        return self._run(job)

    def subscribe(self, user: str, mailbox: str, subscribed: bool) -> Deferred[None]:
        def job(conn: Any) -> None:
            name = _canonical(mailbox)
            user_id = self._user_id(conn, user)
            if subscribed:
                conn.execute(
                    "INSERT INTO subscriptions (user_id, name) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (user_id, name),
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE user_id = %s AND name = %s", (user_id, name)
                )

        return self._run(job)

    def access_key(self, user: str, mailbox: str, create: bool = True) -> Deferred[bytes | None]:
        def job(conn: Any) -> bytes | None:
            user_id = self._user_id(conn, user, create=False)
            if user_id is None:
                return None
            if create:
                conn.execute(
                    "INSERT INTO access_keys (user_id, name, key) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (user_id, mailbox, secrets.token_bytes(32)),
                )
            row = conn.execute(
                "SELECT key FROM access_keys WHERE user_id = %s AND name = %s", (user_id, mailbox)
            ).fetchone()
            return bytes(row[0]) if row else None

        return self._run(job)

    def reset_access_keys(self, user: str, mailbox: str | None = None) -> Deferred[None]:
        def job(conn: Any) -> None:
            user_id = self._user_id(conn, user, create=False)
            if user_id is None:
                return
            if mailbox is None:
                conn.execute("DELETE FROM access_keys WHERE user_id = %s", (user_id,))
            else:
                conn.execute(
                    "DELETE FROM access_keys WHERE user_id = %s AND name = %s", (user_id, mailbox)
                )

        return self._run(job)

    def usage(self, user: str) -> Deferred[int]:
        def job(conn: Any) -> int:
            row = conn.execute(
                "SELECT coalesce(sum(b.size), 0) FROM mailboxes b"
                " JOIN mail_users u ON u.id = b.user_id WHERE u.address = %s",
                (_owner(user),),
            ).fetchone()
            return int(row[0])

        return self._run(job)
