"""What one worker tells the others: "this mailbox changed", "this login failed", "queued".

Workers share the data directory, so every fact that matters is on disk and each worker can
read it (the mailbox index, the spool, the accounts). What isn't on disk is *when to look*: an
IMAP session in IDLE on worker B must poll its index as soon as worker A delivers, not at its
next command; the queue runner in worker 0 must adopt what worker 1 queued now, not at its
next poll; and a password guesser spreading connections over workers must meet one counter.
The bus carries those nudges and counters.

How: each worker binds a UNIX datagram socket ``DATA/run/workers/<slot>.sock`` and sends each
message to every other worker's socket. Datagrams keep message boundaries (no framing code),
cost one ``sendto`` per peer, and need no broker process that could itself die. A message for
a peer that isn't running is dropped: its successor learns everything from disk at its
start. A peer that is running but busy has a short queue (Linux: ``net.unix.max_dgram_qlen``,
10 datagrams): under a crowd logging in, each connection is told to every peer, and a worker
behind on its reactor would lose what came next, a ``change`` among them, and a session in
IDLE there has no next command to poll at: the push would be lost, not late (0.8% of them
with 100,000 sessions on 8 workers). So what a busy peer can't take now waits here, in order
(the same message twice kept once, at most ``BACKLOG`` per peer), and is sent again every
``RETRY`` seconds until taken. Messages are ``kind\\0field\\0field...`` in UTF-8, far below the
datagram size limit (a mailbox path is at most a few KiB).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from txmailhost.socketpaths import usable

log = Logger(namespace="txmailhost.workers")

MAX_DATAGRAM = 16 * 1024  # mailbox directories are bounded by PATH_MAX (4 KiB) well below this
BACKLOG = 4096  # messages kept per busy peer; beyond, the oldest go (each is also on disk)
RETRY = 0.01  # seconds between tries to a busy peer
_GONE = (errno.ENOENT, errno.ECONNREFUSED)
_BUSY = (errno.EAGAIN, errno.ENOBUFS, errno.EWOULDBLOCK)


def bus_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "run", "workers")


def socket_name(slot: int) -> str:
    return f"{slot}.sock"


class _Receiver(DatagramProtocol):
    def __init__(self, bus: PeerBus) -> None:
        self.bus = bus

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.bus.received(data)


class PeerBus:
    """This worker's end of the bus: ``send`` to every peer, handlers called per kind."""

    def __init__(self, reactor: Any, directory: str, slot: int, workers: int) -> None:
        self.reactor = reactor
        self.directory = directory
        self.slot = slot
        self.peers = [
            os.path.join(directory, socket_name(other)) for other in range(workers) if other != slot
        ]
        self.path = os.path.join(directory, socket_name(slot))
        self._handlers: dict[str, Callable[..., None]] = {}
        self._port: Any = None
        self._peer_addresses: dict[str, str] = {}
        self.sent = self.dropped = self.received_count = 0
        self._waiting: dict[str, OrderedDict[bytes, None]] = {}  # busy peer -> its messages
        self._retry: Any = None

    def on(self, kind: str, handler: Callable[..., None]) -> None:
        """Call ``handler(*fields)`` for each message of ``kind`` from a peer (reactor thread)."""
        self._handlers[kind] = handler

    def start(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # this slot's previous process is dead: the supervisor knows
        # A deep data directory's socket paths are named through the directory's descriptor.
        self._peer_addresses = {peer: usable(peer) for peer in self.peers}
        self._port = self.reactor.listenUNIXDatagram(
            usable(self.path), _Receiver(self), maxPacketSize=MAX_DATAGRAM, mode=0o600
        )
        # A new process in this slot: whatever the others count for the old one is void.
        self.send("hello", str(self.slot))

    def stop(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._waiting.clear()
        port, self._port = self._port, None
        if port is not None:
            port.stopListening()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def send(self, kind: str, *fields: str) -> None:
        """Tell every other worker; never blocks, never raises (see the module docstring)."""
        if self._port is None:
            return
        data = "\0".join((kind, *fields)).encode("utf-8", "surrogateescape")
        if len(data) > MAX_DATAGRAM:
            log.warn("workers: {kind} message of {n} octets not sent", kind=kind, n=len(data))
            return
        for peer in self.peers:
            if peer in self._waiting:  # behind what waits for it already: order is kept
                self._hold(peer, data)
            else:
                self._send_to(peer, data)

    def _send_to(self, peer: str, data: bytes) -> bool:
        """One try; False when the peer is busy (the message is to wait)."""
        try:
            self._port.socket.sendto(data, self._peer_addresses[peer])
        except OSError as e:
            if e.errno in _BUSY:
                self._hold(peer, data)
                return False
            if e.errno not in _GONE:
                log.warn("workers: can't tell {peer}: {why}", peer=peer, why=e)
            self.dropped += 1
            return True
        self.sent += 1
        return True

    def _hold(self, peer: str, data: bytes) -> None:
        waiting = self._waiting.setdefault(peer, OrderedDict())
        waiting.pop(data, None)  # the same nudge twice is one, at its later place
        waiting[data] = None
        while len(waiting) > BACKLOG:
            waiting.popitem(last=False)
            self.dropped += 1
        if self._retry is None:
            self._retry = self.reactor.callLater(RETRY, self._flush)

    def _flush(self) -> None:
        """Send what waits for busy peers, in order, until one is busy again."""
        self._retry = None
        if self._port is None:
            return
        for peer, waiting in list(self._waiting.items()):
            del self._waiting[peer]  # _send_to holds it again if the peer is still busy
            while waiting:
                data, _ = waiting.popitem(last=False)
                if not self._send_to(peer, data):
                    self._waiting[peer].update(waiting)  # the rest after it, in order
                    break

    def received(self, data: bytes) -> None:
        kind, *fields = data.decode("utf-8", "surrogateescape").split("\0")
        handler = self._handlers.get(kind)
        if handler is None:
            return
        self.received_count += 1
        try:
            handler(*fields)
        except Exception:
            log.failure("workers: handling a {kind} message failed", kind=kind)
