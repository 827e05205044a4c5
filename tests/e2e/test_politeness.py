"""The smtp listener's politeness toward bots, against the real server: a client that waits
for the delayed greeting (smtplib, as every MTA does) delivers; one that speaks first is
refused; past the message rate a client gets 421 4.7.0 and comes back after the window."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

CONFIG = "[smtp]\ngreeting_delay = 1\nclient_message_rate = 2\nrate_window = 3\n"
MESSAGE = "From: x@remote.test\r\nTo: alice@example.test\r\nSubject: polite\r\n\r\nhi\r\n"


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess(str(tmp_path / "data"), extra_config=CONFIG).start()
    proc.add_user("alice@example.test", "Pw-politeness-1")
    yield proc
    proc.stop()


def test_waiting_clients_deliver_early_talkers_and_floods_are_refused(server):
    port = server.ports["smtp"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as bot:
        bot.sendall(b"EHLO bot.test\r\n")  # before the greeting
        assert bot.recv(1024).startswith(b"554 5.5.1 ")
        assert bot.recv(1024) == b""  # and disconnected

    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # waits for the 220
        assert time.monotonic() - started >= 0.9
        s.sendmail("x@remote.test", ["alice@example.test"], MESSAGE)
        s.sendmail("x@remote.test", ["alice@example.test"], MESSAGE)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            s.sendmail("x@remote.test", ["alice@example.test"], MESSAGE)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0 too many messages")
    time.sleep(3.2)  # the window has moved on
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], MESSAGE)
