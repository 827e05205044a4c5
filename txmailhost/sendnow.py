"""Writing a reply to a plain TCP connection at once, rather than on the reactor's next turn.

Twisted's ``transport.write`` only buffers: it registers the socket for writability
(``epoll_ctl``), the reactor's next ``epoll_wait`` reports it writable, ``doWrite`` sends,
and the socket is unregistered again (``epoll_ctl``). For a client working in lock-step (a
POP3 download: RETR, wait, RETR) that is three system calls and one reactor turn on every
reply, more than the reply's own ``send``: strace counted 2.2 ``epoll_wait`` and 2.2
``epoll_ctl`` per RETR where one ``epoll_wait`` and no ``epoll_ctl`` is the floor, and
py-spy put the write turn at twice the time of parsing and answering the command. Dovecot's
output streams try the ``send`` first too.

``write_now`` sends what the kernel takes straight away when nothing is waiting in Twisted's
buffer (so bytes stay in order) and the connection is plain TCP; whatever is left, and every
other case (TLS, a transport that isn't a socket, a full socket buffer, a connection being
closed), goes through ``transport.write`` as before. A send that fails is left to Twisted
too: the bytes go to its buffer and its own ``doWrite`` reports the lost connection as it
always does. Flow control is unchanged: only what the kernel accepted bypasses the buffer, so
``OutputPressure`` (peer.py) still sees every byte the client hasn't taken.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper


def _socket_connection(transport: Any) -> tcp.Connection | None:
    """The TCP connection under ``transport`` when writing to its socket directly keeps
    every byte in order and in the clear it was meant to be: a plain connection, or one
    wrapped only by a ``ProtocolWrapper`` that passes writes on unchanged (``limits.py``)."""
    if type(transport) is ProtocolWrapper:
        transport = transport.transport
    if not isinstance(transport, tcp.Connection) or transport.TLS:
        return None
    if not transport.connected or transport.disconnecting or transport._writeDisconnected:
        return None
    if transport.dataBuffer or transport._tempDataBuffer:
        return None  # earlier bytes are still waiting: these go after them
    return transport


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``: straight to the socket when that is safe, else (and
    for whatever the socket didn't take) through ``transport.write``."""
    connection = _socket_connection(transport)
    if connection is not None and data:
        sent = connection.writeSomeData(data)  # EAGAIN is 0; a failure is an exception value
        if isinstance(sent, int):
            data = data[sent:] if sent < len(data) else b""
    if data:
        transport.write(data)
