"""The accounts database (SQLite): domains and users with their password hashes.

One ``AccountsDB`` per process and per path; each thread gets its own connection (SQLite
connections can't be shared), and WAL mode lets the CLI write while the server reads. Methods
block: the server calls them from its accounts thread pool (checker.py, routing.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

from zope.interface import implementer

from txmailhost.accounts import apppasswords
from txmailhost.accounts.addresses import (
    canonical_address,
    canonical_domain,
    new_address,
    new_domain,
)
from txmailhost.accounts.interfaces import AccountError, IAccounts, IAddressRules
from txmailhost.accounts.passwords import hash_password, weakness
from txmailhost.asciinum import is_number
from txmailhost.sqlitewal import enable_wal

# Names other modules (the CLI, tests) import from here; they live in pure modules so that
# code which only needs the interfaces never loads the SQLite backend.
__all__ = [
    "AccountError",
    "AccountsDB",
    "AddressRules",
    "canonical_address",
    "canonical_domain",
    "parse_size",
]

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
-- Where each account logged in successfully lately (origins.py): its owner's addresses, which
-- the login throttle never refuses for someone else's failures. Pruned as it is written.
CREATE TABLE IF NOT EXISTS login_origins (
    address TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    client TEXT NOT NULL,       -- an IPv4 address or an IPv6 /64
    last_login REAL NOT NULL,   -- Unix time
    PRIMARY KEY (address, client)
);
"""

