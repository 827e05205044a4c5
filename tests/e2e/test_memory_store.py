"""The real server with ``[store] backend = "memory"``: the CLI, SMTP, IMAP and POP3 over it."""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib

import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

PASSWORD = "secret-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("memory") / "data"
    proc = ServerProcess(str(data), extra_config='[store]\nbackend = "memory"\n').start()
    # Added after the start, from another process, as an administrator would: the memory
    # store can't be provisioned from there and creates the mailboxes on first use.
    proc.add_user("alice@example.test", PASSWORD)
    yield proc
    proc.stop()


def test_the_server_warns_loudly_that_mail_is_lost_at_restart(server):
    assert "EVERY MESSAGE IS LOST when the server stops" in server.log()


def test_mail_sent_over_smtp_is_found_over_imap_and_not_on_disk(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: seam-check\r\n\r\nhello\r\n")
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    imap.login("alice@example.test", PASSWORD)
    imap.select("INBOX")
    typ, found = imap.search(None, "SUBJECT", "seam-check")
    assert typ == "OK" and found[0]
    typ, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[TEXT])")
    assert data[0][1] == b"hello\r\n"
    imap.logout()
    assert not os.path.exists(os.path.join(server.data_dir, "mail", "example.test", "alice"))


def test_pop3_reads_and_deletes_from_the_memory_store(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: pop\r\n\r\nfor pop\r\n")
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    pop.user("alice@example.test")
    pop.pass_(PASSWORD)
    count = pop.stat()[0]
    assert count >= 1
    assert b"for pop" in pop.retr(count)[1]
    pop.dele(count)
    pop.quit()
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    pop.user("alice@example.test")
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == count - 1
    pop.quit()


def test_user_del_purge_works_from_the_cli_with_the_memory_store(server):
    server.cli("user", "add", "carol@example.test", "--password-file", "-", stdin="pw-carol-1\n")
    out = server.cli("user", "del", "carol@example.test", "--purge").stdout
    assert "removed user carol@example.test" in out
