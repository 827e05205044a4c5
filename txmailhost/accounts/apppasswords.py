"""App-specific passwords: one per mail client, named, revocable, each its own scrypt hash.

A user gives a phone's mail app its own password instead of the account's, and can revoke it
alone when the phone is lost, without changing the password everywhere else. They are for
mail clients (IMAP, POP3, SMTP AUTH, ManageSieve): the webmail's login asks for the
account's own password (``IAccountPasswordOnly``), so a leaked app password can't reach the
settings that make more of them.

Form: five groups of four lowercase base32 characters (``abcd-efgh-ijkl-mnop-qrst``, 100
bits from ``secrets``), shown once when made and never stored: only its scrypt hash is, like
the account's password. The first group is kept in clear as the *lookup*: a login tries only
the app password whose lookup matches, so a wrong password costs one scrypt, not one per app
password. The remaining 80 random bits, behind scrypt, are what protects it.

The table ``app_passwords`` lives in the accounts database (``DATA/accounts.sqlite``); rows go
with their user (``ON DELETE CASCADE``). These functions take the SQLite connection and block:
``AccountsDB`` calls them from its pool.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import time
from dataclasses import dataclass

from zope.interface import Interface

from txmailhost.accounts.passwords import hash_password

SCHEMA = """
CREATE TABLE IF NOT EXISTS app_passwords (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name TEXT NOT NULL,
    lookup TEXT NOT NULL,          -- the password's first group, to find its row
    password_hash TEXT NOT NULL,   -- scrypt, as users.password_hash
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX IF NOT EXISTS app_passwords_by_user ON app_passwords(address, lookup);
"""
MAX_PER_USER = 50
MAX_NAME = 100


class IAccountPasswordOnly(Interface):
    """Marks credentials that may be checked against the account's own password only, never
    an app password (the webmail's login and its password change)."""


@dataclass(frozen=True)
class AppPassword:
    id: int
    name: str
    created: float
    last_used: float | None


def new_password() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()  # 24 characters
    return "-".join(raw[i : i + 4] for i in range(0, 20, 4))


def lookup_of(password: str) -> str | None:
    """The lookup group of a password in app-password form, else None."""
    groups = password.strip().lower().split("-")
    if len(groups) != 5 or any(len(g) != 4 for g in groups):
        return None
    return groups[0]


def add(conn: sqlite3.Connection, address: str, name: str) -> tuple[int, str]:
    """(id, the password in clear: shown once) of a new app password named ``name``."""
    name = " ".join(name.split())[:MAX_NAME]
    if not name:
        raise ValueError("an app password needs a name")
    count = conn.execute("SELECT COUNT(*) FROM app_passwords WHERE address = ?", (address,))
    if count.fetchone()[0] >= MAX_PER_USER:
        raise ValueError(f"at most {MAX_PER_USER} app passwords per user")
    password = new_password()
    cursor = conn.execute(
        "INSERT INTO app_passwords (address, name, lookup, password_hash, created)"
        " VALUES (?, ?, ?, ?, ?)",
        (address, name, lookup_of(password), hash_password(password), time.time()),
    )
    app_id = getattr(cursor, "lastrowid", None)
    if app_id is None:  # PostgreSQL's cursors have no lastrowid (RETURNING needs SQLite 3.35)
        app_id = conn.execute(
            "SELECT max(id) FROM app_passwords WHERE address = ? AND lookup = ?",
            (address, lookup_of(password)),
        ).fetchone()[0]
    return int(app_id), password


def listed(conn: sqlite3.Connection, address: str) -> list[AppPassword]:
    rows = conn.execute(
        "SELECT id, name, created, last_used FROM app_passwords WHERE address = ? ORDER BY id",
        (address,),
    )
    return [AppPassword(*row) for row in rows]


def remove(conn: sqlite3.Connection, address: str, app_id: int) -> bool:
    """Revoke one; False if ``address`` has no app password ``app_id``."""
    cursor = conn.execute(
        "DELETE FROM app_passwords WHERE address = ? AND id = ?", (address, app_id)
    )
    return cursor.rowcount == 1


def candidates(conn: sqlite3.Connection, address: str, password: str) -> list[tuple[int, str]]:
    """(id, hash) of the app passwords ``password`` could be (by its lookup group)."""
    lookup = lookup_of(password)
    if lookup is None:
        return []
    rows = conn.execute(
        "SELECT id, password_hash FROM app_passwords WHERE address = ? AND lookup = ?",
        (address, lookup),
    )
    return list(rows)


def used(conn: sqlite3.Connection, app_id: int) -> None:
    conn.execute("UPDATE app_passwords SET last_used = ? WHERE id = ?", (time.time(), app_id))