# Version 2 (routing): aliases, per-user forwarding, quotas, domain aliases. Applied once to
# databases made by version 1; ``PRAGMA user_version`` records what a file has.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS aliases (
    address TEXT NOT NULL,      -- 'team@example.org', or '@example.org' for the catch-all
    target TEXT NOT NULL,       -- any address, local or remote
    created REAL NOT NULL,
    PRIMARY KEY (address, target)
);
CREATE TABLE IF NOT EXISTS forwards (
    address TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    target TEXT NOT NULL,
    PRIMARY KEY (address, target)
);
ALTER TABLE users ADD COLUMN keep_copy INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN quota INTEGER;           -- bytes, NULL: the domain's default
ALTER TABLE domains ADD COLUMN default_quota INTEGER; -- bytes, NULL: unlimited
ALTER TABLE domains ADD COLUMN alias_of TEXT;         -- mail for this domain goes to that one
"""
SCHEMA_VERSION = 2
# Users who may use the webmail's admin console (``txmailhost user admin ADDR on``).
_ADMINS = """
CREATE TABLE IF NOT EXISTS admins (
    address TEXT PRIMARY KEY REFERENCES users(address) ON DELETE CASCADE
);
"""


@implementer(IAccounts)
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
            enable_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            _migrate(conn)
            conn.executescript(apppasswords.SCHEMA)
            conn.executescript(_ADMINS)
            self._local.conn = conn
        return conn

    def address_rules(self) -> AddressRules:
        """The aliases, forwards and quotas kept in the same database file."""
        return AddressRules(self)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- domains -----------------------------------------------------------------------------

    def add_domain(self, domain: str, alias_of: str | None = None) -> str:
        """Serve ``domain``; with ``alias_of``, mail for it goes to the same users there."""
        name = new_domain(domain)
        target = canonical_domain(alias_of) if alias_of else None
        if target is not None:
            if target == name:
                raise AccountError(f"{name} can't be an alias of itself")
            if not self.has_domain(target):
                raise AccountError(f"no such domain: {target}")
            if self.domain_alias_of(target):
                raise AccountError(f"{target} is itself an alias; point {name} at its target")
        try:
            self._db.execute(
                "INSERT INTO domains (name, created, alias_of) VALUES (?, ?, ?)",
                (name, time.time(), target),
            )
        except sqlite3.IntegrityError:
            raise AccountError(f"domain {name} already exists") from None
        return name

    def domain_alias_of(self, domain: str) -> str | None:
        row = self._db.execute("SELECT alias_of FROM domains WHERE name = ?", (domain.lower(),))
        found = row.fetchone()
        return found[0] if found else None

    def list_domains(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def domain_table(self) -> list[tuple[str, str | None, int | None]]:
        """(name, alias_of, default_quota) of every domain, for ``domain list``."""
        return self._db.execute(
            "SELECT name, alias_of, default_quota FROM domains ORDER BY name"
        ).fetchall()

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
            db.execute(
                "DELETE FROM aliases WHERE address = ? OR address LIKE ?", (f"@{name}", f"%@{name}")
            )
            db.execute("UPDATE domains SET alias_of = NULL WHERE alias_of = ?", (name,))
            db.execute("DELETE FROM domains WHERE name = ?", (name,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return users

    # -- users -------------------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> str:
        canonical = new_address(address)
        _validate_password(password, canonical)
        domain = canonical.split("@", 1)[1]
        if not self.has_domain(domain):
            raise AccountError(
                f"domain {domain} is not served here; add it with 'domain add {domain}'"
            )
        target = self.domain_alias_of(domain)
        if target:
            raise AccountError(f"{domain} is an alias of {target}; add the user there")
        encoded = hash_password(password)
        try:
            self._db.execute(
                "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, ?, ?)",
                (canonical, domain, encoded, time.time()),
            )
        except sqlite3.IntegrityError:
            if self.has_user(canonical):
                raise AccountError(f"user {canonical} already exists") from None
            raise AccountError(f"domain {domain} was removed meanwhile") from None
        return canonical

    def add_user_with_hash(self, address: str, password_hash: str) -> str:
        """Create an account from a stored password hash (``txmailhost import`` of an export):
        the password itself is never known here, so it is not checked for strength. A hash
        in a scheme ``passwords.verify_password`` doesn't know just never matches."""
        canonical = new_address(address)
        if not password_hash or not password_hash.isascii() or not password_hash.isprintable():
            raise AccountError(f"{canonical}: the stored password hash is not printable ASCII")
        domain = canonical.split("@", 1)[1]
        if not self.has_domain(domain):
            raise AccountError(
                f"domain {domain} is not served here; add it with 'domain add {domain}'"
            )
        try:
            self._db.execute(
                "INSERT INTO users (address, domain, password_hash, created) VALUES (?, ?, ?, ?)",
                (canonical, domain, password_hash, time.time()),
            )
        except sqlite3.IntegrityError:
            raise AccountError(f"user {canonical} already exists") from None
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
        _validate_password(password, canonical)
        cursor = self._db.execute(
            "UPDATE users SET password_hash = ? WHERE address = ?",
            (hash_password(password), canonical),
        )
        if cursor.rowcount == 0:
            raise AccountError(f"no such user: {canonical}")
        return canonical

    def replace_password_hash(self, address: str, old: str, new: str) -> bool:
        cursor = self._db.execute(
            "UPDATE users SET password_hash = ? WHERE address = ? AND password_hash = ?",
            (new, address.lower(), old),
        )
        return cursor.rowcount == 1

    def login_origin_seen(self, address: str, client: str, since: float) -> bool:
        """``address`` logged in successfully from ``client`` at ``since`` or later."""
        row = self._db.execute(
            "SELECT 1 FROM login_origins WHERE address = ? AND client = ? AND last_login >= ?",
            (address, client, since),
        )
        return row.fetchone() is not None

    def remember_login_origin(
        self, address: str, client: str, when: float, oldest: float, keep: int
    ) -> None:
        """Record a successful login; forget the account's origins older than ``oldest`` and
        all but its ``keep`` most recent. A user removed meanwhile records nothing."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO login_origins (address, client, last_login)"
                " SELECT address, ?, ? FROM users WHERE address = ?"
                " ON CONFLICT (address, client) DO UPDATE SET last_login = excluded.last_login",
                (client, when, address),
            )
            db.execute(
                "DELETE FROM login_origins WHERE address = ? AND (last_login < ? OR client NOT IN"
                " (SELECT client FROM login_origins WHERE address = ?"
                " ORDER BY last_login DESC LIMIT ?))",
                (address, oldest, address, keep),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- administrators ----------------------------------------------------------------------

    def is_admin(self, address: str) -> bool:
        row = self._db.execute("SELECT 1 FROM admins WHERE address = ?", (address.lower(),))
        return row.fetchone() is not None

    def set_admin(self, address: str, admin: bool) -> str:
        canonical = canonical_address(address)
        if not self.has_user(canonical):
            raise AccountError(f"no such user: {canonical}")
        if admin:
            self._db.execute("INSERT OR IGNORE INTO admins VALUES (?)", (canonical,))
        else:
            self._db.execute("DELETE FROM admins WHERE address = ?", (canonical,))
        return canonical

    # -- app passwords (apppasswords.py) -------------------------------------------------------

    def add_app_password(self, address: str, name: str) -> tuple[int, str]:
        canonical = canonical_address(address)
        if not self.has_user(canonical):
            raise AccountError(f"no such user: {canonical}")
        try:
            return apppasswords.add(self._db, canonical, name)
        except ValueError as e:
            raise AccountError(str(e)) from None

    def list_app_passwords(self, address: str) -> list[apppasswords.AppPassword]:
        return apppasswords.listed(self._db, canonical_address(address))

    def remove_app_password(self, address: str, app_id: int) -> bool:
        return apppasswords.remove(self._db, canonical_address(address), app_id)

    def app_password_hashes(self, address: str, password: str) -> list[tuple[int, str]]:
        return apppasswords.candidates(self._db, address.lower(), password)

    def app_password_used(self, app_id: int) -> None:
        apppasswords.used(self._db, app_id)

    def remove_user(self, address: str) -> str:
        canonical = canonical_address(address)
        cursor = self._db.execute("DELETE FROM users WHERE address = ?", (canonical,))
        if cursor.rowcount == 0:
            raise AccountError(f"no such user: {canonical}")
        return canonical


def _migrate(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < 2:
            for statement in _SCHEMA_V2.split(";"):  # no ';' inside the comments above
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _validate_password(password: str, address: str) -> None:
    """Refuse a password an attacker would try first (``passwords.weakness``) or one the mail
    protocols can't carry; the CLI prints the message as its one-line error."""
    if len(password) > 1024:
        raise AccountError("password too long: at most 1024 characters")
    if any(c in password for c in "\r\n\0"):
        raise AccountError("password may not contain line breaks or NUL")
    reason = weakness(password, address)
    if reason is not None:
        raise AccountError(reason)


