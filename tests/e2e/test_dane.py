"""DANE between two real servers: the far one's TLSA record as ``txmailhost dns`` prints it,
served "signed" by the loopback test DNS server; the sender with ``[relay] dnssec = true``."""

from __future__ import annotations

import smtplib

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.e2e.test_relay import inbox, wait_for
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def dns_server():
    s = DNSServer().start()
    yield s
    s.stop()


def _published_tlsa(server: ServerProcess, domain: str) -> str:
    """The TLSA value ``txmailhost dns`` tells the admin to publish."""
    for line in server.cli("dns", domain).stdout.splitlines():
        if " TLSA " in line:
            return line.split(" TLSA ", 1)[1].strip()
    raise AssertionError("txmailhost dns printed no TLSA record")


def _servers(tmp_path, dns_server, tlsa: str | None):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    port = far.ports["smtp"]
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    # The TLSA owner follows the port (_25._tcp in production); the value is far's own.
    dns_server.add(f"_{port}._tcp.mx.far.test", "TLSA", tlsa or _published_tlsa(far, "far.test"))
    dns_server.sign("far.test")
    sender = ServerProcess(
        str(tmp_path / "sender"),
        extra_config=(
            f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\n'
            f"port = {port}\ndnssec = true\n"
        ),
    ).start()
    sender.add_user("alice@example.test", PASSWORD)
    return far, sender


def _submit(sender: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", sender.ports["submission"], timeout=10) as s:
        s.starttls(context=client_context())
        s.login("alice@example.test", PASSWORD)
        s.sendmail(
            "alice@example.test",
            ["bob@far.test"],
            b"From: alice@example.test\r\nSubject: dane\r\n\r\npinned\r\n",
        )


def test_relay_to_a_server_whose_tlsa_record_matches_delivers(tmp_path, dns_server):
    far, sender = _servers(tmp_path, dns_server, None)
    try:
        _submit(sender)
        [stored] = wait_for(lambda: inbox(far, "bob@far.test"), timeout=30)
        assert b"Subject: dane" in stored
        assert b"with ESMTPS" in stored
    finally:
        sender.stop()
        far.stop()


def test_relay_to_a_server_whose_tlsa_record_differs_defers(tmp_path, dns_server):
    far, sender = _servers(tmp_path, dns_server, "3 1 1 " + "ab" * 32)
    try:
        _submit(sender)
        listing = wait_for(
            lambda: "(deferred)" in (out := sender.cli("queue", "list").stdout) and out,
            timeout=30,
        )
        assert "bob@far.test" in listing
        assert "DANE TLS authentication failed" in sender.log()
        assert inbox(far, "bob@far.test") == []
    finally:
        sender.stop()
        far.stop()
