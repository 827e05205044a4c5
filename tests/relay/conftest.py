"""Real loopback networking for relay tests, without running the reactor for good.

The global reactor is driven with ``iterate`` until the Deferred a test waits for has fired,
and everything the test left (connections, listeners, delayed calls) is cleaned up after it, so
tests stay independent. (A private, uninstalled reactor doesn't work: Twisted's TLS layer
schedules its write aggregation on the global reactor.)
"""

from __future__ import annotations

import time

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from tests.support.dns import DNSServer


class Net:
    def __init__(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.ports: list = []

    def run(self, awaitable, timeout: float = 10.0):
        """Drive the reactor until ``awaitable`` is done; returns its result or raises."""
        d = awaitable if isinstance(awaitable, Deferred) else ensureDeferred(awaitable)
        results: list = []
        d.addBoth(results.append)
        deadline = time.monotonic() + timeout
        while not results:
            if time.monotonic() > deadline:
                raise TimeoutError("the reactor did not finish the work in time")
            self.reactor.iterate(0.01)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def listen(self, factory, interface: str, port: int = 0):
        from twisted.internet.endpoints import TCP4ServerEndpoint

        listening = self.run(
            TCP4ServerEndpoint(self.reactor, port, interface=interface).listen(factory)
        )
        self.ports.append(listening)
        return listening.getHost().port

    def close(self) -> None:
        for port in self.ports:
            self.run(port.stopListening())
        self.reactor.disconnectAll()
        for _ in range(5):
            self.reactor.iterate(0)
        for call in self.reactor.getDelayedCalls():
            if call.active():
                call.cancel()


@pytest.fixture
def net():
    n = Net()
    yield n
    n.close()


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()
