"""Building blocks for protocol tests: a data directory with accounts and a store in tmp_path.

Everything is real (SQLite accounts, Maildir store, scrypt hashes); only the thread pool is
replaced by ``SyncThreadPool`` so Deferreds fire before the call returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import twisted.mail.imap4  # noqa: F401 - registers the imap4-utf-7 codec
from twisted.cred.portal import Portal

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.realm import MailRealm
from txmailhost.routing import Router
from txmailhost.store.maildir import MaildirStore

PASSWORD = "secret-pw"


@dataclass
class MailWorld:
    root: str
    reactor: SyncReactor
    pool: SyncThreadPool
    accounts: AccountsDB
    store: MaildirStore
    router: Router
    portal: Portal

    def add_user(self, address: str, password: str = PASSWORD) -> str:
        domain = address.rpartition("@")[2]
        if not self.accounts.has_domain(domain):
            self.accounts.add_domain(domain)
        user = self.accounts.add_user(address, password)
        self.store.provision_sync(user)
        return user

    def inbox_files(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        """The message files of a mailbox, oldest first, as bytes."""
        from txmailhost.store.maildir import folder_directory, user_directory

        directory = folder_directory(user_directory(self.store.root, user), mailbox)
        paths = []
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(directory, sub)):
                paths.append(os.path.join(directory, sub, name))
        paths.sort(key=lambda p: os.path.basename(p))
        result = []
        for path in paths:
            with open(path, "rb") as f:
                result.append(f.read())
        return result


def make_world(tmp_path: os.PathLike) -> MailWorld:
    root = str(tmp_path)
    reactor = SyncReactor()
    pool = SyncThreadPool()
    accounts = AccountsDB(os.path.join(root, "accounts.sqlite"))
    store = MaildirStore(os.path.join(root, "mail"), reactor, pool)
    portal = Portal(MailRealm(store), [AccountsChecker(accounts, reactor, pool)])
    router = Router(accounts, reactor, pool)
    return MailWorld(root, reactor, pool, accounts, store, router, portal)
