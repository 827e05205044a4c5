"""The relay queue in the real server: submission -> queue -> remote MX, restart, admin bounce.

DNS comes from a test server on loopback (``relay.nameservers``), never the real DNS; the
"remote" mail server is a second txmailhost on 127.0.0.1 (``relay.port`` points at it).
"""

from __future__ import annotations

import os
import poplib
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess

_SERVICE = os.path.join(os.path.dirname(__file__), "..", "..", "txmailhost", "service.py")
with open(_SERVICE) as _f:
    _WIRED = "build_queue" in _f.read()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _WIRED, reason="the relay queue is not wired into service.py yet"),
]


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


def start_sender(tmp_path, dns_server, relay_port: int = 9) -> ServerProcess:
    extra = (
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\nport = {relay_port}\n'
    )
    proc = ServerProcess(str(tmp_path / "sender"), extra_config=extra).start()
    proc.add_user("alice@example.test", PASSWORD)
    return proc


def submit(server: ServerProcess, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("client.test")
        s.login("alice@example.test", PASSWORD)
        s.sendmail(
            "alice@example.test",
            [rcpt],
            "From: alice@example.test\r\nSubject: outbound\r\n\r\nto the queue\r\n",
        )


def inbox(server: ServerProcess, user: str) -> list[bytes]:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user(user)
    p.pass_(PASSWORD)
    messages = [b"\r\n".join(p.retr(i)[1]) for i in range(1, p.stat()[0] + 1)]
    p.quit()
    return messages


def wait_for(check, timeout: float = 15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_remote_mail_is_queued_survives_a_restart_and_an_admin_bounce_reaches_the_inbox(
    tmp_path, dns_server
):
    dns_server.add("remote.test", "A", "127.0.0.1")  # port 9: nobody listens, so it defers
    sender = start_sender(tmp_path, dns_server)
    try:
        submit(sender, "carol@remote.test")
        listing = wait_for(
            lambda: (
                "(deferred)" in sender.cli("queue", "list").stdout
                and sender.cli("queue", "list").stdout
            )
        )
        [line] = listing.splitlines()
        queue_id = line.split()[0]
        assert "carol@remote.test" in line
        sender.stop()
        sender.start()
        assert sender.cli("queue", "list").stdout.split()[0] == queue_id
        sender.cli("queue", "bounce", queue_id)
        [dsn] = wait_for(lambda: inbox(sender, "alice@example.test"))
        assert b"multipart/report" in dsn and b"Status: 5.0.0" in dsn
        assert b"Final-Recipient: rfc822; carol@remote.test" in dsn
        assert sender.cli("queue", "list").stdout == ""
    finally:
        sender.stop()


def test_submitted_mail_reaches_the_remote_servers_inbox_through_its_mx(tmp_path, dns_server):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    sender = start_sender(tmp_path, dns_server, relay_port=far.ports["smtp"])
    try:
        submit(sender, "bob@far.test")
        [message] = wait_for(lambda: inbox(far, "bob@far.test"))
        assert b"Subject: outbound" in message
        assert message.count(b"Return-Path:") == 1
        wait_for(lambda: sender.cli("queue", "list").stdout == "")
    finally:
        sender.stop()
        far.stop()


def test_refused_recipient_bounces_to_the_senders_inbox_with_its_status(tmp_path, dns_server):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "A", "127.0.0.1")
    sender = start_sender(tmp_path, dns_server, relay_port=far.ports["smtp"])
    try:
        submit(sender, "nobody@far.test")
        [dsn] = wait_for(lambda: inbox(sender, "alice@example.test"))
        assert b"Final-Recipient: rfc822; nobody@far.test" in dsn
        assert b"Status: 5.1.1" in dsn
    finally:
        sender.stop()
        far.stop()


def test_dsn_for_a_tagged_sender_reaches_the_user_under_the_configured_delimiter(
    tmp_path, dns_server
):
    """Issue 13 item 5: the bounce router is the server's router, delimiter "-" included."""
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "A", "127.0.0.1")
    extra = (
        f'[routing]\nrecipient_delimiter = "-"\n\n[relay]\nnameservers = ["{dns_server.address}"]'
        f"\ndns_timeout = 2\nport = {far.ports['smtp']}\n"
    )
    sender = ServerProcess(str(tmp_path / "sender"), extra_config=extra).start()
    sender.add_user("alice@example.test", PASSWORD)
    try:
        with smtplib.SMTP("127.0.0.1", sender.ports["submission"], timeout=10) as s:
            s.ehlo("client.test")
            s.login("alice@example.test", PASSWORD)
            s.sendmail(
                "alice-lists@example.test",
                ["nobody@far.test"],
                "From: alice-lists@example.test\r\nSubject: tagged\r\n\r\nbounce me\r\n",
            )
        [dsn] = wait_for(lambda: inbox(sender, "alice@example.test"))
        assert b"Final-Recipient: rfc822; nobody@far.test" in dsn
        assert "dropped" not in sender.log()
    finally:
        sender.stop()
        far.stop()


def test_an_envelope_that_is_not_an_object_neither_stops_the_queue_nor_its_listing(
    tmp_path, dns_server
):
    """``null`` in one envelope stopped the queue at start (never polled again: no retry, no
    expiry, no admin request applied) and ``queue list`` failed with AttributeError."""
    dns_server.add("remote.test", "A", "127.0.0.1")  # port 9: nobody listens, so it defers
    sender = start_sender(tmp_path, dns_server)
    try:
        submit(sender, "carol@remote.test")
        listing = wait_for(
            lambda: "(deferred)" in (out := sender.cli("queue", "list").stdout) and out
        )
        queue_id = listing.split()[0]
        sender.stop()
        queue = tmp_path / "sender" / "queue"
        (queue / "env" / "AAAAAAAAAAAA.json").write_text("null\n")
        (queue / "msg" / "AAAAAAAAAAAA").write_bytes(b"Subject: odd\r\n\r\nodd\r\n")
        assert sender.cli("queue", "list").stdout.split()[0] == queue_id
        sender.start()
        sender.cli("queue", "bounce", queue_id)
        [dsn] = wait_for(lambda: inbox(sender, "alice@example.test"))
        assert b"Final-Recipient: rfc822; carol@remote.test" in dsn
        assert (queue / "env" / "AAAAAAAAAAAA.json.broken").exists()
        assert "envelope AAAAAAAAAAAA is unusable" in sender.log()
    finally:
        sender.stop()
