"""CHUNKING, SMTPUTF8, DSN and REQUIRETLS in the real server, with smtplib and raw sockets; and
two servers relaying to each other (DNS from a test server on loopback)."""

from __future__ import annotations

import imaplib
import smtplib
import socket

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.e2e.test_relay import inbox, start_sender, wait_for
from tests.support.dns import DNSServer
from tests.support.server import ServerProcess


def ehlo_keywords(server: ServerProcess, listener: str, tls: str = "") -> set[str]:
    if tls == "implicit":
        s = smtplib.SMTP_SSL(
            "127.0.0.1", server.ports[listener], timeout=10, context=client_context()
        )
    else:
        s = smtplib.SMTP("127.0.0.1", server.ports[listener], timeout=10)
    with s:
        if tls == "starttls":
            s.starttls(context=client_context())
        s.ehlo("client.test")
        return {keyword.upper() for keyword in s.esmtp_features}


@pytest.mark.shared_server
def test_ehlo_on_each_listener_lists_what_it_offers(server):
    plain = ehlo_keywords(server, "smtp")
    assert {"chunking", "binarymime", "smtputf8", "dsn"} <= {k.lower() for k in plain}
    assert "REQUIRETLS" not in plain
    assert "REQUIRETLS" not in ehlo_keywords(server, "submission")
    assert "REQUIRETLS" in ehlo_keywords(server, "submission", "starttls")
    assert "REQUIRETLS" in ehlo_keywords(server, "submissions", "implicit")
    assert "REQUIRETLS" in ehlo_keywords(server, "smtp", "starttls")


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        data += sock.recv(4096)
    return data


def test_bdat_chunks_pipelined_over_a_raw_socket_are_delivered(server):
    body = b"From: x@remote.test\r\nSubject: bdat-e2e\r\n\r\n" + b"line\r\n" * 20000
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10) as sock:
        _read_reply(sock)
        sock.sendall(b"EHLO client.test\r\n")
        _read_reply(sock)
        half = len(body) // 2
        sock.sendall(
            b"MAIL FROM:<x@remote.test> BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\n"
            + b"BDAT %d\r\n" % half
            + body[:half]
            + b"BDAT %d LAST\r\n" % (len(body) - half)
            + body[half:]
        )
        replies = b""
        while replies.count(b"\r\n") < 4:
            replies += sock.recv(4096)
        codes = [line[:3] for line in replies.split(b"\r\n") if line]
        assert codes == [b"250"] * 4, replies
    [stored] = wait_for(lambda: inbox(server, "alice@example.test"))
    assert b"Subject: bdat-e2e" in stored
    assert stored.count(b"\r\nline") == 20000


def test_bdat_after_helo_is_refused_and_nothing_is_delivered(server):
    """No extension after HELO (RFC 5321 4.1.1.1): BDAT there was taken and delivered."""
    chunk = b"Subject: helo-bdat\r\n\r\nQUIT\r\n"
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10) as sock:
        _read_reply(sock)
        sock.sendall(
            b"HELO client.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            + b"BDAT %d LAST\r\n" % len(chunk)
            + chunk
            + b"NOOP\r\n"
        )
        replies = b""
        while replies.count(b"\r\n") < 5:
            replies += sock.recv(4096)
        lines = [line for line in replies.split(b"\r\n") if line]
        assert [line[:9] for line in lines] == [b"250 2.0.0", b"250 2.1.0", b"250 2.1.5"] + [
            b"503 5.5.1",
            b"250 2.0.0",  # the NOOP: the chunk's QUIT was read as data, never run
        ], replies
    assert inbox(server, "alice@example.test") == []


