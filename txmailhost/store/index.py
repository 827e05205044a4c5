"""The per-mailbox index: UIDs, flags, sizes, dates and modseqs in one small SQLite file.

Why SQLite: one file per mailbox, crash-safe transactions, concurrent readers with one writer
(WAL), and a 100,000-row SELECT answers in tens of milliseconds without touching message files.
The index is a cache of the Maildir directory, never the only copy of anything: ``reconcile``
rebuilds it from the files (new files get UIDs, vanished files are expunged). That is why the
commit mode can be ``synchronous=NORMAL``: losing the last index transaction to a power cut loses
no mail, the next reconcile finds the file again.

A damaged file (SQLite says "malformed" or "not a database", or it is no regular file) is set
aside as ``txmailhost-index.sqlite.broken-TIME`` (with its ``-wal`` and ``-shm``, for the
admin) and a new index is made, which the store fills from the message files (``rebuild``):
a new UIDVALIDITY, as for a missing index. Only the file that failed is set aside, under an
exclusive ``flock`` of the mailbox directory that every opening of an index shares: a second
thread or worker process that met the same damage finds the new file and uses it, and no
connection is opened between the renames (a new index must never be paired with the old
``-wal``). Damage found on opening is repaired before the caller reads anything; damage found
by a query fails that call with ``IndexDamaged`` once the file is set aside.

Every method blocks; call them from the store's thread pool.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from twisted.logger import Logger

from txmailhost import _safeio
from txmailhost.sqlitewal import enable_wal
from txmailhost.store import objectids
from txmailhost.store.interfaces import NoSuchMailbox, StoreError
from txmailhost.store.pathlocks import PathLocks
from txmailhost.store.threadconns import ThreadConnections

INDEX_NAME = "txmailhost-index.sqlite"
# In the user's directory: the last UIDVALIDITY given to any of the user's mailboxes.
UIDVALIDITY_NAME = "txmailhost-uidvalidity"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    uid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,      -- Maildir base name, before ':2,'
    subdir TEXT NOT NULL,           -- 'new' or 'cur'
    flags INTEGER NOT NULL,         -- bitmask of system flags, see FLAG_BITS
    keywords TEXT NOT NULL DEFAULT '',
    internaldate REAL NOT NULL,
    size INTEGER NOT NULL,          -- octets as served (CRLF form; a file of another size has
                                    -- bare LFs and is converted as read: store/lineends.py)
    modseq INTEGER NOT NULL
);
-- QRESYNC (RFC 7162 §3.2.5.1): which UIDs left the mailbox at which modseq, for VANISHED.
CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL);
-- The header block of each message (CRLF form), cached at delivery so FETCH of headers, ENVELOPE and
-- header SEARCH never reopen message files; a missing row is filled on first use.
CREATE TABLE IF NOT EXISTS headers (uid INTEGER PRIMARY KEY, header BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (modseq);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (modseq);
-- RFC 8474 EMAILID and RFC 8514 save date of each message (store/objectids.py). A message
-- indexed before this table existed has no row: its INTERNALDATE stands for its save date.
CREATE TABLE IF NOT EXISTS origins (
    uid INTEGER PRIMARY KEY, emailid TEXT NOT NULL, savedate REAL NOT NULL
);
-- Values a protocol derives from a message once and keeps (IMAP BODYSTRUCTURE), by name.
CREATE TABLE IF NOT EXISTS derived (
    uid INTEGER NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (uid, name)
);
"""

HEADER_CACHE_LIMIT = 64 * 1024  # a header block larger than this is read from the file
# meta 'line_ends': sizes and headers of bare-LF files are of their CRLF form from this version
# on (store/lineends.py); an older index is measured again once (MaildirStore._check_line_ends).
LINE_ENDS = 1


_log = Logger()


class IndexDamaged(StoreError):
    """The index file at ``path`` (inode ``inode``) is no sound database; by the time a caller
    sees this, it has been set aside and a new one made, so trying again helps."""

    def __init__(self, path: str, inode: int | None, reason: str) -> None:
        super().__init__(f"mailbox index {path} is damaged: {reason}")
        self.path, self.inode, self.reason = path, inode, reason
        self.recovered = False


