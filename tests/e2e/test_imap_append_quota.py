"""The real server refuses an APPEND over the quota before its literal is sent (RFC 9208 §4.3):
a client saving a large draft into a full mailbox gets ``NO [OVERQUOTA]`` in place of the
``+`` and uploads nothing; a non-synchronizing literal is read and dropped, not staged on
disk; the session goes on. Over loopback with imaplib's connection, on the default
(Maildir) store, with the quota set by the CLI."""

from __future__ import annotations

import imaplib
import os
import time

from tests.e2e.conftest import PASSWORD, start_from_template
from txmailhost.store.maildir import user_directory

ALICE = "alice@example.test"
MESSAGE = b"From: alice@example.test\r\nSubject: draft\r\n\r\nhello\r\n"
OVER = b"NO [OVERQUOTA] mailbox quota exceeded\r\n"


def _staged(directory: str, wait: float) -> list[str]:
    """The APPEND literals being written into ``directory`` within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = [n for n in os.listdir(directory) if "imap-append" in n]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_append_over_the_quota_is_refused_before_the_literal(server_template, tmp_path):
    server = start_from_template(server_template, str(tmp_path / "data"))
    try:
        server.cli("user", "quota", ALICE, "20K")
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        imap.login(ALICE, PASSWORD)
        typ, data = imap.append("INBOX", None, None, MESSAGE)  # room: as before
        assert typ == "OK", data

        # {n}: the tagged NO comes in place of the "+"; nothing of the draft is sent
        imap.send(b"a1 APPEND Drafts (\\Draft) {40000}\r\n")
        assert imap.readline() == b"a1 " + OVER
        assert imap.noop()[0] == "OK"  # the session goes on

        # MULTIAPPEND: the second literal is refused once the first is read
        imap.send(b"a2 APPEND INBOX {8000}\r\n")
        assert imap.readline().startswith(b"+ ")
        imap.send(b"m" * 8000 + b" {13000}\r\n")
        assert imap.readline() == b"a2 " + OVER

        # {n+}: the octets come anyway; read and dropped as they come, never staged
        staging = os.path.join(user_directory(os.path.join(server.data_dir, "mail"), ALICE), "tmp")
        size = 1024 * 1024
        imap.send(b"a3 APPEND INBOX {%d+}\r\n" % size + b"z" * (size // 2))
        assert _staged(staging, 1.0) == []
        imap.send(b"z" * (size - size // 2) + b"\r\na4 NOOP\r\n")
        assert imap.readline() == b"a3 " + OVER
        assert imap.readline() == b"a4 OK NOOP completed\r\n"

        for mailbox in ("INBOX", "Drafts"):
            typ, data = imap.status(mailbox, "(MESSAGES)")
            assert typ == "OK"
            assert data[0].endswith(b"(MESSAGES %d)" % (mailbox == "INBOX")), data
        imap.logout()
    finally:
        server.stop()
