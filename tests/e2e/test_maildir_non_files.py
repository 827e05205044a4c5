"""A symbolic link or a directory in a Maildir's new/ or cur/ of a running server (another
tool's doing, or a shell user's): IMAP and POP3 serve the real messages and never what a link
points at, ``1:*`` still works, and the server says once per entry that it skipped it."""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import time

import pytest

from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.slow
H = "127.0.0.1"
ALICE = "alice@example.test"
SECRET = b"root:$6$not-for-alice"


def _deliver_two(server) -> str:
    inbox = os.path.join(server.data_dir, "mail", "example.test", "alice")
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        for number in (1, 2):
            s.sendmail("x@remote.test", [ALICE], f"Subject: real {number}\r\n\r\nhi\r\n")
    deadline = time.time() + 10
    while len(os.listdir(os.path.join(inbox, "new"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return inbox


def _imap_fetch_all(server) -> bytes:
    client = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    client.login(ALICE, PASSWORD)
    typ, data = client.select("INBOX")
    assert typ == "OK" and data == [b"2"], data
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    client.logout()
    return b"".join(part for item in data if isinstance(item, tuple) for part in item)


def test_links_and_directories_in_a_maildir_are_skipped_and_never_served(server, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET + b"\n")
    inbox = _deliver_two(server)
    os.symlink(secret, os.path.join(inbox, "new", "789.link.host"))
    os.mkdir(os.path.join(inbox, "cur", "456.adir.host:2,"))

    fetched = _imap_fetch_all(server)
    assert b"Subject: real 1" in fetched and b"Subject: real 2" in fetched
    assert SECRET not in fetched
    pop = poplib.POP3(H, server.ports["pop3"], timeout=30)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 2
    assert all(SECRET not in b"\n".join(pop.retr(n)[1]) for n in (1, 2))
    pop.quit()

    # new/ changes (another scan): the entries are not reported again
    open(os.path.join(inbox, "new", ".touch"), "wb").close()
    os.unlink(os.path.join(inbox, "new", ".touch"))
    assert SECRET not in _imap_fetch_all(server)
    log = server.log()
    assert log.count("789.link.host is not a regular file") == 1
    assert log.count("456.adir.host:2, is not a regular file") == 1
