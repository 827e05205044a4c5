"""What IMAP clients see of the Maildir store under concurrency and crashes: what an OK'd
APPEND or MOVE carried (keywords, INTERNALDATE, EMAILID) is kept whatever other sessions and
workers do meanwhile; a kill mid-MOVE leaves each message in one mailbox (RFC 6851 §3.3); a
kill mid-APPEND leaves nothing in the Maildir's tmp/ once the server is back."""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.mounts import on_own_file_system
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"
DATE = '"01-Jan-2020 10:00:00 +0000"'


def _login(server: ServerProcess) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
    client.login(ALICE, PASSWORD)
    return client


def _code(client: imaplib.IMAP4, typ: str, data: list, name: str) -> list[int]:
    """The numbers after ``name`` (APPENDUID, COPYUID) in a reply or its untagged OKs."""
    texts = [d for d in data if isinstance(d, bytes)]
    texts += [d for d in client.untagged_responses.pop("OK", []) if isinstance(d, bytes)]
    for text in texts:
        found = re.search(rb"\[" + name.encode() + rb" ([\d: ]+)\]", text)
        if found:
            return [int(n) for n in found[1].split()]
    raise AssertionError(f"no {name} in {typ} {data}")


def _session(server: ServerProcess, number: int, done: list, emailids: dict, errors: list) -> None:
    """APPENDs with keywords and a date into Moved, or into INBOX and then UID MOVE to Moved:
    each OK'd message's UID in Moved, with the keyword it must have."""
    try:
        _appends_and_moves(server, number, done, emailids)
    except Exception as e:  # noqa: BLE001 - reported by the test, not lost with the thread
        errors.append(f"session {number}: {e!r}")


