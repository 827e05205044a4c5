"""The full-text index of one Maildir folder: trigrams of each message's searchable text, in
SQLite FTS5, beside the folder's index (``DIR/txmailhost-text.sqlite``).

IMAP SEARCH is a case-insensitive *substring* match (RFC 3501 §6.4.4): ``SEARCH TEXT orn``
finds "unicorn". An index of words can't answer that; an index of trigrams can narrow it: a
message that holds the needle holds each of its three-character pieces. So a query is the AND
of the needle's trigrams, its answer is a set of candidates that contains every match, and the
caller tests each candidate with the same matcher a scan uses (``ITextIndex``): the results
are exactly the scan's. A needle under three characters narrows nothing.

Two FTS5 tables, both contentless (the text is not kept, only the trigrams) and without
positions (``detail=none``/``column``; the AND of trigrams needs none, and positions would
double the file):

- ``text_grams``: the whole message as SEARCH TEXT sees it (raw, decoded headers, decoded
  text parts), which also answers BODY (the body is part of it);
- ``field_grams``: SUBJECT, FROM, TO, CC, BCC as SEARCH decodes them, one column each.

The caller supplies the text (``extractor``): the store never decides what SEARCH means. The
texts are case-folded by the caller, so the tokenizer folds nothing (``case_sensitive 1``).

A contentless FTS5 table (SQLite < 3.43) can't delete a row without its text. Expunge
therefore removes the message from ``docs``, which every answer is filtered through, and
counts it; once the dead rows outnumber the live ones, the file is dropped and built again
on the next search. The file is a cache: deleted, corrupt, of another UIDVALIDITY or another
extractor version, it is rebuilt from the messages. Every method blocks: call them from the
store's thread pool.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from txmailhost.sqlitewal import enable_wal
from txmailhost.store.interfaces import (
    TEXT_FIELDS,
    StoredMessage,
    TextAll,
    TextAny,
    TextQuery,
    TextTerm,
)
from txmailhost.store.pathlocks import PathLocks
from txmailhost.store.threadconns import ThreadConnections

TEXT_INDEX_NAME = "txmailhost-text.sqlite"
HEADER_FIELDS = TEXT_FIELDS[1:]
# More trigrams than this narrow a candidate set no further in practice; each costs a lookup.
MAX_TRIGRAMS = 16
# Dead rows (expunged, still in the FTS tables) tolerated before the file is rebuilt.
MIN_DEAD_FOR_REBUILD = 1000
BATCH = 200  # messages read into memory at once while indexing
CACHED_UIDS = 1_000_000  # indexed UIDs kept in memory across folders (about 50 MiB at most)
# Seconds a search spends indexing mail the index lacks before it tests the rest itself (a
# first search of a 100,000-message folder would otherwise wait a minute); the rest is
# indexed in the background.
SEARCH_BUDGET = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS docs (uid INTEGER PRIMARY KEY);
CREATE VIRTUAL TABLE IF NOT EXISTS text_grams USING fts5(
    text, content='', detail=none, columnsize=0, tokenize='trigram case_sensitive 1'
);
CREATE VIRTUAL TABLE IF NOT EXISTS field_grams USING fts5(
    subject, "from", "to", cc, bcc,
    content='', detail=column, columnsize=0, tokenize='trigram case_sensitive 1'
);
"""

# Threads of this process writing one file queue here rather than in SQLite's busy handler.
_lock = PathLocks(threading.Lock)


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    enable_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost transaction is indexed again
    conn.execute("PRAGMA journal_size_limit=1048576")  # the WAL shrinks back after a bulk load
    conn.executescript(_SCHEMA)
    return conn


# This thread's connection to each file, opened again when the file was replaced.
_connections = ThreadConnections(_open)
_connect = _connections.get
_close = _connections.close


# The indexed UIDs each file held when this process last read them, by path, with the
# (epoch, generation) meta values they were read under: every write bumps the generation, a
# new file gets a new epoch, so a stale entry is never used, whichever process wrote.
_indexed_cache: dict[str, tuple[tuple[Any, Any], frozenset[int]]] = {}
_indexed_cache_lock = threading.Lock()


def _bump(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO meta VALUES ('generation', 1) ON CONFLICT (key)"
        " DO UPDATE SET value = value + 1"
    )


def trigrams(needle: str) -> list[str]:
    """The distinct three-character pieces of ``needle`` (at most ``MAX_TRIGRAMS``, spread
    over it), or none when it is shorter than three characters."""
    pieces = list(dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2)))
    if len(pieces) > MAX_TRIGRAMS:
        step = len(pieces) / MAX_TRIGRAMS
        pieces = [pieces[int(i * step)] for i in range(MAX_TRIGRAMS - 1)] + [pieces[-1]]
    return pieces


def _match_expression(grams: list[str]) -> str:
    """FTS5 query text: each trigram a quoted string (``"`` doubled), ANDed."""
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


