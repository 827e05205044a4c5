"""Recipient resolution: what happens to mail for an address.

For an address in one of our domains, in this order (the first rule that applies wins):

1. the domain is an alias domain: the same local part in its target domain;
2. an alias for the exact address (``team@``, or ``alice+lists@`` if someone made one);
3. plus-addressing (RFC 5233): ``alice+tag@`` is ``alice@`` (delimiter configurable),
   unless an account has the whole name (``a+b@``): an exact match wins, as in Postfix;
4. a user: their INBOX, or their forward targets (plus their INBOX if they keep a copy);
5. an alias for the address without its tag;
6. ``postmaster@`` and ``abuse@`` (RFC 5321 4.5.1, RFC 2142) exist in every domain: they go
   to the configured postmaster, else the domain's oldest account;
7. the domain's catch-all alias (``@domain``);
8. otherwise the address is unknown (refused at RCPT: never accept-then-bounce).

Before all of these, an SRS address of ours (``SRS0=...@`` the ``[srs] domain``, a bounce of
mail we forwarded) leads back to its original sender, or is unknown when forged or expired
(``srs.py``); ``forward_sender`` gives the sender that forwarded mail leaves with.

Aliases and forwards expand recursively into local mailboxes and external addresses (sent on
through the relay queue with the original envelope sender: envelope-preserving, see
docs/admin.rst). A cycle (a -> b -> a) is a loop and the recipient is refused; expansion is
bounded in depth and in size. Nothing here knows SMTP: policies map the result to replies.

Lookups go through ``IAccounts`` and ``IAddressRules`` (accounts/interfaces.py), whatever
backend keeps them; they read it on every call, in the accounts thread pool, so changes
made with the CLI apply to the next message without a restart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.python.threadpool import ThreadPool

from txmailhost.accounts.addresses import fold_local
from txmailhost.accounts.interfaces import AccountError, IAccounts, IAddressRules
from txmailhost.srs import SRSError
from txmailhost.store.interfaces import INBOX

ROLE_ACCOUNTS = ("postmaster", "abuse")


class RouteKind(enum.Enum):
    LOCAL = "local"  # deliver into ``Route.user``'s ``Route.mailbox``
    REMOTE = "remote"  # an address elsewhere: relay it (submission, or an alias/forward target)


class Outcome(enum.Enum):
    OK = "ok"  # ``routes`` says where the mail goes
    NOT_OURS = "not-ours"  # not one of our domains (port 25: relaying denied)
    UNKNOWN_USER = "unknown-user"  # our domain, nobody there
    LOOP = "loop"  # aliases/forwards lead back to themselves
    TOO_BIG = "too-big"  # the expansion passes the limit


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    address: str
    user: str | None = None
    mailbox: str = INBOX


@dataclass
class Resolution:
    outcome: Outcome
    address: str
    routes: list[Route] = field(default_factory=list)
    # The storage limit of a single local recipient, looked up in the same trip to the
    # accounts pool (RCPT latency): None for unlimited or for several recipients.
    quota: int | None = None


class _Loop(Exception):
    def __init__(self, path: tuple[str, ...], too_deep: bool = False) -> None:
        super().__init__(path)
        self.path = path  # the addresses from the first one seen again, or from the start
        self.too_deep = too_deep  # past max_depth rather than back to an address seen


class _TooBig(Exception):
    pass


class Router:
    def __init__(
        self,
        accounts: IAccounts,
        reactor: Any,
        pool: ThreadPool,
        *,
        delimiter: str = "+",
        plus_folders: bool = False,
        postmaster: str | None = None,
        max_depth: int = 10,
        max_expansion: int = 5000,
        cache_seconds: float = 2.0,
        rules: IAddressRules | None = None,
        srs: Any = None,
    ) -> None:
        self._accounts = accounts
        self._rules = rules if rules is not None else accounts.address_rules()
        self._reactor = reactor
        self._pool = pool
        self.delimiter = delimiter
        self.plus_folders = plus_folders
        self.postmaster = postmaster.lower() if postmaster else None
        self.max_depth = max_depth
        self.max_expansion = max_expansion
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Resolution]] = {}
        self.srs = srs  # srs.SRS, or None: forwarded mail keeps its sender

    @property
    def accounts(self) -> IAccounts:
        """The accounts backend routing reads (the webmail's settings change it too)."""
        return self._accounts

    @property
    def accounts_pool(self) -> ThreadPool:
        """The pool every accounts call runs in (the backend is never used on the reactor)."""
        return self._pool

    def quota_of(self, user: str) -> Deferred[int | None]:
        """The user's storage limit in bytes, None for unlimited (IAddressRules.quota_of)."""
        return threads.deferToThreadPool(self._reactor, self._pool, self._rules.quota_of, user)

    def resolve(self, local: str, domain: str) -> Deferred[Resolution]:
        """Resolve in the accounts pool; a recent positive answer is reused for
        ``cache_seconds`` so a busy sender's RCPTs skip the thread round trip. Negative
        answers and quota'd users are never cached: a new user or alias works at once, and a
        deleted one stops receiving within ``cache_seconds``."""
        key = (local.lower(), domain.lower())
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._reactor.seconds():
            return succeed(cached[1])
        d = threads.deferToThreadPool(self._reactor, self._pool, self.resolve_sync, local, domain)

        def remember(resolution: Resolution) -> Resolution:
            if resolution.outcome is Outcome.OK and resolution.quota is None and self.cache_seconds:
                if len(self._cache) >= 10_000:
                    self._cache.clear()
                self._cache[key] = (self._reactor.seconds() + self.cache_seconds, resolution)
            return resolution

        return d.addCallback(remember)

    def resolve_sync(self, local: str, domain: str) -> Resolution:
        if not domain:  # RCPT TO:<postmaster> without a domain (RFC 5321 4.5.1)
            target = self.postmaster or self._rules.first_user(None)
            domain = target.rpartition("@")[2] if target else ""
            local = "postmaster"
        address = f"{local}@{domain}"
        if self.srs is not None and self.srs.is_srs(local, domain):
            try:
                return Resolution(
                    Outcome.OK, address, [Route(RouteKind.REMOTE, self.srs.reverse(local))]
                )
            except SRSError:
                return Resolution(Outcome.UNKNOWN_USER, address)
        if domain.startswith("[") or local.startswith('"'):
            # Address literals are never ours; quoted local parts never name an account,
            # which also closes '"user@other"@our.example' style relay tricks.
            ours = not domain.startswith("[") and self._accounts.has_domain(domain)
            return Resolution(Outcome.UNKNOWN_USER if ours else Outcome.NOT_OURS, address)
        canonical = f"{fold_local(local)}@{domain.lower()}"  # as accounts are kept
        if not self._accounts.has_domain(domain):
            return Resolution(Outcome.NOT_OURS, address)
        routes: dict[tuple, Route] = {}
        try:
            if not self._expand(canonical, routes, seen=(), depth=0):
                return Resolution(Outcome.UNKNOWN_USER, canonical)
        except _Loop:
            return Resolution(Outcome.LOOP, canonical)
        except _TooBig:
            return Resolution(Outcome.TOO_BIG, canonical)
        if not routes:  # every alias target has gone (deleted users)
            return Resolution(Outcome.UNKNOWN_USER, canonical)
        found = list(routes.values())
        quota = None
        if len(found) == 1 and found[0].kind is RouteKind.LOCAL:
            quota = self._rules.quota_of(found[0].user)
        return Resolution(Outcome.OK, canonical, found, quota)

    def loop_at(self, address: str) -> str | None:
        """How mail for ``address`` (canonical, or ``@domain``: the catch-all) goes round,
        ``"a@x -> b@x -> a@x"``, or None when it doesn't: what ``alias add`` and ``user
        forward`` ask before they commit, so that the expansion judging the change is the
        one that will refuse the mail (``550 5.4.6``)."""
        try:
            self._expand(address, {}, seen=(), depth=0)
        except _Loop as loop:
            shown = " -> ".join(loop.path)
            return f"more than {self.max_depth} levels: {shown}" if loop.too_deep else shown
        except _TooBig:
            return None
        return None

    def refuse_loops(self, address: str) -> None:
        """The check ``IAddressRules.add_alias``/``set_forward`` run inside their transaction
        (``accounts.db.RuleCheck``): AccountError, naming the addresses, when the change
        makes mail for ``address`` go round. Every way an alias or forward is made passes it
        (the CLI, ``migrate postfix-aliases``, the webmail's settings and admin console), so
        none of them can leave the server refusing the mail with ``550 5.4.6``."""
        loop = self.loop_at(address)
        if loop is not None:
            raise AccountError(f"mail for {address} would loop ({loop}); nothing was changed")

    def unknown(self, addresses: list[str]) -> list[str]:
        """Those of ``addresses`` in our domains that nobody receives at (``550 5.1.1``)."""
        return [
            address
            for address in addresses
            if self.resolve_sync(*address.rsplit("@", 1)).outcome is Outcome.UNKNOWN_USER
        ]

    def forward_sender(self, sender: str | None) -> Deferred[str | None]:
        """The envelope sender for mail relayed to other servers: SRS-rewritten when it is
        of a domain not ours (forwarded mail); unchanged for ``<>``, for our own senders,
        and without ``[srs] domain``."""
        if self.srs is None or not sender:
            return succeed(sender)
        return threads.deferToThreadPool(
            self._reactor, self._pool, self._forward_sender_sync, sender
        )

    def _forward_sender_sync(self, sender: str) -> str:
        domain = sender.rpartition("@")[2]
        if not domain or self._accounts.has_domain(domain):
            return sender
        return self.srs.forward(sender)

    def _add(self, routes: dict[tuple, Route], route: Route) -> None:
        routes.setdefault((route.kind, route.user, route.address), route)
        if len(routes) > self.max_expansion:
            raise _TooBig()

    def _expand(self, address: str, routes: dict[tuple, Route], seen: tuple, depth: int) -> bool:
        """Add where ``address`` leads to ``routes``; False when nothing here knows it."""
        if address in seen:
            raise _Loop((*seen[seen.index(address) :], address))
        if depth > self.max_depth:
            raise _Loop((*seen, address), too_deep=True)
        seen = (*seen, address)
        local, _, domain = address.rpartition("@")
        if not self._accounts.has_domain(domain):
            self._add(routes, Route(RouteKind.REMOTE, address))
            return True
        target_domain = self._accounts.domain_alias_of(domain)
        if target_domain:
            return self._expand(f"{local}@{target_domain}", routes, seen, depth + 1)
        targets = self._rules.alias_targets(address)
        if targets:
            self._expand_all(targets, routes, seen, depth)
            return True
        base = local
        # An account whose own name holds the delimiter (a+b@: RFC 5233 leaves the split to
        # the server) is found as it is; the tag is split off only when no such account
        # exists, as Postfix does (an exact match wins).
        if self.delimiter and self.delimiter in local and not self._accounts.has_user(address):
            base = local.split(self.delimiter, 1)[0]
        user = f"{base}@{domain}"
        if base and self._accounts.has_user(user):
            forwards, keep_copy = self._rules.forward_of(user)
            if not forwards or keep_copy:
                # alice+lists@ -> folder "lists" when enabled; the policy falls back to INBOX
                # if the user has no such folder.
                tag = local[len(base) + 1 :] if base != local and self.plus_folders else ""
                self._add(routes, Route(RouteKind.LOCAL, user, user=user, mailbox=tag or INBOX))
            self._expand_all(forwards, routes, seen if user == address else (*seen, user), depth)
            return True
        if base != local:
            targets = self._rules.alias_targets(user)
            if targets:
                self._expand_all(targets, routes, seen, depth)
                return True
        if base in ROLE_ACCOUNTS:
            target = self.postmaster or self._rules.first_user(domain)
            if target and target not in seen:
                return self._expand(target, routes, seen, depth + 1)
        catch_all = f"@{domain}"
        targets = self._rules.alias_targets(catch_all)
        if targets:
            # In ``seen`` only to name it in a loop's path (no target is ever "@domain").
            self._expand_all(targets, routes, (*seen, catch_all), depth)
            return True
        return False

    def _expand_all(self, targets: list[str], routes: dict, seen: tuple, depth: int) -> None:
        # A target naming a local user that no longer exists adds nothing; if no target is
        # left at all, the address counts as unknown (resolve_sync).
        for target in targets:
            self._expand(target, routes, seen, depth + 1)


def blocking_router(config: Any, accounts: IAccounts) -> Router:
    """The server's recipient resolution over ``accounts``, built from the config as
    ``service.py`` builds it (SRS apart: it never makes a loop), so ``alias add``, ``user
    forward`` and ``migrate postfix-aliases`` judge a change with the rules the server
    applies. Only its blocking lookups may be used: no reactor, no thread pool."""
    routing = config.routing
    return Router(
        accounts,
        None,
        None,  # type: ignore[arg-type] - never used by the blocking lookups
        delimiter=routing.recipient_delimiter,
        plus_folders=routing.plus_folders,
        postmaster=routing.postmaster or None,
    )
