"""Where each account logged in successfully lately: the addresses its owner uses.

The login throttle (``throttle.py``) refuses an address that failed against an account under
attack, unless that account logged in successfully from there within ``keep`` seconds (30
days): a phone or an office that has the right password is never locked out by an attacker's
failures, even if it mistyped once.

Kept in memory and, when given an ``IAccounts``, in its ``login_origins`` table (so a restart
doesn't forget them; a user's rows go with the user). A success is written at most once per
``refresh`` seconds (a day) per account and address, from the accounts thread pool, so a
client logging in every minute costs no database writes; each write also prunes that account's
rows older than ``keep`` and beyond the ``per_account`` most recent.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.accounts.interfaces import ILoginOrigins

log = Logger()

DAY = 86400.0


@implementer(ILoginOrigins)
class LoginOrigins:
    """``seen``/``remember`` (``ILoginOrigins``), from memory first, then the database."""

    def __init__(
        self,
        clock: Any,
        db: Any = None,
        reactor: Any = None,
        pool: Any = None,
        *,
        keep: float = 30 * DAY,
        refresh: float = DAY,
        per_account: int = 100,
        max_tracked: int = 100_000,
    ) -> None:
        self.clock = clock
        self.keep = keep
        self.refresh = refresh
        self.per_account = per_account
        self.max_tracked = max_tracked
        self._db = db
        self._reactor = reactor
        self._pool = pool
        # (account, client) -> (last success, last written to the database)
        self._recent: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def seen(self, account: str, client: str) -> Deferred[bool]:
        now = self.clock.seconds()
        entry = self._recent.get((account, client))
        if entry is not None and entry[0] >= now - self.keep:
            return succeed(True)
        if self._db is None:
            return succeed(False)
        return deferToThreadPool(
            self._reactor, self._pool, self._db.login_origin_seen, account, client, now - self.keep
        )

    def remember(self, account: str, client: str) -> None:
        now = self.clock.seconds()
        key = (account, client)
        _, written = self._recent.pop(key, (0.0, -self.refresh))
        due = self._db is not None and now - written >= self.refresh
        self._recent[key] = (now, now if due else written)
        while len(self._recent) > self.max_tracked:
            self._recent.popitem(last=False)
        if due:
            d = deferToThreadPool(
                self._reactor,
                self._pool,
                self._db.remember_login_origin,
                account,
                client,
                now,
                now - self.keep,
                self.per_account,
            )
            d.addErrback(
                lambda f: log.warn(
                    "could not record a login origin of {account}: {error}",
                    account=account,
                    error=f.getErrorMessage(),
                )
            )
