"""The twisted.cred checker every protocol logs in through.

Twisted's ``InMemoryUsernamePasswordDatabaseDontUse`` compares plaintext with ``==``; this one
reads the scrypt hash from the accounts database and verifies it in the thread pool (scrypt takes
~0.1 s by design), comparing in constant time. Unknown users are verified against a dummy hash so
that failures take as long whether or not the account exists (no enumeration by timing).

With a ``CredentialCache`` (``credcache.py``) a password verified lately for the same stored
hash is accepted without hashing again; the stored hash is read on every login regardless, so
a change made by the CLI in another process applies to the next login.

Logins that arrive together with the same username and password (a client opening its five
connections at once, a crowd reconnecting after a restart) share one check: the first runs,
the others wait for its answer instead of each hashing before any of them can fill the cache.

When the account's password doesn't match, an app-specific password (``apppasswords.py``) may:
unless the credentials provide ``IAccountPasswordOnly`` (the webmail's login).

A hash moved in from Dovecot (``legacy.py``) is replaced by our scrypt hash on the first login
that proves the password, compare-and-swap, so a password changed meanwhile is kept.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.apppasswords import IAccountPasswordOnly
from txmailhost.accounts.credcache import CredentialCache
from txmailhost.accounts.interfaces import AccountError, IAccounts
from txmailhost.accounts.legacy import scheme_of
from txmailhost.accounts.passwords import (
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)

log = Logger()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@implementer(ICredentialsChecker)
class AccountsChecker:
    """Username/password logins against any ``IAccounts``; the avatar id is the canonical address."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        db: IAccounts,
        reactor: Any,
        pool: ThreadPool,
        cache: CredentialCache | None = None,
    ) -> None:
        self._db = db
        self._reactor = reactor
        self._pool = pool
        self._cache = cache
        # (username, app passwords allowed, password fingerprint) -> Deferreds of the logins
        # waiting for the check under way; reactor thread only.
        self._checking: dict[tuple[str, bool, bytes], list[Deferred[str]]] = {}

    def _check(self, username: str, password: str, app_passwords: bool = True) -> str:
        try:
            address = canonical_address(username)
        except AccountError:
            address = None
        encoded = self._db.password_hash(address) if address else None
        cache = self._cache
        fingerprint = None
        if cache is not None and address is not None:
            fingerprint = cache.fingerprint(address, password)
            if cache.verified(address, fingerprint, encoded):
                return address
        ok = verify_password(password, encoded or dummy_hash())
        if not ok and app_passwords and encoded is not None and address is not None:
            return self._check_app_password(address, password)
        if not ok or encoded is None or address is None:
            raise UnauthorizedLogin("authentication failed")
        if needs_rehash(encoded):  # a hash moved in from Dovecot: ours from now on
            self._rehash(address, password, encoded)
        if cache is not None and fingerprint is not None:
            cache.remember(address, fingerprint, encoded)
        return address

    def _check_app_password(self, address: str, password: str) -> str:
        """An app-specific password of ``address`` (``apppasswords.py``): only the one its
        lookup group names is hashed, so a wrong password costs one more scrypt at most."""
        for app_id, encoded in self._db.app_password_hashes(address, password):
            if verify_password(password, encoded):
                self._db.app_password_used(app_id)
                return address
        raise UnauthorizedLogin("authentication failed")

    def _rehash(self, address: str, password: str, old: str) -> None:
        if self._db.replace_password_hash(address, old, hash_password(password)):
            log.info("password of {user} rehashed from {scheme} to scrypt", user=address,
                     scheme=scheme_of(old))  # fmt: skip

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        username, password = _text(credentials.username), _text(credentials.password)
        app_passwords = not IAccountPasswordOnly.providedBy(credentials)
        cache = self._cache
        if cache is None or not cache.enabled:
            return threads.deferToThreadPool(
                self._reactor, self._pool, self._check, username, password, app_passwords
            )
        key = (username, app_passwords, cache.fingerprint(username, password))
        waiting = self._checking.get(key)
        if waiting is not None:  # the same check is under way: its answer is this one's
            joined: Deferred[str] = Deferred()
            waiting.append(joined)
            return joined
        self._checking[key] = []
        d = threads.deferToThreadPool(
            self._reactor, self._pool, self._check, username, password, app_passwords
        )
        d.addBoth(self._answer_waiting, key)
        return d

    def _answer_waiting(self, outcome: Any, key: tuple[str, bool, bytes]) -> Any:
        for joined in self._checking.pop(key, []):
            if isinstance(outcome, Failure):
                joined.errback(outcome)
            else:
                joined.callback(outcome)
        return outcome
