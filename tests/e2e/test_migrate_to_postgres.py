"""``txmailhost migrate maildir-to-postgres`` on a real installation: mail arrives over SMTP
and IMAP APPEND (flags, keywords, dates, an expunge leaving a UID gap, a folder, a
subscription, METADATA entries on the folder and the server), a message waits in the relay
queue; the server stops, the migration runs (twice: the second finds everything done), the
config switches to PostgreSQL, and the server started again shows IMAP clients the same
UIDVALIDITY, UIDs, flags, dates, sizes and METADATA entries, the same password logs in, and
the queue still holds the message. Skipped without PostgreSQL."""

from __future__ import annotations

import imaplib
import json
import re
import smtplib

import pytest

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_relay import submit
from tests.support.dns import DNSServer
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


def imap_state(server: ServerProcess) -> dict[str, tuple]:
    """Per mailbox: UIDVALIDITY, UIDNEXT, and each message's UID, flags, date and size."""
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(ALICE, PASSWORD)
    state = {}
    for name in ("INBOX", "Archive", "Sent"):
        typ, status = imap.status(name, "(UIDVALIDITY UIDNEXT MESSAGES)")
        assert typ == "OK", status
        imap.select(name, readonly=True)
        typ, rows = imap.uid("FETCH", "1:*", "(FLAGS INTERNALDATE RFC822.SIZE)")
        # \Recent is per session, not kept by a restore (nor by RFC 9051)
        fetched = sorted(
            re.sub(rb"^\d+ ", b"", row)
            .replace(b"\\Recent ", b"")
            .replace(b"\\Recent", b"")
            .decode()
            for row in rows
            if row and b"UID" in row
        )
        state[name] = (status[0].decode(), fetched)
    typ, subscribed = imap.lsub()
    state["subscribed"] = sorted(line.decode().rsplit(" ", 1)[1] for line in subscribed)
    for name in ('""', "Archive", "INBOX"):
        typ, data = imap._simple_command(
            "GETMETADATA", "(DEPTH infinity)", name, "(/private /shared)"
        )
        assert typ == "OK", data
        state[f"metadata {name}"] = imap.untagged_responses.pop("METADATA", None)
    imap.logout()
    return state


def fill(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        for n in range(4):
            s.sendmail("x@remote.test", [ALICE], f"Subject: by smtp {n}\r\n\r\nbody {n}\r\n")
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(ALICE, PASSWORD)
    imap.create("Archive")
    imap.subscribe("Archive")
    imap.unsubscribe("Trash")
    date = imaplib.Time2Internaldate(1_600_000_000)
    for n, flags in enumerate(("(\\Seen $Label1)", "(\\Answered \\Flagged)", "()")):
        message = f"Subject: appended {n}\r\n\r\n{'x' * (100 * n)}\r\n".encode()
        assert imap.append("Archive", flags, date, message)[0] == "OK"
    imap.select("INBOX")
    imap.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    imap.expunge()  # UIDs 1, 3, 4: the gap must survive
    imap.uid("STORE", "3", "+FLAGS", "(\\Seen Work)")
    for name, entries in (("Archive", '(/private/comment "old mail")'), ('""', '(/shared/x "y")')):
        assert imap._simple_command("SETMETADATA", name, entries)[0] == "OK"
    imap.logout()


def test_an_installation_moved_to_postgres_looks_the_same_to_imap_clients(
    tmp_path,
    dns_server,
    postgres_dsn,  # noqa: F811 - the fixture
):
    dns_server.add("remote.test", "A", "127.0.0.1")  # port 9: nobody listens, it stays queued
    relay = f'[relay]\nnameservers = ["{dns_server.address}"]\ndns_timeout = 2\nport = 9\n'
    data = tmp_path / "data"
    server = ServerProcess(str(data), extra_config=relay).start()
    try:
        server.add_user(ALICE, PASSWORD)
        fill(server)
        submit(server, "carol@remote.test")
        before = imap_state(server)
        queued = server.cli("queue", "list").stdout.split()[0]
    finally:
        server.stop()
    assert [uid for uid in before["INBOX"][1] if "FLAGS" in uid][0].startswith("(UID 1 ")
    assert before["metadata Archive"] == [b'"Archive" (/private/comment "old mail")']
    assert before['metadata ""'] == [b'"" (/shared/x "y")']

    migrated = server.cli("migrate", "maildir-to-postgres", "--dsn", postgres_dsn)
    assert "mail: alice@example.test/INBOX: 3 message(s)" in migrated.stdout
    assert f"queue: {queued}: 1 recipient(s) to go" in migrated.stdout
    assert "metadata: alice@example.test: 2 METADATA entries" in migrated.stdout
    assert "verified:" in migrated.stdout
    again = server.cli("migrate", "maildir-to-postgres", "--dsn", postgres_dsn, "--json")
    report = json.loads(again.stdout)
    assert report["problems"] == [] and report["mail"]["mailboxes"] == 0
    assert report["mail"]["skipped"] >= 3 and report["queue"]["skipped"] == 1
    assert report["mail"]["metadata"] == 0  # the first run copied both entries

    moved = ServerProcess(
        str(data),
        extra_config=relay
        + f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{postgres_dsn}"\n'
        + '[queue]\nbackend = "postgres"\n',
    )
    moved.write_config()
    moved.start()
    try:
        after = imap_state(moved)
        assert after == before
        assert queued in moved.cli("queue", "list").stdout
    finally:
        moved.stop()
