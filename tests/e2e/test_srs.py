"""SRS in the real server: a forward or a Sieve redirect to another server leaves with an SRS
sender and an ARC set, a bounce to that address reaches the original sender, a forged one is
refused 550 5.1.1. DNS comes from a test server on loopback; the other server is a second txmailhost on
127.0.0.1."""

from __future__ import annotations

import smtplib

import pytest
from sievelib.managesieve import Client

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_relay import inbox, wait_for
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


def _sieve_redirect(server: ServerProcess) -> None:
    client = Client("127.0.0.1", server.ports["managesieve"])
    assert client.connect("alice@example.test", PASSWORD, authmech="PLAIN"), client.errmsg
    assert client.putscript("main", 'redirect "bob@far.test";\r\n'), client.errmsg
    assert client.setactive("main"), client.errmsg
    client.logout()


def _forward(server: ServerProcess) -> None:
    server.cli("user", "forward", "alice@example.test", "bob@far.test", "--no-keep-copy")


@pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection")
@pytest.mark.parametrize("forwarding", [_forward, _sieve_redirect], ids=["forward", "sieve"])
def test_forward_is_srs_rewritten_and_its_bounce_reaches_the_original_sender(
    tmp_path, dns_server, forwarding
):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    far.add_user("carol@far.test", PASSWORD)
    dns_server.add("far.test", "A", "127.0.0.1")
    extra = (
        '[srs]\ndomain = "fwd.example.test"\n\n[mailauth]\ncheck_inbound = true\n\n'
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\n'
        f"port = {far.ports['smtp']}\n"
    )
    ours = ServerProcess(str(tmp_path / "ours"), extra_config=extra).start()
    ours.add_user("alice@example.test", PASSWORD)
    ours.cli("dkim", "init", "example.test")  # an RSA key of the host name's domain: ARC
    forwarding(ours)
    try:
        with smtplib.SMTP("127.0.0.1", ours.ports["smtp"], timeout=10) as s:
            s.sendmail("carol@far.test", ["alice@example.test"],
                       "From: carol@far.test\r\nSubject: forward me\r\n\r\nhi\r\n")  # fmt: skip
        [forwarded] = wait_for(lambda: inbox(far, "bob@far.test"))
        return_path = forwarded.split(b"\r\n", 1)[0].decode()
        assert return_path.startswith("Return-Path: <SRS0=")
        assert return_path.endswith("=far.test=carol@fwd.example.test>")
        # Forwarded, so ARC-sealed with our verdict (RFC 8617), the Sieve redirect too.
        assert b"\r\nARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test;" in forwarded
        assert b"\r\nARC-Authentication-Results: i=1; mx.example.test;" in forwarded
        srs_address = return_path[len("Return-Path: <") : -1]

        with smtplib.SMTP("127.0.0.1", ours.ports["smtp"], timeout=10) as s:
            s.ehlo("far.test")
            s.mail("<>")
            forged = srs_address.replace("=far.test=", "=evil.test=")
            assert s.rcpt(forged)[:2] == (550, b"5.1.1 mailbox unavailable: no such user here")
            assert s.rcpt(srs_address)[0] == 250
            code, _ = s.data(b"From: MAILER-DAEMON@far.test\r\nSubject: bounce\r\n\r\nno\r\n")
            assert code == 250
        [bounce] = wait_for(lambda: inbox(far, "carol@far.test"))
        assert b"Subject: bounce" in bounce
    finally:
        ours.stop()
        far.stop()
