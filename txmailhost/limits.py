"""Connection limits per listener: in total and per client address (DESIGN invariant 4).

Thousands of idle connections are a cheap attack on any server (security.md, resource
exhaustion). ``LimitedFactory`` wraps a listener's factory (outside any TLS wrapper, so it
counts TCP connections): past either limit the new connection gets the protocol's own "try
later" line (SMTP ``421 4.7.0``, POP3 ``-ERR [SYS/TEMP]``, IMAP ``* BYE``) and is closed, and
the refusal is logged. Twisted's ``LimitConnectionsByPeer`` closes without a word, which
clients report as a network error and retry at once.
"""

from __future__ import annotations

from collections import Counter
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

    def buildProtocol(self, addr: Any) -> Any:
        key = client_key(addr) or "?"
        if self.total >= self.max_total or self.per_ip[key] >= self.max_per_ip:
            log.warn(
                "{label}: refused connection from {client}: {total} open, {mine} from it",
                label=self.label,
                client=key,
                total=self.total,
                mine=self.per_ip[key],
            )
            metrics.connection_refused(self.label)
            return _Refuse(self.refusal)
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.total += 1
            self.per_ip[key] += 1
            protocol._limit_key = key
            metrics.connection_accepted(self.label)
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