def _damage_in(error: BaseException | None) -> BaseException | None:
    """The damage report in ``error`` or in the errors it was raised while handling (the
    COMMIT or ROLLBACK after a failed query fails the same way), or None. Damage is SQLite's
    SQLITE_CORRUPT (11) or SQLITE_NOTADB (26) (sqlite.org/rescode.html): "database is
    locked", a full disk or an I/O error say nothing of the file."""
    while error is not None:
        if isinstance(error, IndexDamaged):
            return error
        code = getattr(error, "sqlite_errorcode", None) or 0
        # the low octet: extended codes (SQLITE_CORRUPT_INDEX ...) count too
        if isinstance(error, sqlite3.DatabaseError) and code & 0xFF in (11, 26):
            return error
        error = error.__context__
    return None


@contextmanager
def _opening(directory: str, exclusive: bool = False) -> Iterator[None]:
    """Shared by every opening of an index in ``directory``, exclusive while ``quarantine``
    renames one: an ``flock`` of the directory, which outlives the index files."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _open(path: str) -> sqlite3.Connection:
    """A new connection to the index at ``path``, made (with its meta values) if missing;
    ``IndexDamaged`` when the file there is no sound database."""
    with _opening(os.path.dirname(path)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise IndexDamaged(path, st.st_ino, "not a regular file")
        inode = None if st is None else st.st_ino
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            enable_wal(conn)  # also while another worker makes the same index
        except sqlite3.DatabaseError as e:
            conn.close()
            if _damage_in(e) is None:
                raise
            raise IndexDamaged(path, inode, str(e)) from e
    try:
        _make(conn, path)
    except sqlite3.DatabaseError as e:
        conn.close()
        if _damage_in(e) is None:
            raise
        raise IndexDamaged(path, inode, str(e)) from e
    return conn


def _make(conn: sqlite3.Connection, path: str) -> None:
    """The tables and, in a new file, the meta values."""
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    if conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            (
                ("uidvalidity", next_uidvalidity(os.path.dirname(path))),
                ("uidnext", 1),
                ("highestmodseq", 1),
                ("line_ends", LINE_ENDS),
                # RFC 8474 MAILBOXID: text in this INTEGER column (SQLite keeps it as given);
                # the file moves with the directory at RENAME, so the id does too.
                ("mailboxid", objectids.new_mailboxid()),
            ),
        )
    conn.execute("COMMIT")


# One connection per thread and index file; SQLite connections aren't shareable.
_connections = ThreadConnections(_open)
_connect = _connections.get


def quarantine(path: str, inode: int | None) -> str | None:
    """Rename the damaged index at ``path`` and its ``-wal`` and ``-shm`` to
    ``PATH.broken-TIME`` (kept for the admin), if it is still the file ``inode`` that failed;
    the new name, or None when another thread or process has replaced it already.

    Connections open on the old file (other threads, the other worker) keep reading it until
    they notice the new inode (``ThreadConnections``); SQLite deletes no ``-wal`` by name
    when it closes a database that was moved.
    """
    directory = os.path.dirname(path)
    with _writer_lock(path), _opening(directory, exclusive=True):
        try:
            if os.lstat(path).st_ino != inode:
                return None
        except FileNotFoundError:
            return None
        _connections.close(path)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = f"{path}.broken-{stamp}"
        for number in itertools.count(2):
            if not os.path.lexists(aside):
                break
            aside = f"{path}.broken-{stamp}-{number}"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(path + suffix, aside + suffix)
        _safeio.fsync_dir(directory)
    return aside


_uidvalidity_lock = threading.Lock()


def next_uidvalidity(directory: str) -> int:
    """A UIDVALIDITY for a new index in the mailbox ``directory`` (RFC 3501 §2.3.1.1).

    A mailbox deleted (or renamed away) and created again under the same name must not get
    the value its predecessor had, or a client would take its cached UIDs for the new
    mailbox's: the clock alone repeats within a second. So the last value handed out is kept
    in the user's directory (``txmailhost-uidvalidity``, as Dovecot keeps
    ``dovecot-uidvalidity``) and the next is the clock or one more than it, whichever is
    larger. An ``flock`` serialises processes (the CLI beside the server). Maildir++ puts
    folders (``.Name``) inside the user's directory, which is INBOX's own.
    """
    base = os.path.basename(directory)
    user_dir = os.path.dirname(directory) if base.startswith(".") else directory
    path = os.path.join(user_dir, UIDVALIDITY_NAME)
    with _uidvalidity_lock, open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        text = f.read(32).strip()
        last = int(text) if text.isdigit() else 0
        value = max(int(time.time()), last + 1)
        if value > 0xFFFFFFFF:  # nz-number is 32 bits (RFC 3501 §9); wraps in 2106
            value = 1
        f.seek(0)
        f.truncate()
        f.write(b"%d\n" % value)
        f.flush()
        os.fsync(f.fileno())
    return value


def forget(directory: str) -> None:
    """Drop this thread's cached connection to the index in ``directory`` (mailbox deleted)."""
    _connections.close(os.path.join(directory, INDEX_NAME))