def _appends_and_moves(server: ServerProcess, number: int, done: list, emailids: dict) -> None:
    client = _login(server)
    typ, data = client.select("INBOX")
    assert typ == "OK", data
    for i in range(24):
        keyword = f"$k{i % 3}"
        message = f"Subject: s{number}n{i}\r\n\r\nhi\r\n".encode()
        box = "Moved" if i % 2 else "INBOX"
        typ, data = client.append(box, f"(\\Seen {keyword})", DATE, message)
        assert typ == "OK", data
        uid = _code(client, typ, data, "APPENDUID")[1]
        if box == "Moved":
            done.append((uid, keyword))
            continue
        _typ, fetched = client.uid("FETCH", str(uid), "(EMAILID)")
        emailid = re.search(rb"EMAILID \((\S+)\)", fetched[0])[1]
        typ, data = client.uid("MOVE", str(uid), "Moved")
        assert typ == "OK", data
        moved = _code(client, typ, data, "COPYUID")[2]
        done.append((moved, keyword))
        emailids[moved] = emailid
    client.logout()


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_appends_and_moves_keep_keywords_dates_and_emailids(
    server_template, tmp_path, workers
):
    """Six sessions at once (over two worker processes, or threads of one): STATUS, SELECT
    and the quota check reconcile the target while others add to it; none of that may cost an
    OK'd message its keywords, INTERNALDATE or EMAILID."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(server_template, data_dir, symlinks=True)
    server = ServerProcess(data_dir, workers=workers)
    server.write_config()
    try:
        server.start(timeout=90)  # workers start slowly on a loaded machine
        client = _login(server)
        client.create("Moved")
        done: list[tuple[int, str]] = []
        emailids: dict[int, bytes] = {}
        errors: list[str] = []
        sessions = [
            threading.Thread(target=_session, args=(server, n, done, emailids, errors))
            for n in range(6)
        ]
        for session in sessions:
            session.start()
        for session in sessions:
            session.join(timeout=300)
        # The server's own account of a refusal beside the client's: a NO names no cause
        assert not errors and len(done) == 6 * 24, (errors, server.log()[-6000:])
        client.select("Moved", readonly=True)
        _typ, fetched = client.uid("FETCH", "1:*", "(FLAGS INTERNALDATE EMAILID)")
        found = {
            int(re.search(rb"UID (\d+)", line)[1]): line
            for line in fetched
            if isinstance(line, bytes) and b"UID " in line
        }
        client.logout()
    finally:
        server.stop()
    lost = [(uid, found.get(uid)) for uid, kw in done if kw.encode() not in found.get(uid, b"")]
    assert not lost, f"keywords lost on {len(lost)} of {len(done)}: {lost[:3]}"
    undated = [uid for uid, _kw in done if b"01-Jan-2020" not in found[uid]]
    assert not undated, f"INTERNALDATE lost on {len(undated)} of {len(done)}"
    changed = [uid for uid, emailid in emailids.items() if emailid not in found[uid]]
    assert not changed, f"EMAILID changed by MOVE on {len(changed)} of {len(emailids)}"


def _folder_files(data_dir: str, folder: str) -> int:
    base = os.path.join(data_dir, "mail", "example.test", "alice", folder)
    return sum(len(os.listdir(os.path.join(base, sub))) for sub in ("cur", "new"))


def test_a_kill_mid_move_leaves_each_message_in_one_mailbox(server):
    client = _login(server)
    client.create("Moved")
    for i in range(300):
        client.append("INBOX", "", None, b"Subject: m%d\r\n\r\nbody\r\n" % i)
    client.select("INBOX")
    client.send(b"M1 UID MOVE 1:* Moved\r\n")
    deadline = time.monotonic() + 60
    while _folder_files(server.data_dir, ".Moved") < 150 and time.monotonic() < deadline:
        time.sleep(0.001)
    server.kill()
    with contextlib.suppress(OSError):
        client.shutdown()
    server.start()
    client = _login(server)
    counts = {}
    for box in ("INBOX", "Moved"):
        _typ, data = client.status(box, "(MESSAGES)")
        counts[box] = int(re.search(rb"MESSAGES (\d+)", data[0])[1])
    client.logout()
    assert counts["INBOX"] + counts["Moved"] == 300, counts


def test_move_to_and_from_a_folder_on_another_file_system_keeps_flags_and_dates(server, tmp_path):
    """A folder that is a mount point: no rename reaches it (EXDEV), so MOVE copies each
    message (durably, then removes the original): it arrives with its flags and
    INTERNALDATE and leaves the source, both ways."""
    client = _login(server)
    client.create("Moved")
    for i in range(3):
        client.append("INBOX", r"(\Flagged $k)", DATE, b"Subject: m%d\r\n\r\nbody\r\n" % i)
    client.logout()
    server.stop()
    moved = os.path.join(server.data_dir, "mail", "example.test", "alice", ".Moved")
    server.prefix = on_own_file_system(moved, str(tmp_path / "moved-content"))
    server.start()
    mounts = Path(f"/proc/{server.process.pid}/mountinfo").read_text()
    assert f" {moved} " in mounts  # the server's view: a file system of its own
    client = _login(server)
    for source, target in (("INBOX", "Moved"), ("Moved", "INBOX")):
        client.select(source)
        typ, data = client.uid("MOVE", "1:*", target)
        assert typ == "OK", data
        assert any(b"[COPYUID " in r for r in client.untagged_responses.pop("OK", []))
        assert client.select(source)[1] == [b"0"]
        assert client.select(target)[1] == [b"3"]
        _typ, fetched = client.fetch("1:*", "(FLAGS INTERNALDATE)")
        assert all(rb"\Flagged $k" in f and DATE.encode() in f for f in fetched), fetched
    client.logout()
    assert "Traceback" not in server.log()


def test_a_kill_mid_append_leaves_nothing_in_tmp_once_the_server_is_back(server):
    """The literal is staged in the user's tmp/ as it arrives (and a message to add, too):
    what a killed process left there is swept when the server starts again."""
    tmp = os.path.join(server.data_dir, "mail", "example.test", "alice", "tmp")
    for _ in range(2):
        client = _login(server)
        client.send(b"A1 APPEND INBOX {2000000}\r\n")
        assert client.readline().startswith(b"+")
        client.send(b"x" * 1_500_000)
        deadline = time.monotonic() + 30
        while not os.listdir(tmp) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the octets sent reach the file
        assert os.listdir(tmp), "the literal was not staged"
        server.kill()
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        server.start()
    deadline = time.monotonic() + 20
    while os.listdir(tmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(tmp) == []
