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
