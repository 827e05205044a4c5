"""SIGTERM: the server stops accepting, lets an SMTP transaction in progress finish with its
250, tells IMAP (even in IDLE), POP3, ManageSieve and idle SMTP sessions goodbye, and stops
cleanly."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.slow
H = "127.0.0.1"


class Line:
    """A raw client session: send lines, read replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((H, port), timeout=15)
        self.reader = self.sock.makefile("rb")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def read(self) -> bytes:
        return self.reader.readline()

    def read_until(self, prefix: bytes) -> bytes:
        while True:
            line = self.read()
            assert line, f"closed before {prefix!r}"
            if line.startswith(prefix):
                return line


def test_sigterm_finishes_the_transaction_in_progress_and_says_goodbye(server):
    smtp = Line(server.ports["smtp"])
    smtp.read()
    for command in (
        "EHLO client.test",
        "MAIL FROM:<x@remote.test>",
        "RCPT TO:<alice@example.test>",
    ):
        smtp.send(command)
        smtp.read_until(b"250 ")
    smtp.send("DATA")
    assert smtp.read().startswith(b"354")
    smtp.send("Subject: in flight\r\n\r\nfirst half")

    idle_smtp = Line(server.ports["smtp"])
    idle_smtp.read()
    imap = Line(server.ports["imap"])
    imap.read()
    imap.send(f'a LOGIN alice@example.test "{PASSWORD}"')
    imap.read_until(b"a OK")
    imap.send("b SELECT INBOX")
    imap.read_until(b"b OK")
    imap.send("c IDLE")
    assert imap.read().startswith(b"+ ")
    pop = Line(server.ports["pop3"])
    pop.read()
    sieve = Line(server.ports["managesieve"])
    while not sieve.read().startswith(b"OK"):  # the capabilities, then OK
        pass

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert imap.read_until(b"* BYE") == b"* BYE [UNAVAILABLE] server shutting down\r\n"
    assert idle_smtp.read() == b"421 4.3.2 server shutting down, try again later\r\n"
    assert pop.read().startswith(b"-ERR [SYS/TEMP] server shutting down")
    # RFC 5804 1.3: TRYLATER, a temporary failure (it was closed without a word)
    assert sieve.read() == b'BYE (TRYLATER) "server shutting down, try again later"\r\n'
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection((H, server.ports["smtp"]), timeout=5).close()

    smtp.send("second half\r\n.")  # the transaction completes: acknowledged, then goodbye
    assert smtp.read().startswith(b"250 2.0.0 OK")
    assert smtp.read() == b"421 4.3.2 server shutting down, try again later\r\n"
    # an orderly stop: exit status 0, not twistd's re-raised signal
    assert server.process.wait(timeout=30) == 0
    assert "Traceback" not in server.log() and "Unhandled" not in server.log()
    assert time.monotonic() - started < 15
    server.process = None

    # The acknowledged message is there after a restart.
    server.start()
    listing = server.cli("search", "alice@example.test", "INBOX", "SUBJECT", "in flight")
    assert listing.stdout.strip() != ""
