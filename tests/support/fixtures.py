"""Building blocks for protocol tests: a data directory with accounts and a store in tmp_path.

Everything is real (SQLite accounts, the store, scrypt hashes); only the thread pool is
replaced by ``SyncThreadPool`` so Deferreds fire before the call returns. ``backend`` picks the
store by its ``[store] backend`` name: protocol tests run over every backend (``BACKENDS``), and
a test of what only one of them does on disk asks for ``"maildir"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec
from twisted.cred.portal import Portal

from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.realm import MailRealm
from txmailhost.routing import Router
from txmailhost.store import backends
from txmailhost.store.interfaces import INBOX

PASSWORD = "secret-pw"
BACKENDS = tuple(
    n
    for n in backends.BACKENDS
    if n not in backends.NEEDS_SERVER or os.environ.get("TXMAILHOST_TEST_POSTGRES")
)


@dataclass
class MailWorld:
    root: str
    reactor: SyncReactor
    pool: SyncThreadPool
    accounts: AccountsDB
    store: Any  # an IMailStore
    router: Router
    portal: Portal

    def add_user(self, address: str, password: str = PASSWORD) -> str:
        domain = address.rpartition("@")[2]
        if not self.accounts.has_domain(domain):
            self.accounts.add_domain(domain)
        user = self.accounts.add_user(address, password)
        result(self.store.provision(user))
        return user

    def inbox_files(self, user: str, mailbox: str = INBOX) -> list[bytes]:
        """The messages of a mailbox, oldest first, as the store serves them."""
        box = result(self.store.open(user, mailbox))
        uids = [info.uid for info in result(box.snapshot()).messages]
        return [message.content for message in result(box.messages(uids, content=True))]


def build_store(backend: str, mail_root: str, reactor: Any, pool: Any) -> Any:
    """``backends.build`` for a test: a backend in a database server gets a fresh database
    of the one the tests start (tests/support/postgres.py)."""
    dsn = ""
    if backend in backends.NEEDS_SERVER:
        from tests.support.postgres import fresh_database

        dsn = fresh_database()
    blobs = None
    if backend == "postgres" and os.environ.get("TXMAILHOST_TEST_S3"):
        # TXMAILHOST_TEST_S3=1: the bodies in moto's S3 server ([store] blobs = "s3")
        from tests.support.s3 import shared_s3
        from txmailhost.store.s3blobs import S3Blobs

        server = shared_s3()
        blobs = S3Blobs(server.settings(server.bucket()))
    return backends.build(backend, mail_root, reactor, pool, dsn=dsn, blobs=blobs)


def make_world(
    tmp_path: os.PathLike, backend: str = "maildir", accounts_in: str = "sqlite"
) -> MailWorld:
    """``accounts_in``: "sqlite" (DATA/accounts.sqlite) or "postgres" (a fresh database of
    the server the tests start, ``[store] accounts = "postgres"``)."""
    root = str(tmp_path)
    reactor = SyncReactor()
    pool = SyncThreadPool()
    if accounts_in == "postgres":
        from tests.support.postgres import fresh_database
        from txmailhost.accounts.postgres import PostgresAccounts

        accounts: Any = PostgresAccounts(fresh_database())
    else:
        accounts = AccountsDB(os.path.join(root, "accounts.sqlite"))
    store = build_store(backend, os.path.join(root, "mail"), reactor, pool)
    portal = Portal(MailRealm(store), [AccountsChecker(accounts, reactor, pool)])
    router = Router(accounts, reactor, pool)
    return MailWorld(root, reactor, pool, accounts, store, router, portal)