@pytest.mark.shared_server
def test_smtputf8_message_through_smtplib_is_served_by_imap_as_sent(server):
    text = "From: Jörg <x@remote.test>\r\nSubject: utf8-e2e ünïcödé\r\n\r\nGrüße\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        refused = s.sendmail("jörg@bücher.test", ["bob@example.test"], text.encode(), ["SMTPUTF8"])
        assert refused == {}
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    imap.login("bob@example.test", PASSWORD)

    def found():
        imap.select("INBOX")
        return imap.search(None, "SUBJECT", "utf8-e2e")[1][0]

    number = wait_for(found).split()[-1]
    message = imap.fetch(number, "(BODY.PEEK[])")[1][0][1]
    imap.logout()
    assert text.encode() in message.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def test_notify_success_on_local_delivery_reports_back_to_a_local_sender(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: alice@example.test\r\nSubject: tell me\r\n\r\nhi\r\n",
            ["RET=HDRS", "ENVID=env-7"],
            ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@example.test"],
        )
    [report] = wait_for(lambda: inbox(server, "alice@example.test"))
    assert b"report-type=delivery-status" in report
    assert b"Action: delivered" in report
    assert b"Original-Envelope-Id: env-7" in report
    assert b"Original-Recipient: rfc822;Bob@example.test" in report
    assert b"Subject: tell me" in report
    assert len(inbox(server, "bob@example.test")) == 1


