"""The twisted.cred checker every protocol logs in through.

Twisted's ``InMemoryUsernamePasswordDatabaseDontUse`` compares plaintext with ``==``; this one
reads the scrypt hash from the accounts database and verifies it in the thread pool (scrypt takes
~0.1 s by design), comparing in constant time. Unknown users are verified against a dummy hash so
that failures take as long whether or not the account exists (no enumeration by timing).
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost.accounts.db import AccountError, AccountsDB, canonical_address
from txmailhost.accounts.passwords import dummy_hash, verify_password


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@implementer(ICredentialsChecker)
class AccountsChecker:
    """Username/password logins against ``AccountsDB``; the avatar id is the canonical address."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, db: AccountsDB, reactor: Any, pool: ThreadPool) -> None:
        self._db = db
        self._reactor = reactor
        self._pool = pool

    def _check(self, username: str, password: str) -> str:
        try:
            address = canonical_address(username)
        except AccountError:
            address = None
        encoded = self._db.password_hash(address) if address else None
        ok = verify_password(password, encoded or dummy_hash())
        if not ok or encoded is None or address is None:
            raise UnauthorizedLogin("authentication failed")
        return address

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        return threads.deferToThreadPool(
            self._reactor,
            self._pool,
            self._check,
            _text(credentials.username),
            _text(credentials.password),
        )
