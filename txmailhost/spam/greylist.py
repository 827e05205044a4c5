"""The ``greylist`` filter: a first attempt from an unknown source is told to come back later.

Greylisting (Evan Harris, 2003; Postfix's postgrey) relies on real mail servers retrying a
``451`` and on much spamware not doing so. At RCPT, the triplet (client network — its /24 for
IPv4, its /64 for IPv6, since a big sender retries from another address of its pool — the
envelope sender without what changes from message to message, ``sender_key``, the
recipient) is looked up:

- never seen: remember it, answer ``451 4.7.1`` (the filter chain's TEMPFAIL);
- seen less than ``delay`` seconds ago (default 300): ``451 4.7.1`` again;
- seen between ``delay`` and ``retry_window`` ago: passed — this and later mail with the
  same triplet is accepted for ``allow_days``; after ``auto_allow_after`` passed triplets a
  client network is accepted for anything (auto-allowlisting, as postgrey's ``--auto-whitelist-clients``);
- a triplet not retried within ``retry_window`` starts over, as does one first seen "later"
  than now (the clock was set back: waiting for it would hold mail as long as the jump).

Not greylisted: authenticated sessions, listeners other than ``listeners`` (submission), and
clients in ``exempt_networks`` — loopback by default: local tools and tests send from there,
and a delay would only hold up mail that has no internet sender to filter. The state is in
``DATA/spam/greylist.sqlite`` and expires by itself (rows past their windows are swept while
checking, and beyond ``max_pending`` triplets not yet retried the oldest go); a file SQLite can't read is set aside and the state starts afresh. Settings (``[filters.settings.greylist]``) are this class's keywords.

With ``[store] backend = "postgres"`` the state is in that database instead (tables
``greylist_triplets`` and ``greylist_clients``, step 3 of ``store/postgres_schema.py``), so
a sender's retry is recognised whichever node it reaches — with one file per node, a sender
retrying through another MX would be greylisted again there. The same statements run on both
(``_SharedTables`` translates SQLite's spelling); no cache: each RCPT reads the database, as it
reads the file, in the filters' thread pool. Two nodes seeing the same new triplet at once both
answer 451 and record it once (upserts).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from txmailhost.filters.base import MessageFilter
from txmailhost.filters.interfaces import ACCEPT, Client, Transaction, Verdict
from txmailhost.peer import ip_of
from txmailhost.spam.sqlitedb import thread_connection

log = Logger()
_SET_ASIDE = threading.Lock()  # one thread at a time renames a corrupt state file
# What a file that isn't (or is no longer) an SQLite database answers; nothing else sets
# the state aside (a locked file, a full disk or a statement's own error is no reason to).
_UNREADABLE = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplets (
    network TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    first_seen REAL NOT NULL, passed REAL, last_seen REAL NOT NULL,
    PRIMARY KEY (network, sender, recipient)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clients (
    network TEXT PRIMARY KEY, passes INTEGER NOT NULL, last_seen REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS triplets_pending ON triplets (first_seen) WHERE passed IS NULL;
"""
_SWEEP_EVERY = 1000  # checks between sweeps of expired rows

_TABLE = re.compile(r"\b(triplets|clients)\b")
_REPLACE = re.compile(r"INSERT OR REPLACE INTO greylist_triplets (.*)", re.S)


class _SharedTables:
    """A psycopg connection that runs this module's SQLite statements on the shared tables:
    ``?`` placeholders, ``BEGIN IMMEDIATE``, ``INSERT OR REPLACE`` and the table names are
    rewritten, so the greylisting rules are written once."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        from txmailhost.store.postgres_schema import upgrade

        self.conn = psycopg.connect(dsn, autocommit=True)
        upgrade(self.conn)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if sql == "BEGIN IMMEDIATE":
            sql = "BEGIN"
        sql = _TABLE.sub(r"greylist_\1", sql).replace("?", "%s")
        sql = sql.replace("passes = passes + 1", "passes = greylist_clients.passes + 1")
        replaced = _REPLACE.fullmatch(sql)
        if replaced:
            sql = (
                f"INSERT INTO greylist_triplets {replaced[1]} ON CONFLICT (network, sender,"
                " recipient) DO UPDATE SET first_seen = excluded.first_seen, passed = NULL,"
                " last_seen = excluded.last_seen"
            )
        return self.conn.execute(sql, params or None)


def _identity(path: str) -> tuple[int, int] | None:
    """Which file ``path`` is now (device, inode); None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


_BATV = re.compile(r"prvs=[0-9a-z]+=", re.I)  # draft-levine-smtp-batv: prvs=TAG=user
_NUMBER = re.compile(r"\b\d+\b")