# Reentrant: a write may record where another message went inside this thread's own write.
_writer_lock = PathLocks(threading.RLock)

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """A query of the index: damage it meets is repaired (``MailboxIndex._failed``)."""

    @functools.wraps(method)
    def call(self: MailboxIndex, *args: Any, **kwargs: Any) -> Any:
        outermost = not _connections.in_transaction(self.path)
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, IndexDamaged) as error:
            self._failed(error, outermost)
            raise

    return call  # type: ignore[return-value]


# What the store does with a new index made for a damaged one: (index, old file's new name,
# what was wrong) -> None; the Maildir store fills it from the message files.
Rebuild = Callable[["MailboxIndex", str, str], None]


class MailboxIndex:
    """The index of the mailbox directory ``directory``; ``rebuild`` fills the new index
    made when the file is found damaged."""

    def __init__(self, directory: str, rebuild: Rebuild | None = None) -> None:
        self.directory = directory
        self.path = os.path.join(directory, INDEX_NAME)
        self.rebuild = rebuild

    @property
    def _db(self) -> sqlite3.Connection:
        try:
            return _connect(self.path)
        except IndexDamaged as damage:
            # Found on opening: this thread has read nothing from the file yet, so the call
            # goes on with the new index.
            self._recover(damage)
            return _connect(self.path)
        except (sqlite3.OperationalError, FileNotFoundError) as e:
            # The mailbox's directory went (``user del --purge`` while a session had it
            # open, a mailbox deleted by another session): say so, not "unable to open".
            if not os.path.isdir(self.directory):
                raise NoSuchMailbox(f"{self.directory} no longer exists") from None
            self._as_damage(e)  # names the file
            raise

    def inode(self) -> int | None:
        """The inode of the file this thread's connection to the index reads (None without
        one): what a reconcile filled, whatever was renamed since."""
        return _connections.inode(self.path)

    def _failed(self, error: BaseException, outermost: bool) -> None:
        """A query failed with ``error``: if it says the file is damaged, raise
        ``IndexDamaged``, the file set aside and rebuilt first unless an enclosing call (a
        transaction of this thread on it) will; other errors are left to the caller."""
        damage = self._as_damage(error)
        if damage is None:
            return
        if outermost:
            self._recover(damage)
        if damage is error:
            raise damage
        raise damage from error

    def _as_damage(self, error: BaseException) -> IndexDamaged | None:
        """``error`` as ``IndexDamaged`` if it says the file is damaged; otherwise None, the
        file named in the error's notes (the CLI prints it, tracebacks show it)."""
        found = _damage_in(error)
        if found is None:
            note = f"mailbox index {self.path}"
            if note not in getattr(error, "__notes__", ()):
                error.add_note(note)
            return None
        if isinstance(found, IndexDamaged):
            return found
        return IndexDamaged(self.path, _connections.inode(self.path), str(found))

    def _recover(self, damage: IndexDamaged) -> str | None:
        """Set the damaged file aside and have the new index rebuilt, unless another thread
        or process did it already; the old file's new name."""
        if damage.recovered:
            return None
        damage.recovered = True
        aside = quarantine(self.path, damage.inode)
        if aside is None:
            return None
        if self.rebuild is not None:
            self.rebuild(self, aside, damage.reason)
        else:
            _log.warn("mailbox index {path} set aside as {aside} ({error}), a new one made",
                      path=self.path, error=damage.reason, aside=aside)  # fmt: skip
        return aside

    def set_aside(self, force: bool = False) -> str | None:
        """``txmailhost index rebuild``: check the file (``PRAGMA quick_check``) and, if it is
        damaged or ``force``, set it aside and rebuild the index; the old file's new name, or
        None when it was sound (or there was none) and is kept."""
        if force:
            try:
                inode = os.lstat(self.path).st_ino
                damage = IndexDamaged(self.path, inode, "set aside on request (--force)")
            except FileNotFoundError:
                return None
        else:
            try:  # not ``_db``: that would repair a file that can't be opened unreported
                problems = [row[0] for row in _connect(self.path).execute("PRAGMA quick_check")]
            except (sqlite3.Error, IndexDamaged) as e:
                found = self._as_damage(e)
                if found is None:
                    raise
                damage = found
            else:
                if problems == ["ok"]:
                    return None
                reason = "; ".join(problems[:3])
                damage = IndexDamaged(self.path, _connections.inode(self.path), reason)
        return self._recover(damage)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; serialises writers across threads and processes.

        Threads of this process queue on a lock first: SQLite's own busy handler sleeps
        1, 2, 5, 10... ms between retries, which at 50 concurrent deliveries into one INBOX
        cost more than the work (measured); a lock hands over at once. The SQLite lock
        still serialises against other processes (the CLI, a second server).
        """
        with _writer_lock(self.path):
            db = self._db
            if db.in_transaction:
                # Called inside this thread's own write (``_locate`` recording where another
                # tool moved a file, during STORE or EXPUNGE): part of that transaction.
                yield db
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:  # SQLite ends it itself on a full disk, and then
                        db.execute("ROLLBACK")  # a ROLLBACK would hide why it failed
                    raise
                db.execute("COMMIT")
            except (sqlite3.Error, IndexDamaged) as error:
                self._failed(error, True)
                raise

    @_guarded
    def meta(self, db: sqlite3.Connection | None = None) -> dict[str, int]:
        """UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ."""
        return dict((db or self._db).execute("SELECT key, value FROM meta"))

    @_guarded
    def rows(self) -> tuple[dict[str, int], list[tuple]]:
        """The meta values and every message row in UID order, read in one transaction.

        A row is (uid, name, subdir, flags, keywords, internaldate, size, modseq).
        """
        db = self._db
        db.execute("BEGIN")
        try:
            meta = self.meta(db)
            rows = db.execute(
                "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
                " FROM messages ORDER BY uid"
            ).fetchall()
        finally:
            db.execute("COMMIT")
        return meta, rows

    @_guarded
    def row(self, uid: int) -> tuple | None:
        return self._db.execute(
            "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
            " FROM messages WHERE uid = ?",
            (uid,),
        ).fetchone()

    def add(
        self,
        entries: Iterable[tuple[str, str, int, str, float, int]],
        db: sqlite3.Connection,
        emailids: Iterable[str | None] | None = None,
        seen: dict[str, int] | None = None,
    ) -> list[int]:
        """Give each (name, subdir, flags, keywords, internaldate, size) the next UID, saved
        now (RFC 8514), with the EMAILID of the message it copies from ``emailids`` (in the
        same order) or a new one. ``seen`` gets the meta values as read in this transaction
        (the UIDVALIDITY of APPENDUID, without another query).

        A name already indexed (a concurrent reconcile found the file first) keeps its UID.
        """
        meta = self.meta(db)
        if seen is not None:
            seen.update(meta)
        uid, modseq = meta["uidnext"], meta["highestmodseq"] + 1
        uids = []
        now = time.time()
        entries = list(entries)
        given = list(emailids) if emailids is not None else [None] * len(entries)
        for (name, subdir, flags, keywords, internaldate, size), emailid in zip(
            entries, given, strict=True
        ):
            added = db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (uid, name, subdir, flags, keywords, internaldate, size, modseq),
            ).rowcount
            if not added:
                (existing,) = db.execute(
                    "SELECT uid FROM messages WHERE name = ?", (name,)
                ).fetchone()
                uids.append(existing)
                continue
            db.execute(
                "INSERT OR REPLACE INTO origins VALUES (?, ?, ?)",
                (uid, emailid or objectids.new_emailid(), now),
            )
            uids.append(uid)
            uid += 1
        db.execute(
            "UPDATE meta SET value = CASE key WHEN 'uidnext' THEN ? ELSE ? END"
            " WHERE key IN ('uidnext', 'highestmodseq')",
            (uid, modseq),
        )
        return uids

    def remove(self, uids: Iterable[int], db: sqlite3.Connection) -> int:
        """Delete the rows and leave tombstones under one new modseq (for VANISHED); returns it."""
        uids = list(uids)
        modseq = self.meta(db)["highestmodseq"] + 1
        db.executemany("DELETE FROM messages WHERE uid = ?", ((u,) for u in uids))
        db.executemany("DELETE FROM headers WHERE uid = ?", ((u,) for u in uids))
        db.executemany("DELETE FROM derived WHERE uid = ?", ((u,) for u in uids))
        db.executemany("DELETE FROM origins WHERE uid = ?", ((u,) for u in uids))
        db.executemany("INSERT OR REPLACE INTO expunged VALUES (?, ?)", ((u, modseq) for u in uids))
        db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
        return modseq

    def cache_header(self, uid: int, header: bytes, db: sqlite3.Connection) -> None:
        if len(header) <= HEADER_CACHE_LIMIT:
            db.execute("INSERT OR REPLACE INTO headers VALUES (?, ?)", (uid, header))

    @_guarded
    def cached_headers(self, uids: list[int]) -> dict[int, bytes]:
        db, found = self._db, {}
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                db.execute(f"SELECT uid, header FROM headers WHERE uid IN ({marks})", chunk)
            )
        return found

    @_guarded
    def derived(self, uids: list[int], name: str) -> dict[int, bytes]:
        db, found = self._db, {}
        if len(uids) > 2000:
            # Many UIDs (a SORT of a whole mailbox): one range scan of the primary key, filtered
            # here, costs half what 500-UID IN lists do.
            wanted = set(uids)
            rows = db.execute(
                "SELECT uid, value FROM derived WHERE name = ? AND uid BETWEEN ? AND ?",
                (name, min(wanted), max(wanted)),
            )
            return {uid: value for uid, value in rows if uid in wanted}
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                db.execute(
                    f"SELECT uid, value FROM derived WHERE name = ? AND uid IN ({marks})",
                    [name, *chunk],
                )
            )
        return found

    @_guarded
    def origins(self, uids: list[int]) -> dict[int, tuple[str, float]]:
        """(EMAILID, save date) of each of ``uids`` still indexed; a message indexed before
        they were kept gets ``objectids.legacy_emailid`` and its INTERNALDATE."""
        db, found = self._db, {}
        if not uids:
            return found
        select = (
            "SELECT m.uid, o.emailid, COALESCE(o.savedate, m.internaldate)"
            " FROM messages m LEFT JOIN origins o ON o.uid = m.uid WHERE "
        )
        db.execute("BEGIN")
        try:
            uidvalidity = self.meta(db)["uidvalidity"]
            if len(uids) > 2000:
                # Many UIDs (FETCH 1:* EMAILID): one range scan, filtered here (as ``derived``).
                wanted = set(uids)
                queries = [(select + "m.uid BETWEEN ? AND ?", [min(wanted), max(wanted)])]
            else:
                wanted = None
                queries = [
                    (select + f"m.uid IN ({','.join('?' * len(chunk))})", chunk)
                    for chunk in (uids[i : i + 500] for i in range(0, len(uids), 500))
                ]
            for query, args in queries:
                for uid, emailid, savedate in db.execute(query, args):
                    if wanted is None or uid in wanted:
                        emailid = emailid or objectids.legacy_emailid(uidvalidity, uid)
                        found[uid] = (emailid, savedate)
        finally:
            db.execute("COMMIT")
        return found

    def mailboxid(self) -> str:
        """RFC 8474 MAILBOXID, made once for an index written before it was kept."""
        found = self.meta().get("mailboxid")
        if found is None:
            with self.write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('mailboxid', ?)",
                    (objectids.new_mailboxid(),),
                )
                found = self.meta(db)["mailboxid"]
        return str(found)

    def remember(self, name: str, values: dict[int, bytes]) -> None:
        with self.write() as db:
            present = {
                uid
                for (uid,) in db.execute(
                    "SELECT uid FROM messages WHERE uid BETWEEN ? AND ?",
                    (min(values), max(values)),
                )
            }
            db.executemany(
                "INSERT OR REPLACE INTO derived VALUES (?, ?, ?)",
                ((uid, name, value) for uid, value in values.items() if uid in present),
            )

    @_guarded
    def uids(self) -> tuple[dict[str, int], list[int], int, int]:
        """Meta, every UID in order, the sequence number of the first unseen message (0 if none)
        and the count of unseen messages, read in one transaction (SELECT, RFC 3501 §6.3.1)."""
        db = self._db
        db.execute("BEGIN")
        try:
            meta = self.meta(db)
            rows = db.execute("SELECT uid, flags & 8 FROM messages ORDER BY uid").fetchall()
        finally:
            db.execute("COMMIT")
        uids = [uid for uid, _ in rows]
        first_unseen, unseen = 0, 0
        for seq, (_uid, seen) in enumerate(rows, 1):
            if not seen:
                unseen += 1
                if not first_unseen:
                    first_unseen = seq
        return meta, uids, first_unseen, unseen

    @_guarded
    def counts(self) -> dict[str, int]:
        """MESSAGES, UNSEEN, SIZE and the meta values, for STATUS (RFC 3501 §6.3.10)."""
        db = self._db
        db.execute("BEGIN")
        try:
            meta = self.meta(db)
            messages, unseen, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM((flags & 8) = 0), 0), COALESCE(SUM(size), 0)"
                " FROM messages"
            ).fetchone()
            recent = db.execute(
                "SELECT COUNT(*) FROM messages WHERE uid >= ?", (meta.get("recent_uid", 1),)
            ).fetchone()[0]
        finally:
            db.execute("COMMIT")
        return dict(meta, messages=messages, unseen=unseen, size=size, recent=recent)

    def claim_recent(self, upto: int, claim: bool = True) -> int:
        """RFC 3501 §2.3.2 \\Recent: the lowest UID below ``upto`` that no read-write session
        has been told of yet. With ``claim`` the UIDs from there to ``upto`` become this
        session's, atomically: a session that asks later gets ``upto`` or more, so each new
        message is recent in exactly one session whichever notices it first. Without
        ``claim`` (EXAMINE) nothing changes."""
        meta = self.meta()
        first = meta.get("recent_uid", 1)
        if first >= upto or not claim:
            return first  # nothing unclaimed below upto (or just looking): no write
        with self.write() as db:
            first = self.meta(db).get("recent_uid", 1)
            if first < upto:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('recent_uid', ?)", (upto,))
        return first

    @_guarded
    def full_rows(self, uids: list[int], db: sqlite3.Connection | None = None) -> dict[int, tuple]:
        """``row`` for each of the sorted ``uids``, in one range query (or, for a few UIDs
        spread over many, such as a full-text index's candidates, by key)."""
        db = db or self._db
        if uids[-1] - uids[0] >= 4 * len(uids):
            found: dict[int, tuple] = {}
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    (row[0], row)
                    for row in db.execute(
                        "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
                        f" FROM messages WHERE uid IN ({marks}) ORDER BY uid",
                        chunk,
                    )
                )
            return found
        wanted = set(uids)
        return {
            row[0]: row
            for row in db.execute(
                "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
                " FROM messages WHERE uid BETWEEN ? AND ? ORDER BY uid",
                (uids[0], uids[-1]),
            )
            if row[0] in wanted
        }

    @_guarded
    def range_rows(self, low: int, high: int) -> list[tuple]:
        """(uid, flags, keywords, internaldate, size, modseq) for UIDs in [low, high]."""
        return self._db.execute(
            "SELECT uid, flags, keywords, internaldate, size, modseq FROM messages"
            " WHERE uid BETWEEN ? AND ? ORDER BY uid",
            (low, high),
        ).fetchall()

    def changes_since(self, modseq: int) -> tuple[int, list[tuple], list[int]]:
        """What changed after ``modseq``: (highestmodseq, rows as ``range_rows``, expunged UIDs).

        This is how a session learns of deliveries, other sessions' flag changes and expunges,
        whichever process made them (RFC 3501 §7.4.1, RFC 7162 §3.2.5)."""
        meta, rows, gone = self.delta(modseq, tombstones=True)
        return meta["highestmodseq"], rows, gone

    @_guarded
    def delta(
        self, modseq: int, tombstones: bool = False
    ) -> tuple[dict[str, int], list[tuple], list[int]]:
        """The meta values, and what changed after ``modseq``, read in one transaction: rows as
        ``range_rows`` (every row when ``modseq`` is 0) and the UIDs expunged (not read for a
        full load unless ``tombstones``). What keeps an in-memory image of the index current
        (``store/image.py``)."""
        db = self._db
        db.execute("BEGIN")
        try:
            meta = self.meta(db)
            if meta["highestmodseq"] == modseq:
                return meta, [], []
            rows = db.execute(
                "SELECT uid, flags, keywords, internaldate, size, modseq FROM messages"
                " WHERE modseq > ? ORDER BY uid",
                (modseq,),
            ).fetchall()
            gone = self.expunged_since(modseq) if modseq or tombstones else []
        finally:
            db.execute("COMMIT")
        return meta, rows, gone

    @_guarded
    def expunged_since(self, modseq: int) -> list[int]:
        return [
            uid
            for (uid,) in self._db.execute(
                "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,)
            )
        ]

    def update_flags(
        self, changes: Iterable[tuple[int, str, int, str]], db: sqlite3.Connection
    ) -> int:
        """Apply (uid, subdir, flags, keywords) changes under one new modseq; returns it."""
        modseq = self.meta(db)["highestmodseq"] + 1
        db.executemany(
            "UPDATE messages SET subdir = ?, flags = ?, keywords = ?, modseq = ? WHERE uid = ?",
            ((subdir, flags, keywords, modseq, uid) for uid, subdir, flags, keywords in changes),
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
        return modseq

    def relocate(self, uid: int, subdir: str, flags: int, db: sqlite3.Connection) -> None:
        """Record where another Maildir tool moved a file (e.g. mutt marking it read); a flag
        change gets a new modseq so IMAP sessions see it (RFC 7162 §3.1)."""
        old = db.execute("SELECT flags FROM messages WHERE uid = ?", (uid,)).fetchone()
        if old is not None and old[0] != flags:
            modseq = self.meta(db)["highestmodseq"] + 1
            db.execute(
                "UPDATE messages SET subdir = ?, flags = ?, modseq = ? WHERE uid = ?",
                (subdir, flags, modseq, uid),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
        else:
            db.execute("UPDATE messages SET subdir = ? WHERE uid = ?", (subdir, uid))
