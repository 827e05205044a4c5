"""A hostile stand-in for clamd or spamd on a UNIX socket: it takes one connection, reads
the request the way the engine would, and answers with whatever the test gives it — fast,
slowly, or garbage. No TCP port: nothing a parallel test run can collide with."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator


def read_instream(conn: socket.socket) -> bytes:
    """clamd's side of INSTREAM: the command, then chunks up to the zero length."""
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
        if data.endswith(b"\0\0\0\0"):
            return data


def read_until_eof(conn: socket.socket) -> bytes:
    """spamd's side: the request, which spamc ends by shutting its side down."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def trickle(conn: socket.socket, reply: bytes, every: float) -> None:
    """``reply`` an octet at a time, ``every`` seconds apart (a wedged or hostile engine)."""
    for octet in reply:
        try:
            conn.sendall(bytes([octet]))
        except OSError:
            return  # the client gave up on us
        time.sleep(every)


@contextlib.contextmanager
def fake_engine(
    read: Callable[[socket.socket], bytes], answer: Callable[[socket.socket], None]
) -> Iterator[tuple[str, list[bytes]]]:
    """(the socket's path, the requests read so far): one connection served in a thread."""
    directory = tempfile.mkdtemp(prefix="fake-engine-")
    path = os.path.join(directory, "engine.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    requests: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                requests.append(read(conn))
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, requests
    finally:
        listener.close()
        thread.join(timeout=15)
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.rmdir(directory)
