"""SIGTERM: the server stops accepting, lets an SMTP transaction in progress finish with its
250, tells IMAP (even in IDLE), POP3, ManageSieve and idle SMTP sessions goodbye, and stops
cleanly."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import threading
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess

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


SLOW_FILTER = """
[filters]
chain = ["tests.filters.example:ExampleFilter"]
timeout = 60
threads_per_client = 0
[filters.settings."tests.filters.example:ExampleFilter"]
sleep = 40
"""


def test_sigterm_does_not_wait_for_checks_whose_sessions_are_gone(tmp_path, monkeypatch):
    """Twelve messages on 40 s checks: eight in the filters' threads, four queued. Once the
    grace is over their sessions are closed; the server then drops the queued checks and
    leaves the running ones, instead of running all twelve to their end (80 s) first."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.setenv("PYTHONPATH", root)  # the example filter lives in the tests package
    proc = ServerProcess(str(tmp_path / "data"), SLOW_FILTER)
    proc.write_config()
    config = os.path.join(proc.data_dir, "txmailhost.toml")
    with open(config) as f:
        text = f.read().replace("[server]\n", "[server]\nshutdown_grace = 1\n", 1)
    with open(config, "w") as f:
        f.write(text)
    proc.start()
    proc.add_user("alice@example.test", PASSWORD)
    answers: list[object] = []

    def slow() -> None:
        try:
            with smtplib.SMTP(H, proc.ports["smtp"], timeout=90) as client:
                client.sendmail("x@remote.test", ["alice@example.test"],
                                b"Subject: slow-me\r\n\r\nhi\r\n")  # fmt: skip
            answers.append(250)
        except (smtplib.SMTPException, OSError) as e:
            answers.append(e)

    senders = [threading.Thread(target=slow, daemon=True) for _ in range(12)]
    for sender in senders:
        sender.start()
    try:
        deadline = time.monotonic() + 30
        while proc.log().count("slow-me, sleeping") < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.log().count("slow-me, sleeping") == 8, proc.log()[-3000:]
        started = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(timeout=60) == 0
        took = time.monotonic() - started
        # the grace (1 s) and the wait for the running checks (service.FILTER_ABANDON_AFTER)
        assert took < 15, f"stopping took {took:.1f} s"
        for sender in senders:
            sender.join(10)
        assert len(answers) == 12 and 250 not in answers  # none was accepted
        assert proc.log().count("slow-me, sleeping") == 8  # the queued four never ran
        assert "busy thread(s) left to end on their own" in proc.log()
    finally:
        proc.stop()  # when the assertions above failed
