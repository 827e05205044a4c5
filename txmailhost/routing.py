"""Recipient resolution: what happens to mail for an address.

Today: an address in one of our domains is a local mailbox if the user exists, unknown
otherwise; anything else is remote. Aliases, forwards, catch-alls and plus-addressing
(a later issue) become further ``RouteKind``s decided here, so the SMTP layer never needs to
know how accounts are stored. Returning a kind rather than an SMTP reply keeps this module free
of protocol vocabulary: each policy (inbound MX, submission) maps kinds to its own replies.

Lookups read the accounts database on every call (in the thread pool): a user added with the
CLI is deliverable at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from txmailhost.accounts.db import AccountsDB
from txmailhost.store.interfaces import INBOX


class RouteKind(enum.Enum):
    LOCAL = "local"  # deliver into ``Route.user``'s ``Route.mailbox``
    UNKNOWN_USER = "unknown-user"  # our domain, no such user: refuse (never accept-then-bounce)
    REMOTE = "remote"  # not one of our domains


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    address: str
    user: str | None = None
    mailbox: str = INBOX


class Router:
    def __init__(self, accounts: AccountsDB, reactor: Any, pool: ThreadPool) -> None:
        self._accounts = accounts
        self._reactor = reactor
        self._pool = pool

    def resolve_sync(self, local: str, domain: str) -> Route:
        address = f"{local}@{domain}"
        if domain.startswith("["):
            return Route(RouteKind.REMOTE, address)  # address literals are never ours
        if local.startswith('"'):
            # Quoted local parts never name an account; refusing them here also closes
            # '"user@other"@our.example' style relay tricks.
            is_ours, _ = self._accounts.lookup(f"x@{domain}")
            return Route(RouteKind.UNKNOWN_USER if is_ours else RouteKind.REMOTE, address)
        canonical = f"{local.lower()}@{domain.lower()}"
        is_ours, exists = self._accounts.lookup(canonical)
        if not is_ours:
            return Route(RouteKind.REMOTE, address)
        if not exists:
            return Route(RouteKind.UNKNOWN_USER, canonical)
        return Route(RouteKind.LOCAL, canonical, user=canonical)

    def resolve(self, local: str, domain: str) -> Deferred[Route]:
        return threads.deferToThreadPool(
            self._reactor, self._pool, self.resolve_sync, local, domain
        )
