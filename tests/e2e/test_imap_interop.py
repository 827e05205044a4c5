"""Real IMAP clients from Debian against the real server: mbsync (isync) syncing a mailbox both
ways, curl listing and fetching over imap://. Skipped where the client isn't installed."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess

import pytest

from tests.e2e.test_client_interop import flags_by_subject
from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"

pytestmark = pytest.mark.interop


def seed(server, count: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    for i in range(1, count + 1):
        message = f"From: bob@example.test\r\nSubject: seed {i}\r\n\r\nbody {i}\r\n".encode()
        assert client.append("INBOX", None, None, message)[0] == "OK"
    return client


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_lists_mailboxes_and_fetches_a_message(server):
    seed(server, 2).logout()
    base = f"imap://{H}:{listening_port(server, 'imap')}"
    user = f"{ALICE}:{PASSWORD}"
    listing = subprocess.run(
        ["curl", "-sS", "--user", user, base + "/"], capture_output=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    assert b'"INBOX"' in listing.stdout and b"\\Sent" in listing.stdout
    message = subprocess.run(
        ["curl", "-sS", "--user", user, base + "/INBOX;UID=2"], capture_output=True, timeout=30
    )
    assert message.returncode == 0, message.stderr
    assert message.stdout == b"From: bob@example.test\r\nSubject: seed 2\r\n\r\nbody 2\r\n"


def _mbsync(config: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["mbsync", "-c", config, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _local_messages(path: str) -> dict[str, str]:
    """Local Maildir file names by message subject."""
    found = {}
    for sub in ("cur", "new"):
        directory = os.path.join(path, sub)
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as f:
                for line in f.read().split(b"\n"):
                    if line.startswith(b"Subject: "):
                        found[line[9:].strip().decode()] = os.path.join(directory, name)
    return found


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_both_ways(server, tmp_path):
    seed(server, 3).logout()
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount test\nHost {H}\nPort {listening_port(server, 'imap')}\nUser {ALICE}\n"
        f"Pass {PASSWORD}\nSSLType None\nAuthMechs PLAIN LOGIN\n\n"
        "IMAPStore remote\nAccount test\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Both\n"
        f"Expunge Both\nSync All\nSyncState *\n"
    )
    # 1. download
    _mbsync(str(config), "-a")
    inbox = str(local / "INBOX")
    messages = _local_messages(inbox)
    assert sorted(messages) == ["seed 1", "seed 2", "seed 3"]
    # 2. flag locally (seed 1 read and flagged), delete seed 2, add a local message; push
    path = messages["seed 1"]
    base = path.rsplit(":2,", 1)[0]
    os.rename(path, os.path.join(inbox, "cur", os.path.basename(base) + ":2,FS"))
    path2 = messages["seed 2"]
    os.rename(
        path2, os.path.join(inbox, "cur", os.path.basename(path2.rsplit(":2,", 1)[0]) + ":2,T")
    )
    with open(os.path.join(inbox, "new", "1700000000.local.host"), "wb") as f:
        f.write(b"From: alice@example.test\r\nSubject: local draft\r\n\r\nwritten offline\r\n")
    _mbsync(str(config), "-a")
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    client.select("INBOX")
    remote = flags_by_subject(client)
    assert sorted(remote) == ["local draft", "seed 1", "seed 3"]
    assert "\\Seen" in remote["seed 1"] and "\\Flagged" in remote["seed 1"]
    # 3. change on the server: flag seed 3, expunge seed 1; sync down
    uids = client.uid("SEARCH", None, "SUBJECT", '"seed 3"')[1][0]
    client.uid("STORE", uids, "+FLAGS", "(\\Flagged)")
    uids = client.uid("SEARCH", None, "SUBJECT", '"seed 1"')[1][0]
    client.uid("STORE", uids, "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.logout()
    _mbsync(str(config), "-a")
    messages = _local_messages(inbox)
    assert sorted(messages) == ["local draft", "seed 3"]
    assert messages["seed 3"].rsplit(":2,", 1)[1].count("F") == 1


@pytest.mark.skipif(
    shutil.which("mbsync") is None or shutil.which("openssl") is None,
    reason="mbsync (isync) or openssl not installed",
)
def test_mbsync_through_an_openssl_tunnel_finishes(server, tmp_path):
    """mbsync speaks IMAP through ``openssl s_client`` on IMAPS and waits for the tunnel to
    end after LOGOUT: the server must close the TLS session itself, or mbsync hangs."""
    seed(server, 2).logout()
    local = tmp_path / "local"
    local.mkdir()
    port = listening_port(server, "imaps")
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f'IMAPAccount test\nTunnel "openssl s_client -quiet -connect {H}:{port}"\n'
        f"User {ALICE}\nPass {PASSWORD}\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount test\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Both\n"
        "Sync Pull\nSyncState *\n"
    )
    result = subprocess.run(
        ["mbsync", "-c", str(config), "-a"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(_local_messages(str(local / "INBOX"))) == ["seed 1", "seed 2"]
