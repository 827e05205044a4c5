"""Throttling failed logins per client address and per account, across every protocol.

Brute force against AUTH/LOGIN/USER+PASS is the first attack a public server sees (security.md).
Each failure costs the client a growing delay (0.5 s, 1 s, 2 s ... up to ``max_delay``) before
its error reply; after ``ip_limit`` failures from one address, or ``account_limit`` failures
against one account, within ``window`` seconds, further attempts are refused without even
checking the password until the window has passed (a temporary refusal: the protocols answer
``454 4.7.0`` / ``NO [UNAVAILABLE]`` / ``-ERR [SYS/TEMP]``).

IPv6 clients are counted per /64, since one host usually owns a whole /64. The per-account
limit is higher than the per-address one so that an attacker spreading attempts over many
addresses is still stopped, while the owner (who succeeds) isn't locked out for long.

``ThrottledPortal`` applies this to any twisted.cred Portal; protocols pass the peer address as
the ``mind`` argument of ``login`` (Twisted's own protocols pass None, which is why this is a
portal wrapper and not a checker: audit §5).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txmailhost.accounts.interfaces import IMailAccount

log = Logger()


class LoginThrottled(UnauthorizedLogin):
    """Refused without checking the password: too many recent failures."""


def client_key(peer: Any) -> str | None:
    """The address a failure is counted against: the IP, or its /64 for IPv6."""
    host = getattr(peer, "host", None)
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    def __init__(
        self,
        clock: Any,
        *,
        window: float = 900,
        ip_limit: int = 10,
        account_limit: int = 30,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        max_tracked: int = 100_000,
        free_failures: int = 0,
    ) -> None:
        self.clock = clock
        self.window = window
        self.ip_limit = ip_limit
        self.account_limit = account_limit
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        self.free_failures = free_failures
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        cutoff = self.clock.seconds() - self.window
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
        return len(times)

    def blocked(self, client: str | None, account: str) -> bool:
        return (client is not None and self._recent("ip:" + client) >= self.ip_limit) or (
            self._recent("user:" + account) >= self.account_limit
        )

    def failed(self, client: str | None, account: str | None) -> float:
        """Record a failure; returns the delay to impose before answering."""
        now = self.clock.seconds()
        counts = [0]
        for key in (
            ("ip:" + client) if client else None,
            ("user:" + account) if account is not None else None,
        ):
            if key is None:
                continue
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            self._failures[key] = times  # most recently failed last
            counts.append(self._recent(key))
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        excess = max(counts) - self.free_failures
        return 0.0 if excess <= 0 else min(self.base_delay * 2 ** (excess - 1), self.max_delay)


class ThrottledPortal:
    """A Portal whose ``login`` is throttled by the peer address given as ``mind``."""

    def __init__(self, portal: Portal, throttle: LoginThrottle) -> None:
        self._portal = portal
        self._throttle = throttle

    def listCredentialsInterfaces(self) -> list:
        return self._portal.listCredentialsInterfaces()

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred:
        return Deferred.fromCoroutine(self._login(credentials, mind, interfaces))

    async def _login(self, credentials: Any, mind: Any, interfaces: tuple) -> Any:
        client = client_key(mind)
        username = getattr(credentials, "username", b"")
        account = (
            username.decode("utf-8", "replace") if isinstance(username, bytes) else str(username)
        ).lower()[:320]
        if self._throttle.blocked(client, account):
            log.warn(
                "login refused (throttled) for {account!r} from {client}",
                account=account,
                client=client,
            )
            raise LoginThrottled("too many failed logins; try again later")
        try:
            return await self._portal.login(credentials, mind, *interfaces)
        except LoginFailed:
            delay = self._throttle.failed(client, account)
            await deferLater(self._throttle.clock, delay)
            raise


async def password_login(
    session: Any, protocol: str, username: bytes, password: bytes, mechanism: str, user: str
) -> tuple[Any, Callable[[], None]]:
    """(account, logout) for a user name and password, the way every mail protocol logs in;
    ``user`` is the name made safe for the log.

    A throttled client is logged and refused (``LoginThrottled``). A wrong password is
    counted on the session (``_auth_failures``), logged, and refused (``LoginFailed``) only
    after the session factory's fixed ``auth_failure_delay``, on top of the ThrottledPortal's
    growing one; the pause is kept in ``session._delay`` so a lost connection can cancel it.
    The protocol phrases the refusal (IMAP NO, POP3 -ERR) and decides when to hang up.
    """
    try:
        _iface, account, logout = await session.factory.portal.login(
            UsernamePassword(username, password), session._peer, IMailAccount
        )
    except LoginThrottled:
        log.warn(
            "{protocol} login throttled for {user} from {peer}",
            protocol=protocol,
            user=user,
            peer=session.peer_text,
        )
        raise
    except LoginFailed:
        session._auth_failures += 1
        log.warn(
            "{protocol} login failed for {user} from {peer} via {mechanism}",
            protocol=protocol,
            user=user,
            peer=session.peer_text,
            mechanism=mechanism,
            failures=session._auth_failures,
        )
        session._delay = deferLater(session.factory.reactor, session.factory.auth_failure_delay)
        try:
            await session._delay
        finally:
            session._delay = None
        raise
    return account, logout