# Called with the changed address inside the transaction that changes its alias or forward,
# before the commit; raising refuses the change. It reads the uncommitted rows through this
# thread's connection: the CLI's loop check (routing.Router.loop_at) does, so the server never
# sees a loop, not even for a moment.
RuleCheck = Callable[[str], None]


@implementer(IAddressRules)
class AddressRules:
    """Aliases, forwards, domain aliases and quotas: the rules ``routing.py`` applies.

    Kept apart from ``AccountsDB`` (which owns who exists and their passwords) but on the same
    database, so the CLI edits them while the server runs and the next lookup sees the change.
    """

    def __init__(self, accounts: AccountsDB) -> None:
        self.accounts = accounts

    @property
    def _db(self) -> sqlite3.Connection:
        return self.accounts._db

    # -- aliases -----------------------------------------------------------------------------

    def _alias_source(self, address: str, creating: bool = False) -> str:
        """``local@domain`` or ``@domain`` (the domain's catch-all), in one of our domains.

        Only a literal ``@`` first means the catch-all: stripping first would turn a
        leading space, tab or line separator (``"\u2028@example.org"``, pasted from
        somewhere) into the catch-all, silently taking every unknown address's mail."""
        if address.startswith("@"):
            source = f"@{canonical_domain(address[1:])}"
        else:
            source = new_address(address) if creating else canonical_address(address)
        domain = source.rpartition("@")[2]
        if not self.accounts.has_domain(domain):
            raise AccountError(f"domain {domain} is not served here")
        target = self.accounts.domain_alias_of(domain) if creating else None
        if target:
            # Routing maps every address of an alias domain to its target domain before it
            # looks for aliases (routing.py, rule 1): one made here would never be used.
            raise AccountError(f"{domain} is an alias of {target}; add the alias there")
        return source

    def add_alias(
        self, address: str, targets: list[str], check: RuleCheck | None = None
    ) -> tuple[str, list[str]]:
        source = self._alias_source(address, creating=True)
        if not targets:
            raise AccountError("an alias needs at least one target address")
        clean = [new_address(t) for t in targets]
        if source in clean:
            raise AccountError(f"{source} can't be an alias of itself")
        if self.accounts.has_user(source):
            raise AccountError(f"{source} is a user account; use 'user forward' to redirect it")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)",
                [(source, t, time.time()) for t in clean],
            )
            if check is not None:
                check(source)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return source, clean

    def remove_alias(self, address: str, targets: list[str] | None = None) -> int:
        source = self._alias_source(address)
        if targets:
            clean = [canonical_address(t) for t in targets]
            removed = sum(
                self._db.execute(
                    "DELETE FROM aliases WHERE address = ? AND target = ?", (source, t)
                ).rowcount
                for t in clean
            )
        else:
            removed = self._db.execute("DELETE FROM aliases WHERE address = ?", (source,)).rowcount
        if not removed:
            raise AccountError(
                f"no such alias: {source}" + (f" -> {', '.join(targets)}" if targets else "")
            )
        return removed

    def list_aliases(self, domain: str | None = None) -> list[tuple[str, list[str]]]:
        if domain is None:
            rows = self._db.execute("SELECT address, target FROM aliases ORDER BY address, target")
        else:
            name = canonical_domain(domain)
            rows = self._db.execute(
                "SELECT address, target FROM aliases WHERE address = ? OR address LIKE ?"
                " ORDER BY address, target",
                (f"@{name}", f"%@{name}"),
            )
        listing: dict[str, list[str]] = {}
        for source, target in rows:
            listing.setdefault(source, []).append(target)
        return list(listing.items())

    def alias_targets(self, address: str) -> list[str]:
        return [
            row[0]
            for row in self._db.execute(
                "SELECT target FROM aliases WHERE address = ? ORDER BY target", (address,)
            )
        ]

    # -- forwarding --------------------------------------------------------------------------

    def set_forward(
        self, user: str, targets: list[str], keep_copy: bool, check: RuleCheck | None = None
    ) -> list[str]:
        address = canonical_address(user)
        if not self.accounts.has_user(address):
            raise AccountError(f"no such user: {address}")
        clean = [new_address(t) for t in targets]
        if address in clean:
            raise AccountError("a user can't forward to their own address (use --keep-copy)")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM forwards WHERE address = ?", (address,))
            db.executemany(
                "INSERT OR IGNORE INTO forwards VALUES (?, ?)", [(address, t) for t in clean]
            )
            db.execute(
                "UPDATE users SET keep_copy = ? WHERE address = ?", (int(keep_copy), address)
            )
            if check is not None:
                check(address)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return clean

    def forward_of(self, user: str) -> tuple[list[str], bool]:
        """(forward targets, keep a copy in the user's INBOX)."""
        targets = [
            row[0]
            for row in self._db.execute(
                "SELECT target FROM forwards WHERE address = ? ORDER BY target", (user,)
            )
        ]
        row = self._db.execute("SELECT keep_copy FROM users WHERE address = ?", (user,)).fetchone()
        return targets, bool(row[0]) if row else True

    # -- quotas ------------------------------------------------------------------------------

    def set_quota(self, user: str, limit: int | None) -> str:
        address = canonical_address(user)
        _check_quota(limit)
        cursor = self._db.execute("UPDATE users SET quota = ? WHERE address = ?", (limit, address))
        if cursor.rowcount == 0:
            raise AccountError(f"no such user: {address}")
        return address

    def set_domain_quota(self, domain: str, limit: int | None) -> str:
        name = canonical_domain(domain)
        _check_quota(limit)
        cursor = self._db.execute(
            "UPDATE domains SET default_quota = ? WHERE name = ?", (limit, name)
        )
        if cursor.rowcount == 0:
            raise AccountError(f"no such domain: {name}")
        return name

    def quota_of(self, user: str) -> int | None:
        """The user's storage limit in bytes (their own, else their domain's); None: unlimited."""
        row = self._db.execute(
            "SELECT users.quota, domains.default_quota FROM users JOIN domains"
            " ON users.domain = domains.name WHERE users.address = ?",
            (user,),
        ).fetchone()
        if row is None:
            return None
        return row[0] if row[0] is not None else row[1]

    def first_user(self, domain: str | None) -> str | None:
        """The oldest account of ``domain`` (or of any domain): who gets postmaster@ mail when
        nobody was named for it."""
        if domain:
            row = self._db.execute(
                "SELECT address FROM users WHERE domain = ? ORDER BY created, address LIMIT 1",
                (domain,),
            ).fetchone()
            if row:
                return row[0]
        row = self._db.execute(
            "SELECT address FROM users ORDER BY created, address LIMIT 1"
        ).fetchone()
        return row[0] if row else None


def _check_quota(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise AccountError("a quota is a positive number of bytes, or none for no limit")


def parse_size(text: str) -> int | None:
    """'500M', '2G', '1048576', 'none' -> bytes (None for no limit); AccountError otherwise."""
    value = text.strip().lower()
    if value in ("none", "unlimited", "0"):
        return None
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    factor = 1
    if value and value[-1] in units:
        factor, value = units[value[-1]], value[:-1]
    elif value.endswith(("kb", "mb", "gb", "tb")):
        factor, value = units[value[-2]], value[:-2]
    if not is_number(value) or len(value) > 15 or int(value) == 0:
        raise AccountError(f"not a size: {text!r} (expected e.g. 500M, 2G, 1048576 or none)")
    return int(value) * factor
