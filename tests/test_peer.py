"""txmailhost/peer.py: quick_ack on real sockets, and through the wrappers a protocol sees."""

from __future__ import annotations

import socket
import time

import pytest

from txmailhost.peer import quick_ack

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")


class Handle:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


class Transport:
    def __init__(self, handle: object, inner: object = None) -> None:
        self._handle, self.transport = handle, inner

    def getHandle(self) -> object:
        return self._handle


def test_quick_ack_sets_the_option_on_the_socket_under_wrappers():
    handle = Handle()
    tls_connection = object()  # a TLS wrapper's handle is its TLS connection, not a socket
    quick_ack(Transport(tls_connection, Transport(handle)))
    assert handle.options == [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)]


def test_quick_ack_without_a_socket_is_a_no_op():
    quick_ack(None)
    quick_ack(object())
    quick_ack(Transport(object()))


def test_a_second_small_write_is_not_held_for_the_delayed_ack():
    """The reason for quick_ack, on a real loopback connection: a client with Nagle on writes
    a block then a small tail; the server reads the block and answers only after the tail.
    With quick_ack after the read the tail arrives at once instead of after ~40 ms."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    class Wrapped:
        def getHandle(self) -> socket.socket:
            return conn

    def exchange(acknowledge: bool) -> float:
        client.sendall(b"Q\r\n")  # request/response first: the kernel delays ACKs after this
        conn.recv(10)
        conn.sendall(b"+\r\n")
        client.recv(10)
        start = time.perf_counter()
        client.sendall(b"x" * 4000)
        got = b""
        while len(got) < 4000:
            got += conn.recv(65536)
        if acknowledge:
            quick_ack(Wrapped())
        client.sendall(b"\r\n")
        assert conn.recv(10) == b"\r\n"
        return time.perf_counter() - start

    try:
        fast = min(exchange(True) for _ in range(5))
        assert fast < 0.03
    finally:
        for s in (client, conn, server):
            s.close()