def sender_key(sender: str | None) -> str:
    """The sender as a triplet remembers it, as postgrey does: lower-cased, without a BATV
    tag, a ``+extension`` or the numbers of a VERP address, which change with every message
    (``prvs=0123abcdef=news@…``, ``list-bounces+4711-alice=example.org@…``). Kept whole,
    each new message from such a sender was a new triplet, greylisted again, until the
    sender's network was auto-allowed."""
    local, at, domain = (sender or "").lower().rpartition("@")
    if not at:
        return domain  # the null sender, or no domain
    if _BATV.match(local):
        local = _BATV.sub("", local, count=1)
    local = _NUMBER.sub("#", local.partition("+")[0])
    return f"{local}@{domain}"


def network_of(address: str) -> str:
    """The client's /24 (IPv4, and IPv4-mapped IPv6) or /64 (IPv6), as text."""
    ip = ip_of(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class GreylistFilter(MessageFilter):
    """``[filters] chain = ["greylist", ...]`` (see the module docstring)."""

    name = "greylist"
    blocking = True  # SQLite: the filters' thread pool

    def __init__(
        self,
        *,
        host: Any = None,
        delay: float = 300.0,
        retry_window: float = 2 * 86400.0,
        allow_days: float = 36.0,
        auto_allow_after: int = 5,
        max_pending: int = 1_000_000,
        exempt_networks: list[str] | tuple[str, ...] = ("127.0.0.0/8", "::1/128"),
        listeners: list[str] | tuple[str, ...] = ("smtp",),
        path: str = "",
        dsn: str = "",
        now: Callable[[], float] = time.time,
    ) -> None:
        if delay < 0 or retry_window <= delay:
            raise ValueError("delay must be >= 0 and retry_window above it")
        if not path and not dsn and host is not None:
            dsn = host.shared_dsn
        self.dsn = dsn
        if not path and not dsn:
            if host is None:
                raise ValueError("greylist needs a data directory (host) or a path")
            path = os.path.join(host.data_dir, "spam", "greylist.sqlite")
        self.path = path
        self.delay = float(delay)
        self.retry_window = float(retry_window)
        self.allow_for = float(allow_days) * 86400
        self.auto_allow_after = int(auto_allow_after)
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = int(max_pending)
        self.exempt = tuple(ipaddress.ip_network(n, strict=False) for n in exempt_networks)
        self.listeners = frozenset(listeners)
        self._now = now
        self._exempt_cache: dict[str, bool] = {}
        self._local = threading.local()
        self._checks = 0

    def _db(self) -> Any:
        if self.dsn:
            shared = getattr(self._local, "shared", None)
            if shared is None or shared.conn.closed or shared.conn.broken:
                shared = self._local.shared = _SharedTables(self.dsn)
            return shared
        return self._sqlite()

    def skips(self, client: Client) -> bool:
        """Exempt clients are known on the reactor thread: no trip to the pool for them."""
        return self._exempt(client)

    def _exempt(self, client: Client) -> bool:
        if client.authenticated_as or client.listener not in self.listeners:
            return True
        return self._exempt_address(client.address)

    def _exempt_address(self, address: str) -> bool:
        """Whether ``address`` is in ``exempt_networks``, remembered per address (parsing
        an address costs more than the rest of a skipped stage; asked at every RCPT)."""
        known = self._exempt_cache.get(address)
        if known is None:
            ip = ip_of(address)
            known = ip is not None and any(ip in network for network in self.exempt)
            if len(self._exempt_cache) >= 4096:
                self._exempt_cache.clear()
            self._exempt_cache[address] = known
        return known

    def rcpt_to(self, client: Client, transaction: Transaction, recipient: str) -> Verdict:
        if self._exempt(client):
            return ACCEPT
        try:
            network = network_of(client.address)
        except ValueError:  # not an IP address (a UNIX socket): nothing to greylist
            return ACCEPT
        return self.check(network, sender_key(transaction.sender), recipient.lower())

    def check(self, network: str, sender: str, recipient: str) -> Verdict:
        """The verdict for one triplet, recording what it changes. A state file SQLite can't
        read is set aside and the state starts afresh (``_set_aside``)."""
        try:
            return self._checked(network, sender, recipient)
        except sqlite3.DatabaseError as e:
            if self.dsn or getattr(e, "sqlite_errorcode", None) not in _UNREADABLE:
                raise  # locked, busy, a full disk, a bug: the chain's on_error, as any failure
            self._set_aside(e)
        return self._checked(network, sender, recipient)

    def _checked(self, network: str, sender: str, recipient: str) -> Verdict:
        now = self._now()
        db = self._db()
        self._checks += 1
        if self._checks % _SWEEP_EVERY == 1:
            self.sweep(now)
        db.execute("BEGIN IMMEDIATE")
        try:
            verdict = self._check(db, now, network, sender, recipient)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # not the error to report
                db.execute("ROLLBACK")
            raise
        return verdict

    def _sqlite(self) -> sqlite3.Connection:
        """This thread's connection to the state file, opened anew when the file at ``path``
        is no longer the one it has open (set aside by another thread or worker process: a
        connection to the old one would go on writing state nobody else reads)."""
        local = self._local
        if getattr(local, "db", None) is not None and _identity(self.path) != local.identity:
            local.db.close()
            local.db = None
        if getattr(local, "db", None) is None:
            local.identity = None
            db = thread_connection(local, self.path, _SCHEMA)
            local.identity = _identity(self.path)
            return db
        return local.db  # type: ignore[no-any-return]

    def _set_aside(self, error: Exception) -> None:
        """The state file is not a database SQLite can read (a crash on a disk that lies
        about fsync, a stray write): it is renamed ``greylist.sqlite.corrupt-TIME`` and a new
        one started. The state only remembers who retried, so losing it costs senders one
        more ``delay``; keeping the file would answer every RCPT from outside with the
        chain's ``on_error`` (451 by default) until an administrator came."""
        local = self._local
        with _SET_ASIDE:
            opened = getattr(local, "identity", None)
            if getattr(local, "db", None) is not None:
                with contextlib.suppress(sqlite3.Error):
                    local.db.close()
                local.db = None
            local.identity = None
            current = _identity(self.path)
            if current is None or (opened is not None and opened != current):
                return  # set aside already (another thread or worker): use the new one
            aside = f"{self.path}.corrupt-{int(time.time())}"
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.path + suffix, aside + suffix)
        log.error(
            "greylist: {path} can't be read ({error}): set aside as {aside}, greylisting"
            " starts afresh",
            path=self.path,
            error=str(error),
            aside=aside,
        )

    def _check(self, db: Any, now: float, network: str, sender: str, recipient: str) -> Verdict:
        client = db.execute(
            "SELECT passes FROM clients WHERE network = ? AND last_seen > ?",
            (network, now - self.allow_for),
        ).fetchone()
        if client is not None and client[0] >= self.auto_allow_after:
            db.execute("UPDATE clients SET last_seen = ? WHERE network = ?", (now, network))
            return ACCEPT
        key = (network, sender, recipient)
        row = db.execute(
            "SELECT first_seen, passed, last_seen FROM triplets"
            " WHERE network = ? AND sender = ? AND recipient = ?",
            key,
        ).fetchone()
        if row is not None and row[1] is not None and row[2] > now - self.allow_for:
            db.execute(
                "UPDATE triplets SET last_seen = ? WHERE network = ? AND sender = ?"
                " AND recipient = ?",
                (now, *key),
            )
            return ACCEPT
        # first seen "in the future": the clock was set back since. Waiting until it catches
        # up would hold this sender's mail for as long as the jump: the triplet starts over.
        if row is None or row[1] is not None or now - row[0] > self.retry_window or row[0] > now:
            db.execute(
                "INSERT OR REPLACE INTO triplets (network, sender, recipient, first_seen,"
                " passed, last_seen) VALUES (?, ?, ?, ?, NULL, ?)",
                (*key, now, now),
            )
            return self._later(self.delay)
        waited = now - row[0]
        if waited < self.delay:
            return self._later(self.delay - waited)
        db.execute(
            "UPDATE triplets SET passed = ?, last_seen = ? WHERE network = ? AND sender = ?"
            " AND recipient = ?",
            (now, now, *key),
        )
        db.execute(
            "INSERT INTO clients (network, passes, last_seen) VALUES (?, 1, ?) ON CONFLICT"
            " (network) DO UPDATE SET passes = passes + 1, last_seen = excluded.last_seen",
            (network, now),
        )
        return ACCEPT

    @staticmethod
    def _later(seconds: float) -> Verdict:
        return Verdict.tempfail(f"greylisted, please try again in {max(1, round(seconds))} seconds")

    def sweep(self, now: float | None = None) -> None:
        """Forget triplets never retried in time, passed ones unused for ``allow_days``, and
        client networks not seen for as long; then, beyond ``max_pending`` triplets not yet
        retried, the oldest of them. A flood of distinct triplets (a botnet's random senders,
        a dictionary attack's recipients) otherwise grew the state by every one of them for
        ``retry_window`` (two days): gigabytes, for mail that mostly never comes back. A
        real sender whose pending triplet is dropped is only greylisted once more."""
        now = self._now() if now is None else now
        db = self._db()
        db.execute(
            "DELETE FROM triplets WHERE (passed IS NULL AND first_seen < ?) OR last_seen < ?",
            (now - self.retry_window, now - self.allow_for),
        )
        db.execute("DELETE FROM clients WHERE last_seen < ?", (now - self.allow_for,))
        (pending,) = db.execute("SELECT count(*) FROM triplets WHERE passed IS NULL").fetchone()
        if pending > self.max_pending:
            db.execute(
                "DELETE FROM triplets WHERE passed IS NULL AND first_seen <= (SELECT first_seen"
                " FROM triplets WHERE passed IS NULL ORDER BY first_seen LIMIT 1 OFFSET ?)",
                (pending - self.max_pending - 1,),
            )
