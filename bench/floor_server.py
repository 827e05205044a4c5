"""The least SMTP server Twisted can be: the floor under any Twisted mail server's cost.

Just enough ESMTP for ``bench.smtp_load`` and smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT; PIPELINING offered and honoured: replies go out in order, and what a client sends
after its end of data waits until the ``250``). Every message is written to a file of its own
in the spool directory, in a thread, before the ``250``; ``--durability`` says how:

``spare`` (the default)
    into one of a stock of empty files whose names were made durable beforehand, a batch at a
    time (one directory fsync per ``SPARE_BATCH`` files, in a thread, off the path to the
    ``250``); each message then costs one fsync, of its file. That is what txmailhost does
    (``txmailhost/delivery/spares.py``): the durability of DESIGN invariant 1 for one fsync.
``create``
    into a new file: create, write, fsync the file, fsync the directory (two journal
    commits per message on ext4; ``bench/fsync_ceiling.py``'s loop).
``none``
    write, fsync nothing: the protocol's cost without the disk's.

Nothing else: no address parsing, no limits, no routing, no logging, no filters, no
delivery after the ``250``. ``bench/smtp_floor.py`` measures it beside the real servers: what
it costs is what the reactor, a ``LineReceiver`` and a thread hop per message cost, which a
Twisted server keeping the same durability can hardly go below.

Not a mail server: it accepts any envelope and keeps what it is sent in a directory nobody
reads. Loopback benchmarks only.

Run: ``python -m bench.floor_server --port 2525 --spool DIR [--durability spare|create|none]
[--reuseport]``; ``--reuseport`` binds with ``SO_REUSEPORT`` so several processes can share
the port.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import socket
import sys

from twisted.internet import protocol, threads
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

# The reply of an SMTP verb; DATA and QUIT are handled apart.
_REPLIES = {
    b"HELO": b"250 floor.localdomain\r\n",
    b"EHLO": b"250-floor.localdomain\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n",
    b"MAIL": b"250 2.1.0 ok\r\n",
    b"RCPT": b"250 2.1.5 ok\r\n",
    b"RSET": b"250 2.0.0 ok\r\n",
    b"NOOP": b"250 2.0.0 ok\r\n",
}
_END = b"\r\n.\r\n"
# Threads that run the fsyncs: txmailhost's default ``[store] threads``.
POOL_THREADS = 8
DURABILITY = ("spare", "create", "none")
# Spare files made (and their directory fsync'd) at a time; a refill starts below this many.
SPARE_BATCH = 256


def _fsync_dir(path: str) -> None:
    directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def make_spares(spool: str, names: list[str]) -> list[str]:
    """Create empty files ``names`` in ``spool`` and make their names durable (one fsync)."""
    for name in names:
        os.close(os.open(os.path.join(spool, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _fsync_dir(spool)
    return names


def store(spool: str, name: str, spare: bool, message: bytes, durability: str) -> None:
    """Write ``message`` to the file ``name`` in ``spool`` as ``durability`` says (module doc).

    ``spare``: the file exists and its name is durable already. Blocks on the disk: run in a
    thread.
    """
    flags = os.O_WRONLY if spare else os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(os.path.join(spool, name), flags, 0o600)
    try:
        view = memoryview(message)
        while view:
            view = view[os.write(fd, view) :]
        if durability != "none":
            os.fsync(fd)
    finally:
        os.close(fd)
    if durability != "none" and not spare:
        _fsync_dir(spool)


class FloorSession(LineReceiver):
    """One SMTP session: commands in line mode, the message in raw mode until ``CRLF.CRLF``."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536
    factory: FloorFactory

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # as txmailhost does: small replies go out at once
        self.transport.write(b"220 floor.localdomain ESMTP\r\n")
        self._message = bytearray()
        self._after: bytearray | None = None  # bytes after the end of data, while it commits

    def lineReceived(self, line: bytes) -> None:
        verb = line[:4].upper()
        reply = _REPLIES.get(verb)
        if reply is not None:
            self.transport.write(reply)
        elif verb == b"DATA":
            self.transport.write(b"354 go ahead\r\n")
            # A leading CRLF makes a message that is only ".\r\n" end like any other.
            self._message = bytearray(b"\r\n")
            self.setRawMode()
        elif verb == b"QUIT":
            self.transport.write(b"221 2.0.0 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"500 5.5.2 not understood\r\n")

    def rawDataReceived(self, data: bytes) -> None:
        if self._after is not None:  # pipelined after the end of data: wait for the 250
            self._after += data
            return
        start = max(0, len(self._message) - len(_END) + 1)
        self._message += data
        end = self._message.find(_END, start)
        if end < 0:
            return
        self._after = bytearray(self._message[end + len(_END) :])
        message = bytes(self._message[2 : end + 2])  # the leading CRLF off, the last CRLF kept
        self._message = bytearray()
        committed = threads.deferToThreadPool(
            self.factory.reactor,
            self.factory.reactor.getThreadPool(),
            store,
            self.factory.spool,
            *self.factory.name(),
            message,
            self.factory.durability,
        )
        committed.addCallbacks(self._accepted, self._failed)

    def _accepted(self, _: object) -> None:
        self._reply_and_resume(b"250 2.0.0 queued\r\n")

    def _failed(self, reason: Failure) -> None:
        print(f"floor: write failed: {reason.getErrorMessage()}", file=sys.stderr)
        self._reply_and_resume(b"451 4.3.0 write failed\r\n")

    def _reply_and_resume(self, reply: bytes) -> None:
        self.transport.write(reply)
        after, self._after = bytes(self._after or b""), None
        self.setLineMode(after)


class FloorFactory(protocol.Factory):
    """Sessions that spool into ``spool``, each file named after the process and a counter.

    With ``durability = "spare"`` it keeps a stock of spare files, refilled in a thread; should
    the stock run dry, a message gets a new file and two fsyncs (``create``) instead.
    """

    protocol = FloorSession

    def __init__(self, reactor: object, spool: str, durability: str) -> None:
        self.reactor = reactor
        self.spool = spool
        self.durability = durability
        self._numbers = itertools.count()
        self._prefix = f"{os.getpid()}."
        self._spares: collections.deque[str] = collections.deque()
        self._refilling = False
        if durability == "spare":
            self._spares.extend(make_spares(spool, self._new_names(2 * SPARE_BATCH)))

    def _new_names(self, count: int) -> list[str]:
        return [f"{self._prefix}{next(self._numbers)}" for _ in range(count)]

    def name(self) -> tuple[str, bool]:
        """The file the next message goes to, and whether it is a spare."""
        if self.durability != "spare":
            return self._new_names(1)[0], False
        if len(self._spares) < SPARE_BATCH and not self._refilling:
            self._refilling = True
            made = threads.deferToThreadPool(
                self.reactor,
                self.reactor.getThreadPool(),
                make_spares,
                self.spool,
                self._new_names(SPARE_BATCH),
            )
            made.addCallback(self._refilled)
        if self._spares:
            return self._spares.popleft(), True
        return self._new_names(1)[0], False

    def _refilled(self, names: list[str]) -> None:
        self._spares.extend(names)
        self._refilling = False


def _reuseport_socket(port: int) -> socket.socket:
    """A listening loopback socket that other processes may bind too (``SO_REUSEPORT``)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    return listener


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spool", required=True, help="directory the messages are written to")
    parser.add_argument(
        "--durability", choices=DURABILITY, default="spare", help="how a message is made durable"
    )
    parser.add_argument("--reuseport", action="store_true", help="bind with SO_REUSEPORT")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    os.makedirs(args.spool, exist_ok=True)
    reactor.suggestThreadPoolSize(POOL_THREADS)
    factory = FloorFactory(reactor, args.spool, args.durability)
    if args.reuseport:
        listener = _reuseport_socket(args.port)
        reactor.adoptStreamPort(listener.fileno(), socket.AF_INET, factory)
        listener.close()  # the reactor's port holds its own descriptor
    else:
        reactor.listenTCP(args.port, factory, backlog=1024, interface="127.0.0.1")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
