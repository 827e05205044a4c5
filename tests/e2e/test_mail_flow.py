"""The real server in a subprocess, driven by Python's smtplib and poplib."""

from __future__ import annotations

import poplib
import smtplib
import socket

import pytest

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.slow


def smtp(server) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)


def pop3(server, user: str = "alice@example.test", password: str = PASSWORD) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def test_smtp_to_pop3_round_trip(server):
    with smtp(server) as s:
        code, caps = s.ehlo("client.test")
        for ext in (b"PIPELINING", b"8BITMIME", b"SIZE", b"ENHANCEDSTATUSCODES", b"STARTTLS"):
            assert ext in caps
        s.sendmail(
            "x@remote.test",
            ["alice@example.test", "bob@example.test"],
            "Subject: round trip\r\nFrom: x@remote.test\r\n\r\n.leading dot\r\nhello\r\n",
        )
    p = pop3(server)
    assert p.stat()[0] == 1
    lines = p.retr(1)[1]
    assert b"Subject: round trip" in lines and b".leading dot" in lines
    # Return-Path first; the spam filter's fields (on by default), then our Received.
    assert lines[0] == b"Return-Path: <x@remote.test>"
    received = next(i for i, line in enumerate(lines) if line.startswith(b"Received: from"))
    assert all(line.startswith((b"X-Spam-", b"\t")) for line in lines[1:received])
    p.dele(1)
    p.quit()
    p = pop3(server)
    assert p.stat()[0] == 0
    p.quit()
    p = pop3(server, "bob@example.test")
    assert p.stat()[0] == 1
    p.quit()


@pytest.mark.shared_server
def test_unknown_user_and_relay_are_refused(server):
    with smtp(server) as s:
        s.ehlo("c.test")
        s.mail("x@remote.test")
        assert s.rcpt("nobody@example.test")[0] == 550
        assert s.rcpt("victim@elsewhere.test")[:2] == (550, b"5.7.1 relaying denied")


def test_user_added_while_running_receives_and_logs_in_at_once(server):
    server.add_user("carol@example.test", "carol-password")
    with smtp(server) as s:
        s.sendmail("x@remote.test", ["carol@example.test"], "Subject: new\r\n\r\nwelcome\r\n")
    p = pop3(server, "carol@example.test", "carol-password")
    assert p.stat()[0] == 1
    p.quit()


def test_wrong_password_is_refused_and_logged(server):
    with pytest.raises(poplib.error_proto):
        pop3(server, password="wrong-password")
    assert "alice@example.test" in server.log() and "fail" in server.log().lower()


def test_oversized_message_is_refused_and_nothing_stored(tmp_path):
    from tests.support.server import ServerProcess

    proc = ServerProcess(str(tmp_path / "d"), "[smtp]\nmax_message_size = 100000\n").start()
    try:
        proc.add_user("alice@example.test", PASSWORD)
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as s:
            assert s.ehlo()[1].count(b"SIZE 100000") == 1
            # Without SIZE the server learns the size only while reading DATA.
            assert s.mail("x@r.test")[0] == 250 and s.rcpt("alice@example.test")[0] == 250
            code, text = s.data(b"Subject: big\r\n\r\n" + b"x" * 200_000)
            assert (code, text[:5]) == (552, b"5.3.4")
            with pytest.raises(smtplib.SMTPSenderRefused) as early:
                s.sendmail("x@r.test", ["alice@example.test"], "x" * 200_000)  # smtplib sends SIZE=
            assert early.value.smtp_code == 552
        p = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=10)
        p.user("alice@example.test")
        p.pass_(PASSWORD)
        assert p.stat()[0] == 0
        p.quit()
    finally:
        proc.stop()


def test_header_section_over_1_mib_is_refused_and_just_under_it_delivered(server):
    """1 MiB of header fields is the most the server takes (Exim's default): a forged field
    further down could otherwise pass checks that stop reading at some point."""
    fields = "".join(f"X-Trace-{n}: {'t' * 60}\r\n" for n in range(15_000))  # ~1.1 MiB
    big = f"From: x@remote.test\r\n{fields}Subject: big header\r\n\r\nbody\r\n"
    kept = fields[: 950 * 1024]
    kept = kept[: kept.rindex("\r\n") + 2]
    under = f"From: x@remote.test\r\n{kept}Subject: under the limit\r\n\r\nbody\r\n"
    with smtp(server) as s:
        s.ehlo()
        assert s.mail("x@remote.test")[0] == 250 and s.rcpt("alice@example.test")[0] == 250
        code, text = s.data(big.encode())
        assert (code, text[:5]) == (552, b"5.6.0"), text
        s.sendmail("x@remote.test", ["alice@example.test"], under.encode())
    p = pop3(server)
    assert p.stat()[0] == 1
    assert b"Subject: under the limit" in b"\r\n".join(p.retr(1)[1])
    p.quit()


@pytest.mark.shared_server
def test_endless_line_without_crlf_gets_500_and_session_survives(server):
    sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), 10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220")
    sock.sendall(b"x" * 1_000_000)
    assert f.readline() == b"500 5.5.2 line too long\r\n"
    sock.sendall(b"\r\nNOOP\r\n")
    assert f.readline() == b"250 2.0.0 OK\r\n"
    sock.close()


def test_broken_config_stops_startup_naming_file_and_key(tmp_path):
    from tests.support.server import ServerProcess

    proc = ServerProcess(str(tmp_path / "bad"), '[smtp]\nmax_message_size = "ten"\n')
    with pytest.raises(RuntimeError) as failed:
        proc.start(timeout=20)
    message = str(failed.value)
    assert "txmailhost.toml" in message and "smtp.max_message_size" in message
