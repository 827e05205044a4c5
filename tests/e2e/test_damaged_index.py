"""A mailbox index damaged while the server was stopped (a truncated file, a bad disk): IMAP,
POP3 and delivery go on at the next start, the file set aside and the index made anew from
the message files, also when both workers of ``[server] workers = 2`` meet it at once."""

from __future__ import annotations

import glob
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import threading
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import ServerProcess
from tests.support.workers import children, one_per_worker

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"
H = "127.0.0.1"


def inbox(server: ServerProcess) -> str:
    return os.path.join(server.data_dir, "mail", "example.test", "alice")


def send(server: ServerProcess, subject: str) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.test", [ALICE], f"Subject: {subject}\r\n\r\nhello\r\n")


def wait_for_files(server: ServerProcess, count: int) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        if sum(len(os.listdir(os.path.join(inbox(server), s))) for s in ("new", "cur")) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} messages never reached alice's Maildir")


def damage_while_stopped(server: ServerProcess) -> None:
    server.stop()
    os.truncate(os.path.join(inbox(server), "txmailhost-index.sqlite"), 100)


def set_aside(server: ServerProcess) -> list[str]:
    """The damaged indexes set aside: the main files only, since a damaged index that still
    had its ``-wal`` and ``-shm`` has them moved beside it under the same name."""
    found = glob.glob(os.path.join(inbox(server), "txmailhost-index.sqlite.broken-*"))
    return [name for name in found if not name.endswith(("-wal", "-shm"))]


def select_uids(client: imaplib.IMAP4) -> tuple[int, list[bytes]]:
    typ, data = client.select("INBOX")
    assert typ == "OK", data
    (uidvalidity,) = client.untagged_responses["UIDVALIDITY"]
    typ, data = client.uid("SEARCH", "ALL")
    assert typ == "OK", data
    return int(uidvalidity), data[0].split()


def test_imap_pop3_and_delivery_work_at_once_after_the_index_was_damaged(server):
    send(server, "before")
    wait_for_files(server, 1)
    client = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    client.login(ALICE, PASSWORD)
    old_uidvalidity, _uids = select_uids(client)
    client.logout()
    damage_while_stopped(server)
    server.start()

    client = imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    client.login(ALICE, PASSWORD)
    uidvalidity, uids = select_uids(client)
    assert uidvalidity != old_uidvalidity and uids == [b"1"]
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: before" in data[0][1]
    client.logout()
    pop = poplib.POP3(H, server.ports["pop3"], timeout=30)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()

    send(server, "after")
    wait_for_files(server, 2)  # at once, not after a 30 s retry
    assert "local delivery of" not in server.log()
    (aside,) = set_aside(server)
    warnings = [line for line in server.log().splitlines() if "set aside as" in line]
    assert len(warnings) == 1
    assert f"{ALICE} INBOX" in warnings[0] and aside in warnings[0]


def test_index_rebuild_sets_a_damaged_index_aside(server):
    send(server, "kept")
    wait_for_files(server, 1)
    damage_while_stopped(server)

    done = server.cli("index", "rebuild", ALICE, "INBOX", "--json")

    (aside,) = set_aside(server)
    assert f'"set_aside": "{aside}"' in done.stdout
    assert '"messages": 1' in done.stdout


@pytest.fixture
def two_workers(server_template: str, tmp_path):
    data_dir = str(tmp_path / "data")
    shutil.copytree(server_template, data_dir, symlinks=True)
    proc = ServerProcess(data_dir, workers=2)
    proc.write_config()
    proc.start()
    yield proc
    proc.stop()


def _one_logged_in_per_worker(server: ServerProcess) -> list[imaplib.IMAP4]:
    assert server.process is not None
    held = one_per_worker(
        children(server.process.pid), lambda: imaplib.IMAP4(H, server.ports["imap"], timeout=30)
    )
    for client in held.values():
        client.login(ALICE, PASSWORD)
    return list(held.values())


def test_both_workers_meeting_the_damage_set_it_aside_once(two_workers):
    for number in range(5):
        send(two_workers, f"message {number}")
    wait_for_files(two_workers, 5)
    damage_while_stopped(two_workers)
    two_workers.start()
    clients = _one_logged_in_per_worker(two_workers)

    answers: list = []
    start = threading.Barrier(len(clients))

    def session(client: imaplib.IMAP4) -> None:
        start.wait()
        answers.append(select_uids(client))

    threads = [threading.Thread(target=session, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 2 and answers[0] == answers[1], answers
    assert answers[0][1] == [b"1", b"2", b"3", b"4", b"5"]
    assert len(set_aside(two_workers)) == 1
    # workers log into DATA/log (txmailhost/workers)
    with open(os.path.join(two_workers.data_dir, "log", "txmailhost.log")) as f:
        assert len(re.findall("set aside as", f.read())) == 1
    for client in clients:
        client.logout()
