"""Durability (DESIGN invariant 1): every message that got a 250 survives SIGKILL exactly once."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import smtplib
import threading
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import PASSWORD
from txmailhost.delivery.local import LocalDelivery

pytestmark = pytest.mark.slow


def _sender(port: int, worker: int, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                while not stop.is_set():
                    n += 1
                    msg_id = f"w{worker}-m{n}"
                    # ~64 KiB bodies keep DATA in flight when the kill lands.
                    body = f"Subject: {msg_id}\r\n\r\n" + ("line of filler text\r\n" * 3000)
                    body += f"END {msg_id}\r\n"
                    s.sendmail("load@remote.test", ["alice@example.test"], body)
                    acked.append(msg_id)
        except (OSError, smtplib.SMTPException):
            return


def _kill_under_load(server, worker: Callable, port: int, acked: list | dict) -> None:
    """Four clients run ``worker`` against ``port`` recording in ``acked`` what the server
    acknowledged; after two seconds the server gets SIGKILL (no shutdown code runs) and is
    started again."""
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(port, w, acked, stop)) for w in range(4)]
    for w in workers:
        w.start()
    time.sleep(2.0)
    server.kill()
    stop.set()
    for w in workers:
        w.join(timeout=30)
    assert len(acked) > 10, "the load didn't get going"
    server.start()


def test_sigkill_mid_stream_loses_no_acknowledged_message(server):
    acked: list[str] = []
    _kill_under_load(server, _sender, server.ports["smtp"], acked)
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    count = p.stat()[0]
    seen: dict[str, int] = {}
    for i in range(1, count + 1):
        lines = p.retr(i)[1]
        subject = next(line for line in lines if line.startswith(b"Subject: "))[9:].decode()
        assert lines[-1] == f"END {subject}".encode(), f"message {subject} is truncated"
        seen[subject] = seen.get(subject, 0) + 1
    p.quit()
    missing = [m for m in acked if m not in seen]
    duplicated = [m for m, n in seen.items() if n > 1]
    assert not missing, f"acknowledged but lost: {missing}"
    assert not duplicated, f"delivered twice: {duplicated}"


def test_sigkill_right_after_250_delivers_spooled_mail_once_at_restart(server):
    """Local mail is acknowledged once durable in the spool and linked into the Maildir a
    moment later (delivery/local.py): a kill in between must leave it to the restart, whose
    recovery delivers it before anything listens, once, to every recipient."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        for n in range(20):
            s.sendmail(
                "load@remote.test",
                ["alice@example.test", "bob@example.test"],
                f"Subject: quick-{n}\r\n\r\nbody {n}\r\n",
            )
        server.kill()  # right after the last 250: its delivery is most likely still pending
    server.start()
    for user in ("alice@example.test", "bob@example.test"):
        p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
        p.user(user)
        p.pass_(PASSWORD)
        subjects = []
        for i in range(1, p.stat()[0] + 1):
            lines = p.retr(i)[1]
            subjects.append(next(x for x in lines if x.startswith(b"Subject: "))[9:].decode())
        p.quit()
        assert sorted(subjects) == sorted(f"quick-{n}" for n in range(20)), user
    spare = os.path.join(server.data_dir, "queue", "spare")
    holds_record = LocalDelivery.holds_record
    leftovers = [n for n in os.listdir(spare) if holds_record(os.path.join(spare, n))]
    assert leftovers == []


def _appender(port: int, worker: int, acked: dict[str, int], stop: threading.Event) -> None:
    """APPEND until the server dies; record each message's UID from its APPENDUID."""
    n = 0
    try:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=5)
        client.login("alice@example.test", PASSWORD)
        while not stop.is_set():
            n += 1
            msg_id = f"a{worker}-m{n}"
            # Every third one is large enough to be staged in a file, not in memory.
            filler = "x" * 76 + "\r\n"
            body = f"Subject: {msg_id}\r\n\r\n" + filler * (3000 if n % 3 == 0 else 10)
            body += f"END {msg_id}\r\n"
            typ, data = client.append("INBOX", None, None, body.encode())
            if typ != "OK":
                return
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0])
            assert match, data
            acked[msg_id] = int(match[1])
    except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
        return


