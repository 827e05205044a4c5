"""Access control lists (RFC 4314): the rights vocabulary and the table that keeps ACLs.

Rights are the letters of RFC 4314 §2.1: ``l`` lookup, ``r`` read, ``s`` keep \\Seen, ``w``
write other flags, ``i`` insert (APPEND, COPY), ``p`` post, ``k`` create child mailboxes, ``x``
delete the mailbox, ``t`` set \\Deleted, ``e`` expunge, ``a`` administer the ACL. The obsolete
``c`` and ``d`` of RFC 2086 are virtual (§2.1.1): ``c`` is ``k`` and ``d`` is ``xte`` when
given, and they are shown whenever one of their members is held.

An identifier is a user's canonical address, ``anyone`` (every authenticated user), or either
with a leading ``-`` for negative rights (§2: taken away from what the positive entries grant).
The owner of a mailbox holds every right on it, always; the owner is not an ACL entry. A
domain's shared folders belong to the pseudo-user ``#shared@DOMAIN`` (no account: ``#`` starts
no local part the administrator would give a person), whose folders only their ACL opens.

``AclTable`` keeps every ACL of a store in one SQLite table ``acl(owner, mailbox, identifier,
rights)``: the store's own record of the rights (each change a committed transaction, so a
SETACL answered OK survives a restart or a crash) and, through its index on ``identifier``,
the answer to "which mailboxes were shared with me" without walking every user's tree (what
Dovecot's shared-mailbox dictionary is for). The store renames and removes rows with the
mailboxes they belong to.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping

RIGHTS = "lrswipkxtea"  # canonical order, as MYRIGHTS and ACL responses give them
OBSOLETE = {"c": "k", "d": "xte"}  # RFC 4314 §2.1.1, for a server of RIGHTS=texk
ANYONE = "anyone"
SHARED_LOCAL_PART = "#shared"  # the pseudo-user owning a domain's shared folders


def shared_owner(domain_or_address: str) -> str:
    """``#shared@DOMAIN``: the owner of the shared folders of a domain (or an address's)."""
    return f"{SHARED_LOCAL_PART}@{domain_or_address.rpartition('@')[2]}"


class RightsError(ValueError):
    """A rights string that can't be parsed (SETACL answers BAD, RFC 4314 §3.1)."""


def normalize(letters: Iterable[str]) -> str:
    """The rights in ``letters`` (virtual ``c``/``d`` expanded), in canonical order;
    ``RightsError`` names a letter that is not a right."""
    held: set[str] = set()
    for letter in letters:
        if letter in OBSOLETE:
            held.update(OBSOLETE[letter])
        elif letter in RIGHTS:
            held.add(letter)
        elif letter.isupper():
            raise RightsError("uppercase rights are not allowed")
        else:
            raise RightsError(f"the {letter!r} right is not supported")
    return "".join(r for r in RIGHTS if r in held)


def modify(current: str, change: str) -> str:
    """SETACL's third argument applied to ``current`` (§3.1): ``+`` adds, ``-`` removes,
    anything else replaces."""
    if change.startswith("+"):
        return normalize(current + normalize(change[1:]))
    if change.startswith("-"):
        removed = normalize(change[1:])
        return "".join(r for r in current if r not in removed)
    return normalize(change)


def display(rights: str) -> str:
    """Rights as MYRIGHTS and ACL show them: the virtual ``c`` and ``d`` added when one of
    their members is held (§2.1.1), so an RFC 2086 client reads them too."""
    out = rights
    if "k" in rights:
        out += "c"
    if any(r in rights for r in OBSOLETE["d"]):
        out += "d"
    return out


def effective(acl: Mapping[str, str], user: str) -> str:
    """What ``user`` (not the owner) may do by ``acl``: the rights granted to the user and to
    ``anyone``, less those the negative entries take away (§2)."""
    granted = set(acl.get(user, "")) | set(acl.get(ANYONE, ""))
    denied = set(acl.get("-" + user, "")) | set(acl.get("-" + ANYONE, ""))
    return "".join(r for r in RIGHTS if r in granted and r not in denied)


def check_identifier(identifier: str) -> str:
    """The canonical (lower-case) form of an identifier; ``RightsError`` for one that names
    no one: not ``anyone``, not an address."""
    text = identifier.strip().lower()
    name = text[1:] if text.startswith("-") else text
    if name == ANYONE:
        return text
    local, sep, domain = name.rpartition("@")
    if not sep or not local or not domain or any(c.isspace() or ord(c) < 32 for c in name):
        raise RightsError("an identifier is anyone or a user's address")
    return text


