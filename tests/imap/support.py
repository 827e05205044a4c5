"""A scripted IMAP session over StringTransport, on a real store, accounts database and Portal
(``make_world``); store and checker work runs synchronously, the SyncReactor is the Clock."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.support.fixtures import PASSWORD, MailWorld
from txmailhost.imap.server import IMAPFactory

ALICE = "alice@example.test"
BOB = "bob@example.test"
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40143)
REMOTE = IPv4Address("TCP", "192.0.2.10", 40143)
SERVER = IPv4Address("TCP", "127.0.0.1", 143)  # where the server listens


class Session:
    """One client connection: ``send`` a command, read back exactly what the server wrote."""

    def __init__(self, factory: IMAPFactory, peer: IPv4Address = LOOPBACK) -> None:
        self.factory = factory
        self.transport = StringTransport(hostAddress=SERVER, peerAddress=peer)
        self.protocol = factory.buildProtocol(peer)
        self.protocol.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        """Feed raw bytes (CRLF not added) and return the server's output."""
        self.protocol.dataReceived(data)
        return self.take()

    def cmd(self, line: str | bytes) -> bytes:
        raw = line.encode() if isinstance(line, str) else line
        return self.send(raw + b"\r\n")

    def login(self, user: str = ALICE, password: str = PASSWORD) -> bytes:
        return self.cmd(f"a LOGIN {user} {password}")

    def close(self) -> None:
        self.protocol.connectionLost(None)


def make_factory(world: MailWorld, **kwargs) -> IMAPFactory:
    kwargs.setdefault("reactor", world.reactor)
    return IMAPFactory(world.portal, **kwargs)


def deliver(world: MailWorld, user: str, message: bytes, mailbox: str = "INBOX") -> int:
    """Deliver like SMTP does (a fsync'd spool file, linked into a Maildir); the UID."""
    import os
    import tempfile

    from txmailhost.store.files import deliver_file

    fd, path = tempfile.mkstemp(dir=world.root)
    with os.fdopen(fd, "wb") as f:
        f.write(message)
    out: list = []
    deliver_file(world.store, [(user, mailbox)], path).addBoth(out.append)
    os.unlink(path)
    (result,) = out
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result[(user, mailbox)]


def listening_port(server, label: str, timeout: float = 15) -> int:
    """The port of ``label`` from the real server's log. ``ServerProcess.start`` returns once
    SMTP and POP3 listen; the IMAP listeners may log a moment later."""
    import time

    from tests.support.server import _LISTENING

    deadline = time.time() + timeout
    while label not in server.ports and time.time() < deadline:
        server.ports.update({m[1]: int(m[3]) for m in _LISTENING.finditer(server.log())})
        if label not in server.ports:
            time.sleep(0.05)
    return server.ports[label]
