"""TLS on every listener, submission with AUTH, STARTTLS injection and certificate reload,
against the real server with Python's ssl clients (and swaks where installed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from tests.e2e.conftest import PASSWORD, client_context

pytestmark = pytest.mark.slow
H = "127.0.0.1"


@pytest.mark.shared_server
def test_starttls_on_smtp_and_submission_negotiates_tls12_or_better(server):
    for label in ("smtp", "submission"):
        with smtplib.SMTP(H, server.ports[label], timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            s.starttls(context=client_context())
            assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
            s.ehlo()
            assert not s.has_extn("starttls")


@pytest.mark.shared_server
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(server):
    ctx = client_context()
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        smtplib.SMTP_SSL(H, server.ports["submissions"], context=ctx, timeout=10)


def test_implicit_tls_submission_with_auth_delivers_locally(server):
    with smtplib.SMTP_SSL(
        H, server.ports["submissions"], context=client_context(), timeout=10
    ) as s:
        s.ehlo()
        assert "PLAIN" in s.esmtp_features.get("auth", "").upper()
        s.login("alice@example.test", PASSWORD)
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            "From: alice@example.test\r\nSubject: via 465\r\n\r\nhello over TLS\r\n",
        )
    p = poplib.POP3_SSL(H, server.ports["pop3s"], context=client_context(), timeout=10)
    p.user("bob@example.test")
    p.pass_(PASSWORD)
    lines = p.retr(1)[1]
    p.quit()
    assert b"Subject: via 465" in lines
    assert any(b"with ESMTPSA" in line for line in lines)


def test_submission_needs_auth_and_own_sender(server):
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.ehlo()
        assert s.mail("alice@example.test")[0] == 530
        s.rset()
        s.starttls(context=client_context())
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@example.test", "wrong-password")
        s.login("alice@example.test", PASSWORD)
        assert s.mail("bob@example.test")[0] == 553


@pytest.mark.shared_server
def test_pop3_stls_then_login(server):
    p = poplib.POP3(H, server.ports["pop3"], timeout=10)
    assert "STLS" in p.capa()
    p.stls(context=client_context())
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    p.quit()


@pytest.mark.shared_server
def test_commands_pipelined_after_starttls_are_not_executed(server):
    raw = socket.create_connection((H, server.ports["smtp"]), 10)
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"EHLO x\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nQUIT\r\n")
    assert f.readline().startswith(b"220")
    tls = client_context().wrap_socket(raw, server_hostname="x")
    tf = tls.makefile("rb")
    tls.sendall(b"EHLO y\r\n")
    assert tf.readline().startswith(b"250"), "the pipelined QUIT ran inside TLS"
    tls.close()


@pytest.mark.shared_server
def test_plaintext_on_an_implicit_tls_port_gets_nothing_and_server_keeps_serving(server):
    raw = socket.create_connection((H, server.ports["submissions"]), 10)
    raw.sendall(b"EHLO plain\r\n")
    raw.settimeout(5)
    try:
        data = raw.recv(100)
    except OSError:
        data = b""
    assert not data.startswith(b"250")
    raw.close()
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        assert s.noop()[0] == 250


def _fingerprint(port: int) -> str:
    with (
        socket.create_connection((H, port), 10) as raw,
        client_context().wrap_socket(raw, server_hostname="x") as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def test_certificate_reload_without_restart(server, tmp_path):
    before = _fingerprint(server.ports["pop3s"])
    from txmailhost.tls import ensure_self_signed

    tls_dir = os.path.join(server.data_dir, "tls")
    new_cert, new_key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    ensure_self_signed(new_cert, new_key, "renewed.example.test")
    shutil.copy(new_key, os.path.join(tls_dir, "key.pem"))
    shutil.copy(new_cert, os.path.join(tls_dir, "cert.pem"))
    out = server.cli("reload-tls")
    assert out.returncode == 0
    deadline = time.time() + 15
    while time.time() < deadline and _fingerprint(server.ports["pop3s"]) == before:
        time.sleep(0.5)
    after = _fingerprint(server.ports["pop3s"])
    assert after != before
    with open(new_cert) as f:
        expected = hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()
    assert after == expected
    assert "TLS certificate reloaded" in server.log()


def test_failed_logins_are_throttled_across_protocols(tmp_path):
    from tests.support.server import ServerProcess

    server = ServerProcess(str(tmp_path / "t"), "[security]\nlogin_failures_per_ip = 3\n").start()
    server.add_user("alice@example.test", PASSWORD)
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@example.test", "wrong-over-smtp")  # counts for POP3 too
    started = time.time()
    refused = False
    for i in range(6):
        p = poplib.POP3(H, server.ports["pop3"], timeout=30)
        try:
            p.user("alice@example.test")
            p.pass_(f"wrong-{i}")
        except poplib.error_proto as e:
            if b"SYS/TEMP" in e.args[0] or b"LOGIN-DELAY" in e.args[0] or b"later" in e.args[0]:
                refused = True
                break
        finally:
            p.close()
    try:
        assert refused, "no temporary refusal after repeated failures"
        # smtplib's login tries PLAIN then LOGIN: 2 SMTP failures + 1 POP3 reach the limit of 3.
        assert i == 1
        assert time.time() - started > 3  # every failure was slowed down
        assert "throttled" in server.log()
    finally:
        server.stop()


@pytest.mark.shared_server
@pytest.mark.interop
@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_submits_with_starttls_and_auth(server):
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"{H}:{server.ports['submission']}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.test",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--header",
            "From: alice@example.test",
            "--body",
            "sent by swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK queued as" in result.stdout  # local mail: durable in the spool


def _open_descriptors(server) -> int:
    """Sockets the server holds (index files cached per pool thread are not a leak)."""
    fd_dir = f"/proc/{server.process.pid}/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += os.readlink(os.path.join(fd_dir, fd)).startswith("socket:")
    return count


def _settled_descriptors(server, at_most: int) -> int:
    deadline = time.time() + 5
    while _open_descriptors(server) > at_most and time.time() < deadline:
        time.sleep(0.05)
    return _open_descriptors(server)


@pytest.mark.shared_server
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_tls_sessions_ended_by_logout_or_quit_are_closed_by_the_server(server):
    """A TLS close waits for the client's close_notify: the server must be reading then, or
    each LOGOUT leaks a socket and a connection-limit slot (found by the TLS benchmark)."""
    import imaplib

    imaplib.IMAP4_SSL(H, server.ports["imaps"], ssl_context=client_context()).logout()
    before = _open_descriptors(server)
    for _ in range(10):
        imap = imaplib.IMAP4_SSL(H, server.ports["imaps"], ssl_context=client_context())
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX")
        imap.logout()
        imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
        imap.starttls(ssl_context=client_context())
        imap.logout()
        pop = poplib.POP3_SSL(H, server.ports["pop3s"], context=client_context(), timeout=10)
        pop.user("alice@example.test")
        pop.pass_(PASSWORD)
        pop.quit()
        with smtplib.SMTP_SSL(
            H, server.ports["submissions"], context=client_context(), timeout=10
        ) as s:
            s.ehlo()
    assert _settled_descriptors(server, before) <= before


@pytest.mark.shared_server
def test_plaintext_auth_from_another_loopback_address_is_refused(server):
    """Dovecot's rule: clear-text passwords only when the client's address is the server's
    (127.0.0.2 talking to 127.0.0.1 may be a local proxy relaying a remote client)."""
    import base64

    plain = "PLAIN " + base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode()
    with smtplib.SMTP(
        H, server.ports["submission"], timeout=10, source_address=("127.0.0.2", 0)
    ) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", plain)[0] == 538
        s.starttls(context=client_context())
        s.ehlo()
        assert s.docmd("AUTH", plain)[0] == 235
    with smtplib.SMTP(H, server.ports["submission"], timeout=10, source_address=(H, 0)) as s:
        s.ehlo()
        assert s.docmd("AUTH", plain)[0] == 235


@pytest.mark.shared_server
def test_an_auth_response_longer_than_the_line_limit_is_500_556_and_the_session_goes_on(server):
    """RFC 4954 6: ``500 5.5.6`` (authentication exchange line is too long), not the
    ``500 5.5.2`` of any over-long command; after it the next line is a command again."""
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.starttls(context=client_context())
        s.ehlo()
        assert s.docmd("AUTH", "PLAIN")[0] == 334
        code, text = s.docmd("A" * 5000)
        assert (code, text[:5]) == (500, b"5.5.6")
        code, text = s.docmd("AUTH", "PLAIN " + "B" * 5000)
        assert (code, text[:5]) == (500, b"5.5.6")
        assert s.docmd("NOOP")[0] == 250
        code, text = s.docmd("NOOP", "x" * 5000)  # any other command: 5.5.2 as before
        assert (code, text[:5]) == (500, b"5.5.2")