_SCHEMA = """
CREATE TABLE IF NOT EXISTS acl (
    owner TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    identifier TEXT NOT NULL,
    rights TEXT NOT NULL,
    PRIMARY KEY (owner, mailbox, identifier)
);
CREATE INDEX IF NOT EXISTS acl_by_identifier ON acl (identifier);
"""


def _write(
    db: sqlite3.Connection, owner: str, mailbox: str, identifier: str, rights: str | None
) -> None:
    """The entry set to ``rights``; None or "" removes it."""
    if rights:
        db.execute(
            "INSERT OR REPLACE INTO acl (owner, mailbox, identifier, rights) VALUES (?, ?, ?, ?)",
            (owner, mailbox, identifier, rights),
        )
    else:
        db.execute(
            "DELETE FROM acl WHERE owner = ? AND mailbox = ? AND identifier = ?",
            (owner, mailbox, identifier),
        )


class AclTable:
    """Every ACL of one store, in the SQLite database at ``path`` (``":memory:"`` for the
    memory store). Blocking: the store calls it from its worker threads; one lock keeps a
    read-modify-write whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def get(self, owner: str, mailbox: str) -> dict[str, str]:
        """``mailbox``'s entries, identifier → rights."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT identifier, rights FROM acl WHERE owner = ? AND mailbox = ?",
                (owner, mailbox),
            )
            return dict(rows.fetchall())

    def set(self, owner: str, mailbox: str, identifier: str, rights: str | None) -> None:
        """Grant ``rights`` to ``identifier`` (replacing what it had); None or "" removes the
        entry."""
        with self._lock:
            db = self._connection()
            _write(db, owner, mailbox, identifier, rights)

    def change(self, owner: str, mailbox: str, identifier: str, change: str) -> str:
        """SETACL's ``change`` applied to ``identifier``'s entry (``modify``) in one write
        transaction, so that another process's change between the read and the write can't
        be lost (worker processes share the file; ``_lock`` only holds this one's
        threads). The rights the entry holds now."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT rights FROM acl WHERE owner = ? AND mailbox = ? AND identifier = ?",
                    (owner, mailbox, identifier),
                ).fetchone()
                new = modify(row[0] if row else "", change)
                _write(db, owner, mailbox, identifier, new)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return new

    def copy(self, owner: str, source: str, target: str) -> None:
        """Give ``target`` the entries of ``source`` (a new mailbox inherits its parent's ACL,
        RFC 4314 §4 CREATE)."""
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO acl (owner, mailbox, identifier, rights)"
                " SELECT owner, ?, identifier, rights FROM acl WHERE owner = ? AND mailbox = ?",
                (target, owner, source),
            )

    def granted(self, identifiers: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
        """Every mailbox with an entry for one of ``identifiers``, with its whole ACL (the
        negative entries matter too): (owner, mailbox) → identifier → rights."""
        wanted = list(identifiers)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        with self._lock:
            db = self._connection()
            rows = db.execute(
                "SELECT a.owner, a.mailbox, a.identifier, a.rights FROM acl a"
                f" JOIN (SELECT DISTINCT owner, mailbox FROM acl WHERE identifier IN ({marks})) g"
                " ON a.owner = g.owner AND a.mailbox = g.mailbox",
                wanted,
            ).fetchall()
        found: dict[tuple[str, str], dict[str, str]] = {}
        for owner, mailbox, identifier, rights in rows:
            found.setdefault((owner, mailbox), {})[identifier] = rights
        return found

    def renamed(self, owner: str, old: str, new: str) -> None:
        """``old`` and the mailboxes below it are now ``new`` and below (RENAME keeps ACLs,
        RFC 4314 §4)."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "UPDATE acl SET mailbox = ? || substr(mailbox, ?)"
                    " WHERE owner = ? AND (mailbox = ? OR substr(mailbox, 1, ?) = ?)",
                    (new, len(old) + 1, owner, old, len(old) + 1, old + "/"),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def deleted(self, owner: str, mailbox: str | None) -> None:
        """``mailbox`` is gone (DELETE removes its ACL, §4). When None, the user was removed:
        every ACL of the user's goes, and so do the rights granted to the user, so that an
        account made later under the same address doesn't inherit them (negative entries
        stay: they only ever take rights away)."""
        with self._lock:
            if mailbox is None:
                self._connection().execute(
                    "DELETE FROM acl WHERE owner = ? OR identifier = ?", (owner, owner)
                )
            else:
                self._connection().execute(
                    "DELETE FROM acl WHERE owner = ? AND mailbox = ?", (owner, mailbox)
                )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
