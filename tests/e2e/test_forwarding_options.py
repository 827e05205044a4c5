"""Mail sent on again keeps what its sender asked for in MAIL and RCPT: a user's Sieve
``redirect`` and an alias or forward to another domain, through the real server's relay
queue (its envelope read from disk) to a next hop on loopback that records every command
(``tests/support/sink.py``). DNS comes from a test server on loopback.

REQUIRETLS (RFC 8689 6: reoriginated mail keeps it; 4.2.1: only over verified TLS to a
server offering it), SMTPUTF8 (RFC 6531 3.2), BODY (RFC 6152), RET/ENVID and NOTIFY/ORCPT
(RFC 3461 5.2.7).
"""

from __future__ import annotations

import glob
import json
import os
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.e2e.test_relay import inbox, wait_for
from tests.e2e.test_sieve import upload
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess
from tests.support.sink import SinkServer
from txmailhost.tls import ensure_self_signed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection"),
]

ALICE, DAVE = "alice@example.test", "dave@example.test"
EXTENSIONS = ["8BITMIME", "SMTPUTF8", "DSN"]
TEXT = "From: dave@example.test\r\nSubject: für Alice\r\n\r\nsecret body text\r\n".encode()


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    server.add("sink.test", "MX", "10 mx.sink.test.")
    server.add("mx.sink.test", "A", "127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def certificate(tmp_path):
    """The next hop's certificate, which the sender trusts (``relay.tls_ca_file``)."""
    cert, key = str(tmp_path / "sink-cert.pem"), str(tmp_path / "sink-key.pem")
    ensure_self_signed(cert, key, "mx.sink.test")
    return cert, key


def start_sender(tmp_path, dns_server, sink: SinkServer, cert: str) -> ServerProcess:
    extra = (
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\n'
        f'port = {sink.port}\ntls_ca_file = "{cert}"\n'
    )
    proc = ServerProcess(str(tmp_path / "sender"), extra_config=extra).start()
    proc.add_user(ALICE, PASSWORD)
    proc.add_user(DAVE, PASSWORD)
    return proc


def send_with_options(server: ServerProcess, rcpt: str, mail: list[str], rcpt_options: list[str]):
    """dave's message over port 25 with STARTTLS (REQUIRETLS needs it), as a remote MTA."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.starttls(context=client_context())
        s.sendmail(DAVE, [rcpt], TEXT, mail, rcpt_options)


def queued_envelope(server: ServerProcess) -> dict:
    [path] = wait_for(lambda: glob.glob(os.path.join(server.data_dir, "queue", "env", "*.json")))
    with open(path) as f:
        return json.load(f)


def test_a_sieve_redirect_keeps_the_senders_options_in_the_queue_and_at_the_next_hop(
    tmp_path, dns_server, certificate
):
    sink = SinkServer(EXTENSIONS, [*EXTENSIONS, "REQUIRETLS"], *certificate).start()
    sink.refuse_next_mail("451 4.3.0 not now")  # so the queued envelope can be read
    sender = start_sender(tmp_path, dns_server, sink, certificate[0])
    try:
        upload(sender, 'redirect "bob@sink.test";')
        send_with_options(
            sender,
            ALICE,
            ["BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=env+2B1", "REQUIRETLS"],
            ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{ALICE}"],
        )
        wait_for(lambda: "deferred" in sender.cli("queue", "list").stdout)
        queued = queued_envelope(sender)
        assert queued["sender"] == DAVE
        assert (queued["body"], queued["smtputf8"], queued["ret"]) == ("8BITMIME", True, "HDRS")
        assert (queued["envid"], queued["requiretls"]) == ("env+1", True)
        [recipient] = queued["recipients"]
        assert recipient["address"] == "bob@sink.test"
        # SUCCESS was reported for alice already; the rest of what was asked goes on.
        assert (recipient["notify"], recipient["orcpt"]) == (["FAILURE"], f"rfc822;{ALICE}")
        sender.cli("queue", "flush")
        [message] = wait_for(lambda: sink.messages)
        assert "für Alice".encode() in message
        mail = sink.lines("MAIL")[-1]
        assert mail.tls
        assert mail.line.split()[2:] == [
            "BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=env+2B1", "REQUIRETLS",
        ]  # fmt: skip
        [rcpt] = sink.lines("RCPT")[-1:]
        assert rcpt.line == f"RCPT TO:<bob@sink.test> NOTIFY=FAILURE ORCPT=rfc822;{ALICE}"
        [report] = wait_for(lambda: inbox(sender, DAVE))  # the one "delivered" for alice
        assert b"Action: delivered" in report and b"Original-Envelope-Id: env+1" in report
    finally:
        sender.stop()
        sink.stop()


def test_a_redirected_requiretls_message_never_leaves_without_verified_tls(
    tmp_path, dns_server, certificate
):
    """RFC 8689 4.2.1: the next hop offers no STARTTLS, so the redirected copy is returned to
    its sender, with its header section only (RET=FULL disregarded, RFC 8689 5). It went
    out in clear text: the redirect had dropped REQUIRETLS."""
    sink = SinkServer(EXTENSIONS).start()  # no certificate: no STARTTLS
    sender = start_sender(tmp_path, dns_server, sink, certificate[0])
    try:
        upload(sender, 'redirect "bob@sink.test";')
        send_with_options(sender, ALICE, ["RET=FULL", "REQUIRETLS"], [])
        [report] = wait_for(lambda: inbox(sender, DAVE))
        assert b"Action: failed" in report and b"REQUIRETLS" in report
        assert b"Final-Recipient: rfc822; bob@sink.test" in report
        assert b"secret body text" not in report
        assert sink.lines("MAIL") == [] and sink.messages == []
    finally:
        sender.stop()
        sink.stop()


@pytest.mark.parametrize(
    ("address", "command"),
    [
        ("team@example.test", ["alias", "add", "team@example.test", "bob@sink.test"]),
        # what the webmail's forwarding setting sets (IAddressRules.set_forward)
        (ALICE, ["user", "forward", ALICE, "bob@sink.test", "--keep-copy"]),
    ],
)
def test_an_alias_or_forward_to_another_domain_keeps_the_senders_options(
    tmp_path, dns_server, certificate, address, command
):
    """Aliases and forwards expand at RCPT, into the envelope the queue keeps: the same
    options reach the next hop, NOTIFY as it was given for the address."""
    sink = SinkServer(EXTENSIONS, [*EXTENSIONS, "REQUIRETLS"], *certificate).start()
    sender = start_sender(tmp_path, dns_server, sink, certificate[0])
    try:
        sender.cli(*command)
        send_with_options(
            sender,
            address,
            ["SMTPUTF8", "RET=HDRS", "ENVID=e2", "REQUIRETLS"],
            ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{address}"],
        )
        wait_for(lambda: sink.messages)
        mail = sink.lines("MAIL")[-1]
        assert mail.tls and {"SMTPUTF8", "RET=HDRS", "ENVID=e2", "REQUIRETLS"} <= set(
            mail.line.split()[2:]
        )
        [rcpt] = sink.lines("RCPT")
        assert rcpt.line == f"RCPT TO:<bob@sink.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{address}"
    finally:
        sender.stop()
        sink.stop()


def test_success_reports_to_a_next_hop_without_dsn_alias_relayed_redirect_delivered_once(
    tmp_path, dns_server, certificate
):
    """RFC 3461 5.2.2: a next hop without DSN can't honour NOTIFY=SUCCESS, so the queue
    reports "relayed" for an alias member; a redirected copy was reported "delivered" for
    the user already and gets no second report."""
    sink = SinkServer(["8BITMIME", "SMTPUTF8"]).start()
    sender = start_sender(tmp_path, dns_server, sink, certificate[0])
    try:
        sender.cli("alias", "add", "team@example.test", "bob@sink.test")
        upload(sender, 'redirect "carol@sink.test";')
        send_with_options(sender, "team@example.test", ["ENVID=to-team"], ["NOTIFY=SUCCESS"])
        send_with_options(sender, ALICE, ["ENVID=to-alice"], ["NOTIFY=SUCCESS"])
        wait_for(lambda: len(sink.messages) == 2)
        wait_for(lambda: len(inbox(sender, DAVE)) >= 2)
        time.sleep(2)  # nothing more comes
        reports = inbox(sender, DAVE)
        assert len(reports) == 2
        [relayed] = [r for r in reports if b"Original-Envelope-Id: to-team" in r]
        assert b"Action: relayed" in relayed and b"rfc822; bob@sink.test" in relayed
        [delivered] = [r for r in reports if b"Original-Envelope-Id: to-alice" in r]
        assert b"Action: delivered" in delivered and f"rfc822; {ALICE}".encode() in delivered
        assert [c.line for c in sink.lines("RCPT")] == [
            "RCPT TO:<bob@sink.test>", "RCPT TO:<carol@sink.test>",
        ]  # fmt: skip
    finally:
        sender.stop()
        sink.stop()
