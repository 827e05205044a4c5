"""What the log tells an administrator, from the real server: every refused recipient with the
client, the command and the reply; the transaction line with listener, TLS, HELO and user;
IMAP and POP3 logins saying how TLS was used."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD, client_context

pytestmark = pytest.mark.slow
H = "127.0.0.1"


def wait_for_line(server, pattern: str, timeout: float = 10) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        match = re.search(pattern, server.log())
        if match:
            return match.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r} in:\n{server.log()[-3000:]}")


@pytest.mark.shared_server
def test_refused_recipients_are_logged_with_client_command_and_reply(server):
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.ehlo("sender.test")
        s.mail("someone@remote.test")
        assert s.rcpt("nobody@example.test")[0] == 550
        assert s.rcpt("victim@elsewhere.test")[0] == 550
    wait_for_line(
        server,
        r"smtp smtp 127\.0\.0\.1 refused 'RCPT TO:<nobody@example\.test>': 550 5\.1\.1 .*",
    )
    wait_for_line(
        server,
        r"smtp smtp 127\.0\.0\.1 refused 'RCPT TO:<victim@elsewhere\.test>': 550 5\.7\.1 .*",
    )


def test_passwords_never_reach_the_log(server):
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.ehlo()
        s.starttls(context=client_context())
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@example.test", "not-the-password-xyzzy")
    wait_for_line(server, r"refused 'AUTH PLAIN': 535 5\.7\.8")
    assert "xyzzy" not in server.log()
    assert "bm90LXRoZS1wYXNzd29yZC14eXp6eQ" not in server.log()  # nor its base64


@pytest.mark.shared_server
def test_transaction_line_names_listener_tls_helo_and_user(server):
    with smtplib.SMTP(H, server.ports["submission"], timeout=10) as s:
        s.ehlo("laptop.example.test")
        s.starttls(context=client_context())
        s.ehlo("laptop.example.test")
        s.login("alice@example.test", PASSWORD)
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: alice@example.test\r\nSubject: log\r\n\r\nhi\r\n",
        )
    line = wait_for_line(server, r"smtp submission 127\.0\.0\.1 id=\S+ .*result=250.*")
    assert "helo=laptop.example.test" in line
    assert re.search(r"tls=starttls TLSv1\.[23] \S+", line), line
    assert "user=alice@example.test" in line


@pytest.mark.shared_server
def test_imap_and_pop3_logins_say_how_tls_was_used(server):
    imap = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    imap.starttls(ssl_context=client_context())
    imap.login("alice@example.test", PASSWORD)
    imap.logout()
    wait_for_line(
        server, r"imap imap login alice@example\.test from 127\.0\.0\.1 .*tls=starttls TLSv1"
    )
    pop = poplib.POP3(H, server.ports["pop3"], timeout=10)
    pop.user("bob@example.test")
    pop.pass_(PASSWORD)
    pop.quit()
    wait_for_line(server, r"pop3 pop3 login bob@example\.test from 127\.0\.0\.1 .*tls=none")
    pops = poplib.POP3_SSL(H, server.ports["pop3s"], timeout=10, context=client_context())
    pops.user("bob@example.test")
    pops.pass_(PASSWORD)
    pops.quit()
    wait_for_line(server, r"pop3 pop3s login bob@example\.test .*tls=implicit TLSv1")