def test_sigkill_during_appends_loses_no_acknowledged_message_and_keeps_its_uid(server):
    """DESIGN invariant 1 for IMAP: an OK after APPEND means the message is on disk, once,
    under the UID the APPENDUID response gave."""
    acked: dict[str, int] = {}
    _kill_under_load(server, _appender, server.ports["imap"], acked)
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login("alice@example.test", PASSWORD)
    client.select("INBOX", readonly=True)
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    found: dict[str, list[int]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", item[0])[1])
        content = item[1]
        subject = re.search(rb"Subject: (\S+)", content)[1].decode()
        assert content.endswith(f"END {subject}\r\n".encode()), f"{subject} is truncated"
        found.setdefault(subject, []).append(uid)
    client.logout()
    missing = [m for m in acked if m not in found]
    doubled = [m for m, uids in found.items() if len(uids) > 1]
    moved = [m for m, uid in acked.items() if m in found and found[m] != [uid]]
    assert not missing, f"acknowledged but lost: {missing}"
    assert not doubled, f"stored twice: {doubled}"
    assert not moved, f"not under the UID APPENDUID gave: {moved}"


def _big_folder(server, count: int) -> tuple[imaplib.IMAP4, tuple[int, int]]:
    """Folder Big with ``count`` messages (files dropped in, then indexed by a STATUS): a
    logged-in client, and Big's MESSAGES and UIDVALIDITY."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    client.login("alice@example.test", PASSWORD)
    assert client.create("Big")[0] == "OK"
    cur = os.path.join(server.data_dir, "mail", "example.test", "alice", ".Big", "cur")
    for n in range(count):
        with open(os.path.join(cur, f"1700000000.M{n}P1.elsewhere:2,S"), "wb") as f:
            f.write(b"Subject: message %d\r\n\r\n%s\r\n" % (n, b"x" * 2000))
    return client, _status(client, "Big")


def _status(client: imaplib.IMAP4, name: str) -> tuple[int, int]:
    typ, data = client.status(name, "(MESSAGES UIDVALIDITY)")
    assert typ == "OK", data
    found = re.search(rb"MESSAGES (\d+) UIDVALIDITY (\d+)", data[0])
    assert found, data
    return int(found[1]), int(found[2])


@pytest.mark.parametrize("delay", [0.005, 0.02, 0.04, 0.07])
def test_sigkill_during_delete_of_a_big_folder_leaves_it_whole_or_gone(server, delay):
    """A kill ``delay`` seconds into ``DELETE Big`` (1,500 messages, ~80 ms to remove here):
    after the restart Big is listed with every message and its UIDVALIDITY, or not at all,
    nothing of it is left on disk, and Big can be created again."""
    client, before = _big_folder(server, 1500)
    assert before[0] == 1500
    client.send(b"d1 DELETE Big\r\n")
    time.sleep(delay)
    server.kill()
    server.start()

    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    client.login("alice@example.test", PASSWORD)
    typ, listed = client.list('""', "Big")
    assert typ == "OK"
    if listed != [None]:
        assert _status(client, "Big") == before  # DELETE not done: all of it
        return
    user = os.path.join(server.data_dir, "mail", "example.test", "alice")

    def left() -> list[str]:  # a half-removed .Big, or a tombstone the sweep hasn't removed
        return [n for n in os.listdir(user) if n == ".Big" or n.startswith("txmailhost-deleted.")]

    deadline = time.time() + 10  # the start's sweep runs in the store's pool
    while left() and time.time() < deadline:
        time.sleep(0.05)
    assert left() == []
    assert client.create("Big")[0] == "OK"
    assert _status(client, "Big")[0] == 0
    client.logout()