@pytest.mark.shared_server
def test_envid_and_orcpt_that_decode_to_controls_or_non_utf8_are_refused_501(server):
    """An ORCPT of ``utf-8;x+FFy`` was taken, and the SUCCESS report about it (or the
    failure report, for a remote recipient: retried for ever) could never be written; an
    ENVID of ``a+0D+0AX-Evil:...`` was taken as a value with a line break in it."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        for envid in ("a+0D+0AX-Evil:+20yes", "q+FFq", "a+00b"):
            code, text = s.mail("bob@example.test", [f"ENVID={envid}"])
            assert (code, text[:5]) == (501, b"5.5.4"), envid
        assert s.mail("bob@example.test", ["SMTPUTF8", "ENVID=env+2B1"])[0] == 250
        for orcpt in ("utf-8;x+FFy@ex.test", "rfc822;a+0D+0Ab@ex.test"):
            code, text = s.rcpt("alice@example.test", ["NOTIFY=SUCCESS", f"ORCPT={orcpt}"])
            assert (code, text[:5]) == (501, b"5.5.4"), orcpt
        orcpt = "ORCPT=utf-8;j+C3+B6rg@ex.test"
        assert s.rcpt("alice@example.test", ["NOTIFY=NEVER", orcpt])[0] == 250
        s.rset()


def test_success_report_on_a_binarymime_message_with_lf_line_ends_has_its_headers_only(server):
    """Its header section was looked for up to a CRLF CRLF it doesn't have, so the report's
    "Message headers" part carried the body, NUL octets and all."""
    body = b"From: alice@example.test\nSubject: lf-only\n\nSECRET-BODY\n\x00\x01\n"
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10) as sock:
        _read_reply(sock)
        sock.sendall(b"EHLO client.test\r\n")
        _read_reply(sock)
        sock.sendall(
            b"MAIL FROM:<alice@example.test> BODY=BINARYMIME RET=HDRS\r\n"
            + b"RCPT TO:<bob@example.test> NOTIFY=SUCCESS\r\n"
            + b"BDAT %d LAST\r\n" % len(body)
            + body
        )
        replies = b""
        while replies.count(b"\r\n") < 3:
            replies += sock.recv(4096)
        assert [line[:3] for line in replies.split(b"\r\n") if line] == [b"250"] * 3, replies
    [report] = wait_for(lambda: inbox(server, "alice@example.test"))
    assert b"Action: delivered" in report
    assert b"Subject: lf-only" in report
    assert b"SECRET-BODY" not in report and b"\x00" not in report


@pytest.mark.shared_server
def test_rset_with_an_argument_is_501_with_smtplib(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        assert s.mail("x@remote.test")[0] == 250
        code, text = s.docmd("RSET", "everything")
        assert (code, text[:5]) == (501, b"5.5.4")
        assert s.mail("y@remote.test")[0] == 503  # nothing was reset
        assert s.rset()[0] == 250


@pytest.fixture
def dns_server():
    s = DNSServer().start()
    yield s
    s.stop()


def _submit(sender: ServerProcess, rcpt: str, text: bytes, mail=(), rcpt_options=()) -> dict:
    with smtplib.SMTP("127.0.0.1", sender.ports["submission"], timeout=10) as s:
        s.starttls(context=client_context())
        s.login("alice@example.test", PASSWORD)
        return s.sendmail("alice@example.test", [rcpt], text, list(mail), list(rcpt_options))


@pytest.mark.slow
def test_two_servers_relay_smtputf8_by_bdat_with_dsn_passed_on(tmp_path, dns_server):
    # The far side's own queue (its delivery report for alice) stays on loopback, deferred.
    dns_server.add("example.test", "A", "127.0.0.1")
    far_relay = f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\nport = 9\n'
    far = ServerProcess(str(tmp_path / "far"), extra_config=far_relay).start()
    far.add_user("jörg@xn--bcher-kva.test", PASSWORD)  # the CLI takes either form
    dns_server.add("xn--bcher-kva.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    sender = start_sender(tmp_path, dns_server, relay_port=far.ports["smtp"])
    try:
        text = "From: alice@example.test\r\nSubject: über\r\n\r\nGrüße\r\n".encode()
        _submit(sender, "jörg@bücher.test", text, ["SMTPUTF8"], ["NOTIFY=SUCCESS"])
        [stored] = wait_for(lambda: inbox(far, "jörg@xn--bcher-kva.test"))
        assert "Subject: über".encode() in stored
        assert b"with UTF8SMTPS id" in stored  # SMTPUTF8 over TLS, end to end
        wait_for(lambda: sender.cli("queue", "list").stdout == "")
        # The far side offered DSN: NOTIFY=SUCCESS went on, and it reports the delivery
        # itself (its report to alice waits in its own queue), so we sent none.
        wait_for(lambda: "alice@example.test" in far.cli("queue", "list").stdout)
        assert inbox(sender, "alice@example.test") == []
    finally:
        sender.stop()
        far.stop()


@pytest.mark.slow
def test_requiretls_without_verified_tls_bounces_with_5730(tmp_path, dns_server):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    sender = start_sender(tmp_path, dns_server, relay_port=far.ports["smtp"])
    try:
        text = b"From: alice@example.test\r\nSubject: secret\r\n\r\nhush\r\n"
        _submit(sender, "bob@far.test", text, ["REQUIRETLS"])
        [dsn] = wait_for(lambda: inbox(sender, "alice@example.test"))
        assert b"Status: 5.7." in dsn  # the far side's self-signed certificate isn't verified
        assert b"REQUIRETLS" in dsn
        assert inbox(far, "bob@far.test") == []
    finally:
        sender.stop()
        far.stop()


@pytest.mark.slow
def test_tls_required_no_header_relaxes_a_verify_policy(tmp_path, dns_server):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    dns_server.add("far.test", "MX", "10 mx.far.test.")
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    extra = (
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\n'
        f'port = {far.ports["smtp"]}\ntls = "verify"\n'
    )
    sender = ServerProcess(str(tmp_path / "sender"), extra_config=extra).start()
    sender.add_user("alice@example.test", PASSWORD)
    try:
        relaxed = b"From: alice@example.test\r\nTLS-Required: No\r\nSubject: relaxed\r\n\r\nx\r\n"
        _submit(sender, "bob@far.test", relaxed)
        [stored] = wait_for(lambda: inbox(far, "bob@far.test"))
        assert b"Subject: relaxed" in stored
    finally:
        sender.stop()
        far.stop()


def test_requiretls_is_refused_before_tls_on_submission(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("client.test")
        code, _ = s.docmd("MAIL FROM:<alice@example.test> REQUIRETLS")
        assert code == 555


@pytest.mark.slow
def test_requiretls_over_verified_tls_to_a_server_offering_it_is_delivered(tmp_path, dns_server):
    far = ServerProcess(str(tmp_path / "far")).start()
    far.add_user("bob@far.test", PASSWORD)
    # Its MX name is the one its self-signed certificate is for; we trust that certificate.
    dns_server.add("far.test", "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "127.0.0.1")
    extra = (
        f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\n'
        f'port = {far.ports["smtp"]}\ntls_ca_file = "{tmp_path}/far/tls/cert.pem"\n'
    )
    sender = ServerProcess(str(tmp_path / "sender"), extra_config=extra).start()
    sender.add_user("alice@example.test", PASSWORD)
    try:
        text = b"From: alice@example.test\r\nSubject: secret\r\n\r\nhush\r\n"
        _submit(sender, "bob@far.test", text, ["REQUIRETLS"])
        [stored] = wait_for(lambda: inbox(far, "bob@far.test"))
        assert b"Subject: secret" in stored
        assert b"with ESMTPS id" in stored
        assert inbox(sender, "alice@example.test") == []
    finally:
        sender.stop()
        far.stop()
