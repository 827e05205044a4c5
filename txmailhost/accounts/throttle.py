"""Throttling failed logins per client address and per account, across every protocol.

Brute force against AUTH/LOGIN/USER+PASS is the first attack a public server sees (security.md).
Each failure costs the client a growing delay (0.5 s, 1 s, 2 s ... up to ``max_delay``) before
its error reply. Two limits count failures within ``window`` seconds:

- per client address (``ip_limit``; IPv6 per /64, since one host usually owns a whole /64):
  past it, that address is refused without even checking the password;
- per account (``account_limit``, failures from anywhere): past it the account is *under
  attack*, and an address that has itself failed against it is refused without checking,
  unless the account logged in successfully from there within the last 30 days
  (``origins.py``). Any other address still gets its password checked: a right one logs in,
  a wrong one is answered after the longest delay and marks that address as failed.

So an attacker's failures never refuse the rightful user (DESIGN invariant 6): they come from
an address that has not failed, or from one the account is known to use. What the attacker
gets is what it got before from a few addresses (``ip_limit`` guesses per address, then one
per new address once the account is under attack), each wrong one slowed to ``max_delay``.

Checks in flight count too: an address whose failures plus passwords being checked reach
``ip_limit`` has its next attempt wait until one of them is answered (a right password frees
its place, a wrong one is counted), so guesses sent at once, on as many connections, are no
more than guesses sent one after another. A client logging in on many connections at once
without failing waits only when it has more than ``ip_limit`` checks going.

Refusals are temporary: the protocols answer ``454 4.7.0`` / ``NO [UNAVAILABLE]`` /
``-ERR [SYS/TEMP]``.

The counts live in the process (a check costs no I/O); worker processes forward their failures
to each other (``forward``), and with a PostgreSQL store the nodes share theirs through the
database (``publish``, ``sharedfailures.py``), so a guesser spreading over nodes meets one limit.

``ThrottledPortal`` applies this to any twisted.cred Portal; protocols pass the peer address as
the ``mind`` argument of ``login`` (Twisted's own protocols pass None, which is why this is a
portal wrapper and not a checker: audit §5).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txmailhost.accounts.addresses import canonical_address
from txmailhost.accounts.interfaces import AccountError, ILoginOrigins
from txmailhost.accounts.origins import LoginOrigins

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


def account_key(username: bytes | str) -> str:
    """The account a login is counted against: the canonical address when the name is one
    (so ``Bob@EXAMPLE.test`` and ``bob@example.test`` share their count), else the lower-cased
    name as typed, cut to a sane length."""
    text = username.decode("utf-8", "replace") if isinstance(username, bytes) else str(username)
    try:
        return canonical_address(text[:320])
    except AccountError:
        return text.lower()[:320]


class LoginThrottle:
    """Counts of recent failures per address, per account and per (address, account) pair;
    memory bounded by ``max_tracked`` keys, the least recently failed forgotten first."""

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
        # Password checks going on per address, and who waits for one of them to end.
        self._checking: dict[str, int] = {}
        self._waiting: dict[str, list[Deferred[None]]] = {}
        # Told of each failure recorded here, to count it in the other worker processes too
        # (workers/bus.py): a guesser spreading connections over workers meets one limit.
        self.forward: Callable[[str | None, str | None], None] | None = None
        # Likewise for the other nodes of a shared database (sharedfailures.py).
        self.publish: Callable[[str | None, str | None], None] | None = None

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

    def address_blocked(self, client: str | None) -> bool:
        """The address reached its own limit: refused whatever account it tries."""
        return client is not None and self._recent("ip:" + client) >= self.ip_limit

    async def turn(self, client: str | None) -> None:
        """Wait until a check for ``client`` can't take it past ``ip_limit``: its recent
        failures plus the checks going on are under it, or none is going on (then the limit
        itself, ``address_blocked``, says whether it may try). Then its check counts as going
        on until ``checked``."""
        if client is None:
            return
        while self._checking.get(client, 0) and (
            self._recent("ip:" + client) + self._checking[client] >= self.ip_limit
        ):
            waiter: Deferred[None] = Deferred()
            self._waiting.setdefault(client, []).append(waiter)
            await waiter
        self._checking[client] = self._checking.get(client, 0) + 1

    def checked(self, client: str | None) -> None:
        """A check ``turn`` let go on is over (its failure, if it failed, already counted):
        whoever waited for ``client`` looks again."""
        if client is None:
            return
        left = self._checking.get(client, 0) - 1
        if left > 0:
            self._checking[client] = left
        else:
            self._checking.pop(client, None)
        for waiter in self._waiting.pop(client, ()):
            if not waiter.called:  # not one whose login was cancelled meanwhile
                waiter.callback(None)

    def under_attack(self, account: str) -> bool:
        """The account reached its limit, failures from every address added up."""
        return self._recent("user:" + account) >= self.account_limit

    def has_failed(self, client: str | None, account: str) -> bool:
        """This address failed against this account within the window."""
        return client is not None and self._recent(f"pair:{client} {account}") > 0

    def failed(self, client: str | None, account: str | None) -> float:
        """Record a failure; returns the delay to impose before answering."""
        delay = self._record(client, account)
        if self.forward is not None:
            self.forward(client, account)
        if self.publish is not None:
            self.publish(client, account)
        return delay

    def record(self, client: str | None, account: str | None) -> None:
        """Count a failure another process saw (its client was answered there)."""
        self._record(client, account)

    def _record(self, client: str | None, account: str | None) -> float:
        now = self.clock.seconds()
        counts = [0]
        for key, counted in (
            (("ip:" + client) if client else None, True),
            (("user:" + account) if account is not None else None, True),
            (f"pair:{client} {account}" if client and account is not None else None, False),
        ):
            if key is None:
                continue
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            self._failures[key] = times  # most recently failed last
            if counted:
                counts.append(self._recent(key))
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        excess = max(counts) - self.free_failures
        return 0.0 if excess <= 0 else min(self.base_delay * 2 ** (excess - 1), self.max_delay)


class ThrottledPortal:
    """A Portal whose ``login`` is throttled by the peer address given as ``mind``.

    ``origins`` remembers where each account logged in successfully; without one, a
    memory-only ``LoginOrigins`` (forgotten at restart) is used.
    """

    def __init__(
        self, portal: Portal, throttle: LoginThrottle, origins: ILoginOrigins | None = None
    ) -> None:
        self._portal = portal
        self._throttle = throttle
        self._origins = origins if origins is not None else LoginOrigins(throttle.clock)

    @property
    def throttle(self) -> LoginThrottle:
        return self._throttle

    def listCredentialsInterfaces(self) -> list:
        return self._portal.listCredentialsInterfaces()

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred:
        return Deferred.fromCoroutine(self._login(credentials, mind, interfaces))

    async def _login(self, credentials: Any, mind: Any, interfaces: tuple) -> Any:
        client = client_key(mind)
        account = account_key(getattr(credentials, "username", b""))
        throttle = self._throttle
        await throttle.turn(client)
        try:
            why = None
            if throttle.address_blocked(client):
                why = "too many failures from this address"
            elif (
                throttle.under_attack(account)
                and throttle.has_failed(client, account)
                and not await self._origins.seen(account, client)
            ):
                why = "account under attack and this address failed"
            if why is not None:
                log.warn(
                    "login refused (throttled: {why}) for {account!r} from {client}",
                    why=why,
                    account=account,
                    client=client,
                )
                raise LoginThrottled("too many failed logins; try again later")
            try:
                result = await self._portal.login(credentials, mind, *interfaces)
            except LoginFailed as e:
                failure, delay = e, throttle.failed(client, account)
            else:
                if client is not None:
                    self._origins.remember(account, client)
                return result
        finally:
            throttle.checked(client)  # a failure is counted by now: the delay is no check
        await deferLater(throttle.clock, delay)
        raise failure