class TextIndex:
    """The full-text index of the mailbox directory ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, TEXT_INDEX_NAME)

    @property
    def _db(self) -> sqlite3.Connection:
        return _connect(self.path)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with _lock(self.path):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def indexed(self, uidvalidity: int, version: str) -> set[int]:
        """The UIDs indexed, after dropping an index made for another UIDVALIDITY or extractor
        version, or one whose dead rows outnumber its live ones."""
        db = self._db
        db.execute("BEGIN")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            stamp = (meta.get("epoch"), meta.get("generation"))
            cached = _indexed_cache.get(self.path)
            if cached is not None and cached[0] == stamp:
                uids = cached[1]  # unchanged since this process last read it: no 100k rows
            else:
                uids = frozenset(uid for (uid,) in db.execute("SELECT uid FROM docs"))
        finally:
            db.execute("COMMIT")
        dead = int(meta.get("dead", 0))
        stale = meta.get("uidvalidity") != uidvalidity or meta.get("version") != version
        if stale or dead > max(MIN_DEAD_FOR_REBUILD, len(uids)):
            self.drop()
            with self._write() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (
                        ("uidvalidity", uidvalidity),
                        ("version", version),
                        ("dead", 0),
                        ("epoch", secrets.token_hex(8)),  # this file, not the one it replaced
                        ("generation", 0),
                    ),
                )
            return set()
        with _indexed_cache_lock:
            _indexed_cache.pop(self.path, None)
            if sum(len(entry[1]) for entry in _indexed_cache.values()) + len(uids) > CACHED_UIDS:
                _indexed_cache.clear()
            _indexed_cache[self.path] = (stamp, uids)
        return set(uids)

    def add(self, documents: Iterable[tuple[int, dict[str, str]]]) -> int:
        """Index each ``(uid, {field: text})`` not indexed yet (another thread or process may
        have indexed it meanwhile); the number added."""
        documents = list(documents)
        added = 0
        if not documents:
            return 0
        with self._write() as db:
            marks = ",".join("?" * len(documents))
            have = {
                uid
                for (uid,) in db.execute(
                    f"SELECT uid FROM docs WHERE uid IN ({marks})", [d[0] for d in documents]
                )
            }
            for uid, columns in documents:
                if uid in have:
                    continue
                have.add(uid)
                db.execute("INSERT INTO docs VALUES (?)", (uid,))
                db.execute(
                    "INSERT INTO text_grams (rowid, text) VALUES (?, ?)",
                    (uid, columns.get("text", "")),
                )
                db.execute(
                    'INSERT INTO field_grams (rowid, subject, "from", "to", cc, bcc)'
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (uid, *(columns.get(name, "") for name in HEADER_FIELDS)),
                )
                added += 1
            if added:
                _bump(db)
        return added

    def forget(self, uids: Sequence[int]) -> None:
        """Expunged messages: out of every answer now, out of the file at the next rebuild."""
        if not uids or not os.path.exists(self.path):
            return
        with self._write() as db:
            removed = 0
            for start in range(0, len(uids), 500):
                chunk = list(uids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                removed += db.execute(f"DELETE FROM docs WHERE uid IN ({marks})", chunk).rowcount
            if removed:
                db.execute(
                    "INSERT INTO meta VALUES ('dead', ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = value + excluded.value",
                    (removed,),
                )
                _bump(db)

    def candidates(self, query: TextQuery) -> set[int] | None:
        """Indexed UIDs that may match ``query``; None when it narrows nothing."""
        if isinstance(query, TextTerm):
            return self._term(query)
        answers = [self.candidates(part) for part in query.parts]
        if isinstance(query, TextAll):
            narrowing = [a for a in answers if a is not None]
            if not narrowing:
                return None
            return set.intersection(*sorted(narrowing, key=len))
        assert isinstance(query, TextAny)
        if any(a is None for a in answers):
            return None
        return set().union(*answers)  # type: ignore[arg-type]

    def _term(self, term: TextTerm) -> set[int] | None:
        grams = trigrams(term.needle)
        if not grams:
            return None
        expression = _match_expression(grams)
        if term.field == "text":
            sql, arg = "SELECT rowid FROM text_grams WHERE text_grams MATCH ?", expression
        elif term.field in HEADER_FIELDS:
            sql = "SELECT rowid FROM field_grams WHERE field_grams MATCH ?"
            arg = '{"' + term.field + '"} : (' + expression + ")"
        else:
            return None
        return {uid for (uid,) in self._db.execute(sql, (arg,))}

    def compact(self) -> None:
        """After a bulk load: merge the FTS segments into one (smaller, faster to query) and
        give the freed pages and the write-ahead log's space back."""
        with self._write() as db:
            db.execute("INSERT INTO text_grams (text_grams) VALUES ('optimize')")
            db.execute("INSERT INTO field_grams (field_grams) VALUES ('optimize')")
        with _lock(self.path):
            self._db.execute("VACUUM")  # the pages of the merged segments go back to the disk
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def drop(self) -> None:
        """Remove the file (the next ``indexed`` starts an empty one)."""
        with _lock(self.path):
            _close(self.path)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)

    def size(self) -> int:
        """Octets on disk (the file and its write-ahead log)."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(self.path + suffix).st_size
        return total


def candidates_among(
    index: TextIndex, query: TextQuery, uids: Sequence[int], indexed: set[int]
) -> set[int] | None:
    """The candidates among ``uids``: those the index says may match, and those it doesn't
    hold (a message it could not read is left to the caller's matcher); None when the query
    narrows nothing."""
    found = index.candidates(query)
    if found is None:
        return None
    return {uid for uid in uids if uid in found or uid not in indexed}


def catch_up(
    index: TextIndex,
    uidvalidity: int,
    uids: Sequence[int],
    extractor: Any,
    read: Callable[[list[int]], list[StoredMessage]],
    budget: float | None = None,
) -> tuple[set[int], list[int]]:
    """Index those of ``uids`` the index lacks, reading them (header and content) with
    ``read``, for ``budget`` seconds at most (None: all of them). The UIDs indexed, and those
    left for later."""
    indexed = index.indexed(uidvalidity, extractor.version)
    missing = [uid for uid in uids if uid not in indexed]
    deadline = None if budget is None else time.monotonic() + budget
    for start in range(0, len(missing), BATCH):
        if deadline is not None and time.monotonic() > deadline:
            return indexed, missing[start:]
        messages = read(missing[start : start + BATCH])
        index.add((message.uid, extractor.columns(message)) for message in messages)
        indexed.update(message.uid for message in messages)
    return indexed, []
