"""Accounts in PostgreSQL: the same domains, users, aliases, forwards and quotas as
``db.py``, in the database of ``[store] dsn``, so that every node sees the same accounts and a
user added on one can log in on all (DESIGN invariant 5, across machines).

Why a translating connection rather than a second copy of the SQL: ``db.py``'s statements are
standard SQL but for three SQLite spellings (``?`` placeholders, ``BEGIN IMMEDIATE``, ``INSERT
OR IGNORE``) and its unique-key errors (``sqlite3.IntegrityError``, which its methods turn
into ``AccountError``). ``_Translated`` rewrites those three and raises that error, so both
backends run one body of SQL and can't drift apart. The tables are created by the store's
migrations (``store/postgres_schema.py``, step 2).

One connection per thread (the accounts thread pool, the CLI's one thread), autocommit: the
explicit ``BEGIN``/``COMMIT`` of ``db.py`` delimit its transactions as they do in SQLite.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from zope.interface import implementer

from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.interfaces import IAccounts
from txmailhost.store.pgconn import usable

_OR_IGNORE = re.compile(r"INSERT OR IGNORE INTO (.*)", re.S)


def translate(sql: str) -> str:
    """``db.py``'s SQLite spelling of ``sql`` in PostgreSQL's."""
    if sql.strip() == "BEGIN IMMEDIATE":
        return "BEGIN"
    sql = sql.replace("?", "%s")  # db.py's SQL has no '?' or '%' in literals
    ignored = _OR_IGNORE.fullmatch(sql.strip())
    if ignored:
        return f"INSERT INTO {ignored[1]} ON CONFLICT DO NOTHING"
    return sql


class _Translated:
    """A psycopg connection that takes ``db.py``'s SQL and raises its errors."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg

        try:
            return self.conn.execute(translate(sql), params or None)
        except psycopg.errors.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        import psycopg

        cursor = self.conn.cursor()
        try:
            cursor.executemany(translate(sql), list(rows))
        except psycopg.errors.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e
        return cursor

    def close(self) -> None:
        self.conn.close()


@implementer(IAccounts)
class PostgresAccounts(AccountsDB):
    """``AccountsDB`` whose tables are in the PostgreSQL database at ``dsn``."""

    def __init__(self, dsn: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        from txmailhost.store.postgres_schema import upgrade

        info = conninfo_to_dict(dsn)
        self.path = f"PostgreSQL database {info.get('dbname', '')} on {info.get('host', '')}"
        self._dsn = dsn
        self._local = threading.local()
        conn = self._connect()
        try:
            upgrade(conn)  # the accounts tables come with the store's migrations
        finally:
            conn.close()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._dsn, autocommit=True)

    @property
    def _db(self) -> Any:  # type: ignore[override]
        conn = getattr(self._local, "conn", None)
        if conn is None or not usable(conn.conn):  # closed by the server meanwhile: replaced
            if conn is not None:
                conn.close()
            conn = self._local.conn = _Translated(self._connect())
        return conn
