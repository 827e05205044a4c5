"""``ClientSlots``: how many of the filter threads one client's mail may hold at once.

The blocking filters (mail authentication's DNS lookups, greylisting's SQLite, clamd, spamd,
rspamd) share a few threads (``service._build_filters``). A check can take the whole of its
time budget: a message whose DKIM keys and SPF includes name silent DNS servers holds its
thread for the DNS budget (20 s). One client with a connection per thread could then keep
every thread busy, and every other client's mail would wait behind its queue until its own
budget ran out: a 451 for everybody, from one address.

So each client address (an IPv6 /64, since one host usually owns a whole /64) may have at
most ``per_client`` batches of checks in the threads at once; its next messages wait for one
of its own to finish, on the reactor, outside the threads' queue, while other clients' mail
goes straight to the threads. A slot is held until the thread is done, not merely until the
session stopped waiting for it: a check past its budget still holds the thread it runs in.

A client's envelope checks (connect, HELO, MAIL, RCPT: quick, and a session waits on each
command for them) go ahead of its waiting end-of-data checks: behind a queue of its own
slow messages, a client's next RCPT waited out its budget and was refused 451, though the
check itself would have taken a moment.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed

from txmailhost.pools import run_in

T = TypeVar("T")


@functools.lru_cache(maxsize=4096)  # asked at each stage of every message
def client_key(address: str) -> str:
    """The address a client's checks are counted against: the IP, or its /64 for IPv6 (an
    IPv4-mapped one as IPv4). Text that is no IP address stands for itself."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Held:
    """A trip to the threads and who frees its slot: the reactor when the thread was done by
    the time it stopped waiting (no wake-up of the reactor just for that, the common case),
    else the thread when it ends (a check given up at its budget still holds its thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished = False
        self._abandoned = False

    def finish(self) -> bool:
        """In the thread, at its end: True when it must free the slot itself."""
        with self._lock:
            self._finished = True
            return self._abandoned

    def abandon(self) -> bool:
        """On the reactor, when it stops waiting: True when it frees the slot now."""
        with self._lock:
            self._abandoned = True
            return self._finished


class ClientSlots:
    """Slots per client key: ``acquire`` fires when one is this caller's (at once when the
    client has fewer than ``per_client`` in use; else in the order they asked), ``release``
    hands it to the next waiter of that client. ``per_client`` 0: no limit. Reactor thread
    only."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._in_use: dict[str, int] = {}
        # per client: (envelope checks' line, end-of-data checks' line); the first goes first
        self._waiting: dict[str, tuple[collections.deque[Deferred[None]], ...]] = {}

    def in_use(self, key: str) -> int:
        return self._in_use.get(key, 0)

    def waiting(self, key: str) -> int:
        return sum(map(len, self._waiting.get(key, ())))

    def acquire(self, key: str, first: bool = False) -> Deferred[None]:
        """A slot of ``key``'s; cancelling the Deferred gives up the place in the line.
        ``first``: an envelope check's, ahead of the client's waiting end-of-data checks."""
        if self.per_client <= 0:
            return succeed(None)
        held = self._in_use.get(key, 0)
        if held < self.per_client:
            self._in_use[key] = held + 1
            return succeed(None)
        lines = self._waiting.setdefault(key, (collections.deque(), collections.deque()))
        line = lines[0 if first else 1]

        def leave(waiter: Deferred[None]) -> None:
            line.remove(waiter)
            if not any(lines):
                del self._waiting[key]

        waiter: Deferred[None] = Deferred(leave)
        line.append(waiter)
        return waiter

    def release(self, key: str) -> None:
        """One of ``key``'s slots is free: the next in its lines gets it, or it is given back."""
        if self.per_client <= 0:
            return
        lines = self._waiting.get(key)
        if lines:
            waiter = (lines[0] or lines[1]).popleft()
            if not any(lines):
                del self._waiting[key]
            waiter.callback(None)  # the slot passes on: the count stays
            return
        held = self._in_use.get(key, 0) - 1
        if held > 0:
            self._in_use[key] = held
        else:
            self._in_use.pop(key, None)

    def run_held(
        self, key: str, reactor: Any, pool: Any, func: Callable[..., T], *args: Any
    ) -> Deferred[T]:
        """``pools.run_in`` for a caller holding one of ``key``'s slots, which is freed when
        the thread is done (``Held``): by the reactor when it stops waiting, or by the thread
        if the Deferred was cancelled first."""
        held = Held()

        def work() -> T:
            try:
                return func(*args)
            finally:
                if held.finish():
                    reactor.callFromThread(self.release, key)

        def stop_waiting(result: Any) -> Any:
            if held.abandon():
                self.release(key)
            return result

        return run_in(reactor, pool, work).addBoth(stop_waiting)

    async def _run_in(
        self, key: str, reactor: Any, pool: Any, func: Callable[..., T], *args: Any
    ) -> T:
        await self.acquire(key)
        return await self.run_held(key, reactor, pool, func, *args)

    def run_in(
        self, key: str, reactor: Any, pool: Any, func: Callable[..., T], *args: Any
    ) -> Deferred[T]:
        """``pools.run_in`` in one of ``key``'s slots, for a filter that sends its blocking
        part to the threads itself (the spam score's DNS checks): cancelling it while it
        waits gives up the place in the line."""
        return Deferred.fromCoroutine(self._run_in(key, reactor, pool, func, *args))


def run_in_share(
    slots: ClientSlots | None,
    address: str,
    reactor: Any,
    pool: Any,
    func: Callable[..., T],
    *args: Any,
) -> Deferred[T]:
    """``func(*args)`` in the filters' threads, for a filter that sends its blocking part
    there itself: within the share of the client at ``address`` (``ClientSlots.run_in``), or
    straight to ``pool`` when there is no limit to keep (``slots`` None)."""
    if slots is None:
        return run_in(reactor, pool, func, *args)
    return slots.run_in(client_key(address), reactor, pool, func, *args)
