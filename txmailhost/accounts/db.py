"""The accounts database (SQLite): domains and users with their password hashes.

One ``AccountsDB`` per process and per path; each thread gets its own connection (SQLite
connections can't be shared), and WAL mode lets the CLI write while the server reads. Methods
block: the server calls them from its accounts thread pool (checker.py, routing.py).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time

from txmailhost.accounts.passwords import hash_password

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS users_by_domain ON users(domain);
"""

# A conservative dot-atom local part (RFC 5322 3.2.3) without quoting: it also becomes a
# directory name, so nothing here may mean anything to a file system.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AccountError(Exception):
    """A request the accounts database refuses; the message is meant for the administrator."""


def canonical_domain(domain: str) -> str:
    """Lower-case ASCII (IDNA) form of a domain, or AccountError saying why it isn't one."""
    text = domain.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise AccountError(f"not a valid domain name: {domain!r}") from None
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AccountError(f"not a valid domain name: {domain!r} (expected e.g. example.org)")
    return text


def canonical_address(address: str) -> str:
    """``local@domain`` in lower case, or AccountError saying what is wrong."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        raise AccountError(f"not an address: {address!r} (expected user@domain)")
    local = local.lower()
    if len(local) > 64 or not _LOCAL.match(local):
        raise AccountError(f"unsupported local part in {address!r}")
    return f"{local}@{canonical_domain(domain)}"


class AccountsDB:
    """Domains and users in the SQLite file at ``path`` (created with its schema on first use)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    @property
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- domains -----------------------------------------------------------------------------

    def add_domain(self, domain: str) -> str:
        name = canonical_domain(domain)
        try:
            self._db.execute("INSERT INTO domains VALUES (?, ?)", (name, time.time()))
        except sqlite3.IntegrityError:
            raise AccountError(f"domain {name} already exists") from None
        return name

    def list_domains(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def has_domain(self, domain: str) -> bool:
        try:
            name = canonical_domain(domain)
        except AccountError:
            return False
        row = self._db.execute("SELECT 1 FROM domains WHERE name = ?", (name,))
        return row.fetchone() is not None

    def remove_domain(self, domain: str, force: bool = False) -> list[str]:
        """Remove a domain; with users in it only when ``force`` (their accounts go too).

        Returns the addresses removed along with it.
        """
        name = canonical_domain(domain)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self.has_domain(name):
                raise AccountError(f"no such domain: {name}")
            users = [
                r[0] for r in db.execute("SELECT address FROM users WHERE domain = ?", (name,))
            ]
            if users and not force:
                raise AccountError(
                    f"domain {name} still has {len(users)} user(s); delete them first or use --force"
                )
            db.execute("DELETE FROM users WHERE domain = ?", (name,))
            db.execute("DELETE FROM domains WHERE name = ?", (name,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return users

    # -- users -------------------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> str:
        canonical = canonical_address(address)
        _validate_password(password)
        domain = canonical.split("@", 1)[1]
        if not self.has_domain(domain):
            raise AccountError(
                f"domain {domain} is not served here; add it with 'domain add {domain}'"
            )
        encoded = hash_password(password)
        try:
            self._db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?)", (canonical, domain, encoded, time.time())
            )
        except sqlite3.IntegrityError:
            if self.has_user(canonical):
                raise AccountError(f"user {canonical} already exists") from None
            raise AccountError(f"domain {domain} was removed meanwhile") from None
        return canonical

    def list_users(self, domain: str | None = None) -> list[str]:
        if domain is None:
            rows = self._db.execute("SELECT address FROM users ORDER BY domain, address")
        else:
            name = canonical_domain(domain)
            if not self.has_domain(name):
                raise AccountError(f"no such domain: {name}")
            rows = self._db.execute(
                "SELECT address FROM users WHERE domain = ? ORDER BY address", (name,)
            )
        return [row[0] for row in rows]

    def has_user(self, address: str) -> bool:
        row = self._db.execute("SELECT 1 FROM users WHERE address = ?", (address.lower(),))
        return row.fetchone() is not None

    def lookup(self, address: str) -> tuple[bool, bool]:
        """(is the domain ours, is there such a user): one query for the RCPT hot path."""
        domain = address.rpartition("@")[2].lower()
        row = self._db.execute(
            "SELECT EXISTS(SELECT 1 FROM domains WHERE name = ?),"
            " EXISTS(SELECT 1 FROM users WHERE address = ?)",
            (domain, address.lower()),
        ).fetchone()
        return bool(row[0]), bool(row[1])

    def password_hash(self, address: str) -> str | None:
        row = self._db.execute(
            "SELECT password_hash FROM users WHERE address = ?", (address.lower(),)
        )
        found = row.fetchone()
        return found[0] if found else None

    def set_password(self, address: str, password: str) -> str:
        canonical = canonical_address(address)
        _validate_password(password)
        cursor = self._db.execute(
            "UPDATE users SET password_hash = ? WHERE address = ?",
            (hash_password(password), canonical),
        )
        if cursor.rowcount == 0:
            raise AccountError(f"no such user: {canonical}")
        return canonical

    def remove_user(self, address: str) -> str:
        canonical = canonical_address(address)
        cursor = self._db.execute("DELETE FROM users WHERE address = ?", (canonical,))
        if cursor.rowcount == 0:
            raise AccountError(f"no such user: {canonical}")
        return canonical


def _validate_password(password: str) -> None:
    if len(password) < 8:
        raise AccountError("password too short: use at least 8 characters")
    if len(password) > 1024:
        raise AccountError("password too long: at most 1024 characters")
    if any(c in password for c in "\r\n\0"):
        raise AccountError("password may not contain line breaks or NUL")
