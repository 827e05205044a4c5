"""write_now: a reply goes to the socket at once when that keeps the byte stream intact, and
through Twisted's buffer otherwise (bytes already waiting, TLS, a wrapper that changes writes,
a full socket buffer, a closing connection). Real loopback TCP sockets, a MemoryReactor for
the writer registrations, so a test sees exactly what reached the peer with no reactor turn."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from tests.support.onsocket import loopback_pair
from txmailhost.sendnow import write_now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(ours, the client's): a connected loopback TCP pair, both non-blocking."""
    with loopback_pair() as sockets:
        yield sockets


def _connection(sock: socket.socket, reactor: MemoryReactor) -> tcp.Connection:
    connection = tcp.Connection(sock, Protocol(), reactor)
    connection.connected = True
    connection.protocol.makeConnection(connection)
    return connection


def _received(client: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            piece = client.recv(1 << 20)
        except BlockingIOError:
            return data
        if not piece:
            return data
        data += piece


def test_a_reply_reaches_the_client_without_a_reactor_turn(pair):
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    write_now(connection, b"+OK 12 octets\r\n")
    assert _received(client) == b"+OK 12 octets\r\n"
    assert connection not in reactor.getWriters()  # no epoll registration, nothing buffered


def test_through_a_protocol_wrapper_that_passes_writes_on(pair):
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
    wrapper.makeConnection(connection)
    write_now(wrapper, b"+OK\r\n")
    assert _received(client) == b"+OK\r\n"


def test_a_wrapper_that_changes_writes_is_not_bypassed(pair):
    """Only a plain ``ProtocolWrapper`` is seen through: a subclass may change the bytes on
    their way down, as ``TLSMemoryBIOProtocol`` (POP3S) encrypts them."""
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)

    class Encrypting(ProtocolWrapper):
        def write(self, data: bytes) -> None:
            self.transport.write(data.upper())

    wrapper = Encrypting(WrappingFactory(None), Protocol())
    wrapper.makeConnection(connection)
    write_now(wrapper, b"+ok secret\r\n")
    connection.doWrite()
    assert _received(client) == b"+OK SECRET\r\n"


def test_bytes_already_buffered_keep_their_place(pair):
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    connection.write(b"first\r\n")  # waits for the reactor's next turn
    write_now(connection, b"second\r\n")
    assert _received(client) == b""
    connection.doWrite()  # the reactor finds the socket writable
    assert _received(client) == b"first\r\nsecond\r\n"


def test_what_the_socket_does_not_take_is_buffered_in_order(pair):
    ours, client = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    data = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
    write_now(connection, data)
    assert connection in reactor.getWriters()  # the rest waits in Twisted's buffer
    got = _received(client)
    assert 0 < len(got) < len(data)
    while len(got) < len(data):
        connection.doWrite()
        got += _received(client)
    assert got == data


def test_a_tls_connection_is_left_to_its_tls_layer(pair):
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    connection.TLS = True  # as ``startTLS`` marks it: bytes must go through the TLS layer
    sent: list[bytes] = []
    connection.write = sent.append  # type: ignore[method-assign]
    write_now(connection, b"+OK secret\r\n")
    assert sent == [b"+OK secret\r\n"]
    assert _received(client) == b""


def test_a_closing_connection_is_left_to_twisted(pair):
    ours, client = pair
    reactor = MemoryReactor()
    connection = _connection(ours, reactor)
    connection.disconnecting = True
    sent: list[bytes] = []
    connection.write = sent.append  # type: ignore[method-assign]
    write_now(connection, b"late\r\n")
    assert sent == [b"late\r\n"]
    assert _received(client) == b""


def test_a_transport_without_a_socket_gets_a_plain_write():
    transport = StringTransport()
    write_now(transport, b"+OK\r\n")
    assert transport.value() == b"+OK\r\n"
