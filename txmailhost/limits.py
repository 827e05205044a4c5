"""Connection limits per listener: in total and per client address (DESIGN invariant 4).

Thousands of idle connections are a cheap attack on any server (security.md, resource
exhaustion). ``LimitedFactory`` wraps a listener's factory (outside any TLS wrapper, so it
counts TCP connections): past either limit the new connection gets the protocol's own "try
later" line (SMTP ``421 4.7.0``, POP3 ``-ERR [SYS/TEMP]``, IMAP ``* BYE``) and is closed, and
the refusal is logged. On an implicit-TLS listener the line is empty (``ListenerKind.refusal``):
the connection is closed without a word rather than answered in clear text inside TLS. Twisted's ``LimitConnectionsByPeer`` closes without a word, which
clients report as a network error and retry at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from txmailhost.accounts.throttle import client_key
from txmailhost.ops import metrics

log = Logger()


class _Refuse(Protocol):
    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        if self.line:
            self.transport.write(self.line)
        self.transport.loseConnection()


class LimitedFactory(WrappingFactory):
    noisy = False  # the Listener logs what listens where, once

    def __init__(
        self, wrapped: Any, label: str, refusal: bytes, max_total: int, max_per_ip: int
    ) -> None:
        super().__init__(wrapped)
        self.label = label
        self.refusal = refusal
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.per_ip: Counter[str] = Counter()
        self.total = 0
        # With worker processes (workers/), the limits are the server's, not each worker's:
        # every worker tells the others its counts (``forward(key, mine, total)``, absolute
        # numbers, so a lost message is corrected by the next one) and keeps theirs here.
        self.forward: Callable[[str, int, int], None] | None = None
        self._peer_total: dict[int, int] = {}
        self._peer_per_ip: dict[int, Counter[str]] = {}
        self.counted: Callable[[], None] | None = None  # after each open and close (AcceptPause)

    def peer_counts(self, slot: int, key: str, mine: int, total: int) -> None:
        """Worker ``slot`` has ``mine`` connections from ``key`` and ``total`` in all."""
        counts = self._peer_per_ip.setdefault(slot, Counter())
        if mine > 0:
            counts[key] = mine
        else:
            counts.pop(key, None)
        self._peer_total[slot] = total

    def peer_restarted(self, slot: int) -> None:
        """A new process in ``slot``: the counts of its predecessor are void."""
        self._peer_total.pop(slot, None)
        self._peer_per_ip.pop(slot, None)

    def over_fair_share(self) -> bool:
        """Whether this worker holds clearly more of these connections than the least busy
        live worker (``workers/accepting.py`` then lets that one accept first). The slack
        (one connection, plus one per 16) keeps workers from deferring to each other over
        counts the bus hasn't carried yet."""
        if not self._peer_total:
            return False
        return self.total > min(self._peer_total.values()) + 1 + self.total // 16

    def _open(self, key: str) -> tuple[int, int]:
        """(connections in all, connections from ``key``), every worker counted."""
        total = self.total + sum(self._peer_total.values())
        mine = self.per_ip[key] + sum(c.get(key, 0) for c in self._peer_per_ip.values())
        return total, mine

    def _tell(self, key: str) -> None:
        if self.forward is not None:
            self.forward(key, self.per_ip.get(key, 0), self.total)
        if self.counted is not None:
            self.counted()

    def buildProtocol(self, addr: Any) -> Any:
        key = client_key(addr) or "?"
        total, mine = self._open(key)
        if total >= self.max_total or mine >= self.max_per_ip:
            log.warn(
                "{label}: refused connection from {client}: {total} open, {mine} from it",
                label=self.label,
                client=key,
                total=total,
                mine=mine,
            )
            metrics.connection_refused(self.label)
            return _Refuse(self.refusal)
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.total += 1
            self.per_ip[key] += 1
            protocol._limit_key = key
            metrics.connection_accepted(self.label)
            self._tell(key)
        return protocol

    def unregisterProtocol(self, protocol: ProtocolWrapper) -> None:
        super().unregisterProtocol(protocol)
        key = getattr(protocol, "_limit_key", None)
        if key is not None:
            self.total -= 1
            self.per_ip[key] -= 1
            metrics.connection_closed(self.label)
            if self.per_ip[key] <= 0:
                del self.per_ip[key]
            self._tell(key)


class AcceptPause:
    """A worker whose connections near its open-file limit stops accepting until some close.

    Worker processes share each listening socket (workers/supervisor.py), and the kernel hands
    a new connection to whichever worker accepts first, so their shares drift apart: in a
    crowd of 100,000 on 8 workers one may hold half again the average. One at its descriptor
    limit can't accept: Twisted then takes the connection into its reserve descriptor and
    closes it at once, refusing a client other workers had room for, and meanwhile the worker
    can't open a mail file either. So past ``ceiling`` connections (the limit less what the
    process needs besides) this worker stops reading its listening sockets, leaving new
    connections to the others, and starts again below ``resume``.
    """

    def __init__(self, factories: list[LimitedFactory], listeners: list[Any], ceiling: int) -> None:
        self.factories = factories
        self.listeners = listeners  # service.Listener: ``port`` once bound
        self.ceiling = max(1, ceiling)
        self.resume = self.ceiling - max(1, self.ceiling // 20)
        self.paused = False
        for factory in factories:
            factory.counted = self.check

    def check(self) -> None:
        connections = sum(factory.total for factory in self.factories)
        if not self.paused and connections >= self.ceiling:
            self.paused = True
            for listener in self.listeners:
                if listener.port is not None:
                    listener.port.held = True  # workers/accepting.py: no resume meanwhile
                    listener.port.stopReading()
            log.warn(
                "{n} connections, near this worker's open-file limit: new connections are"
                " left to the other workers until it has fewer than {resume}",
                n=connections,
                resume=self.resume,
            )
        elif self.paused and connections < self.resume:
            self.paused = False
            for listener in self.listeners:
                if listener.port is not None:
                    listener.port.held = False
                    listener.port.startReading()
            log.info("{n} connections: accepting again", n=connections)
