"""A protocol on the server end of a real loopback TCP connection, with a MemoryReactor for
the transport's registrations: a test sees what reached the client after each handled line,
with no reactor turn in between (``sendnow.write_now``)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure


@dataclass
class OnSocket:
    transport: tcp.Server
    reactor: MemoryReactor
    answer: Callable[[bytes], bytes]  # feed a line (b"": none), then what the client has


@contextmanager
def loopback_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the server's end, the client's): a connected loopback TCP pair, both non-blocking."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setblocking(False)
    peer.setblocking(False)
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


@contextmanager
def on_real_socket(factory: Any, address: Any) -> Iterator[OnSocket]:
    """``factory``'s protocol (built for ``address``) on the server end of a loopback pair."""
    with loopback_pair() as (ours, peer):
        reactor = MemoryReactor()
        protocol = factory.buildProtocol(address)
        transport = tcp.Server(ours, protocol, peer.getsockname(), None, 1, reactor)
        transport.connected = True
        protocol.makeConnection(transport)

        def answer(line: bytes) -> bytes:
            if line:
                protocol.dataReceived(line)
            try:
                return peer.recv(1 << 16)
            except BlockingIOError:
                return b"(nothing yet)"

        try:
            yield OnSocket(transport, reactor, answer)
        finally:
            protocol.connectionLost(Failure(ConnectionDone()))
