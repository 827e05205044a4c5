"""Moving in from a real Dovecot: mail put there over IMAP comes over with its UIDs,
UIDVALIDITY, flags, keywords and folder names, and users log in with their old passwords
(Argon2id and SHA512-CRYPT, as Dovecot hashed them, and yescrypt from a shadow file), which are then rehashed to scrypt.

Dovecot runs as bench/ runs it (a private instance on loopback, ``bench/anchors/dovecot.py``);
skipped where it isn't installed or can't start (it needs root for its static mail uid)."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.anchors import dovecot
from bench.server import PASSWORD as OLD_PASSWORD

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.skipif(dovecot.unavailable() is not None, reason=str(dovecot.unavailable())),
]
H = "127.0.0.1"
CAROL, DAVE, ERIN = "carol@example.test", "dave@example.test", "erin@example.test"
DAVE_PASSWORD = "dave-old-pass-9"
# yescrypt, as Debian 11+ writes /etc/shadow (libxcrypt's crypt, cost j9T): the password
# "old-secret-1". Dovecot checks it with the C library's crypt().
ERIN_HASH = "{CRYPT}$y$j9T$abcdefghijklmnop$WjvwQB2C.KNsE109LdgVCPWCss7LT5yAszlk0F.FUo2"


def imap_state(port: int, user: str, password: str) -> dict[str, tuple]:
    """Per mailbox ('/' as separator): UIDVALIDITY and {UID: (flags, bytes)}; subscriptions."""
    client = imaplib.IMAP4(H, port)
    client.login(user, password)
    state = {}
    for line in client.list()[1]:
        found = re.match(rb'\(([^)]*)\) "(.)" "?([^"]*)"?', line)
        separator, name = found[2].decode(), found[3].decode()
        client.select(f'"{name}"', readonly=True)
        validity = int(client.response("UIDVALIDITY")[1][0])
        messages = {}
        for item in client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")[1]:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0])[1])
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].decode().split()
                body = item[1].replace(b"\r\n", b"\n")
                messages[uid] = (sorted(f for f in flags if f != "\\Recent"), body)
        state[name.replace(separator, "/")] = (validity, messages)
    subscribed = {
        re.match(rb'\([^)]*\) "(.)" "?([^"]*)"?', line)[2].decode().replace(".", "/")
        for line in client.lsub()[1]
        if line
    }
    client.logout()
    return {"mailboxes": state, "subscribed": subscribed}


def fill_dovecot(port: int) -> None:
    client = imaplib.IMAP4(H, port)
    client.login(CAROL, OLD_PASSWORD)
    client.create("Work")
    client.create("Work.Projects")
    client.create("Caf&AOk-")  # Café: Dovecot keeps the name in modified UTF-7
    client.subscribe("Work")
    client.subscribe("Caf&AOk-")
    for n in range(5):
        client.append("INBOX", None, None, f"Subject: inbox {n}\r\n\r\nbody {n}\r\n".encode())
    client.append("Work", "(\\Seen $Important Customer)", None, b"Subject: w\r\n\r\nwork\r\n")
    client.append("Work.Projects", "(\\Flagged \\Answered)", None, b"Subject: p\r\n\r\np\r\n")
    client.append("Caf&AOk-", None, None, b"Subject: c\r\n\r\ncaf\xc3\xa9\r\n")
    client.select("INBOX")
    client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    client.expunge()  # a gap in the UIDs: 1, 3, 4, 5
    client.uid("STORE", "3", "+FLAGS", "(\\Seen Later)")
    client.uid("STORE", "4", "+FLAGS", "(\\Draft)")
    client.logout()


@pytest.fixture
def workdir():
    """Dovecot's processes run as its own users: pytest's tmp_path (under a 0700 directory)
    is out of their reach."""
    path = tempfile.mkdtemp(prefix="txm-dovecot-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_dovecot_users_and_mail_move_in_with_uids_flags_and_passwords(server, workdir):
    with dovecot.running(workdir / "dovecot") as old:
        maildir = old.add_user(CAROL)
        users = maildir.parents[2] / "users"
        sha512 = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", DAVE_PASSWORD],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        with users.open("a") as table:
            table.write(f"{DAVE}:{sha512}:5000:5000::{maildir.parent / 'dave'}::\n")
            table.write(f"{ERIN}:{ERIN_HASH}:5000:5000::{maildir.parent / 'erin'}::\n")
        imaplib.IMAP4(H, old.imap_port).login(ERIN, "old-secret-1")  # Dovecot takes it
        fill_dovecot(old.imap_port)
        before = imap_state(old.imap_port, CAROL, OLD_PASSWORD)
        result = server.cli("migrate", "dovecot", "--passwd-file", str(users),
                            "--maildir-root", str(maildir.parents[1]))  # fmt: skip
    assert f"{CAROL}: account created" in result.stdout
    assert f"{DAVE}: account created" in result.stdout
    assert f"{ERIN}: account created" in result.stdout

    after = imap_state(server.ports["imap"], CAROL, OLD_PASSWORD)
    for name, (validity, messages) in before["mailboxes"].items():
        assert after["mailboxes"][name] == (validity, messages), name
    assert set(before["mailboxes"]) == {"INBOX", "Work", "Work/Projects", "Caf&AOk-"}
    assert sorted(before["mailboxes"]["INBOX"][1]) == [1, 3, 4, 5]
    assert before["mailboxes"]["INBOX"][1][3][0] == ["Later", "\\Seen"]
    assert before["mailboxes"]["Work"][1][1][0] == ["$Important", "Customer", "\\Seen"]
    assert after["subscribed"] >= {"Work", "Caf&AOk-"}
    imaplib.IMAP4(H, server.ports["imap"]).login(DAVE, DAVE_PASSWORD)
    imaplib.IMAP4(H, server.ports["imap"]).login(ERIN, "old-secret-1")

    # The old hashes served once; scrypt from now on.
    db = sqlite3.connect(f"{server.data_dir}/accounts.sqlite")
    hashes = dict(db.execute("SELECT address, password_hash FROM users"))
    assert all(hashes[user].startswith("$scrypt$") for user in (CAROL, DAVE, ERIN))
    assert "password of carol@example.test rehashed from ARGON2ID to scrypt" in server.log()
    assert "password of dave@example.test rehashed from SHA512-CRYPT to scrypt" in server.log()
    assert "password of erin@example.test rehashed from CRYPT to scrypt" in server.log()

    # New mail continues above Dovecot's UIDNEXT.
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(CAROL, OLD_PASSWORD)
    client.append("INBOX", None, None, b"Subject: new\r\n\r\nnew\r\n")
    client.select("INBOX")
    assert client.uid("SEARCH", "ALL")[1][0].split()[-1] == b"6"
    client.logout()


def test_a_dovecot_maildir_in_the_users_maildir_directory_moves_in(server, workdir):
    """Dovecot's common ``mail_location = maildir:~/Maildir`` with homes
    ``/var/vmail/%d/%n`` and a passwd-file without homes: the Maildir Dovecot wrote, moved
    to ``DOMAIN/USER/Maildir``, is found under ``--maildir-root`` (it was not: carol moved
    in with an empty INBOX) and IMAP serves it with Dovecot's UIDs."""
    with dovecot.running(workdir / "dovecot") as old:
        maildir = old.add_user(CAROL)
        fill_dovecot(old.imap_port)
        before = imap_state(old.imap_port, CAROL, OLD_PASSWORD)
        users = maildir.parents[2] / "users"
    moved = maildir.parent / "carol.tmp"
    maildir.rename(moved)
    maildir.mkdir()
    moved.rename(maildir / "Maildir")
    password = users.read_text().split(":")[1]
    homeless = workdir / "users-without-homes"
    homeless.write_text(f"{CAROL}:{password}:5000:5000::::\n")
    result = server.cli("migrate", "dovecot", "--passwd-file", str(homeless),
                        "--maildir-root", str(maildir.parents[1]))  # fmt: skip
    assert f"  Maildir {maildir / 'Maildir'}\n" in result.stdout
    after = imap_state(server.ports["imap"], CAROL, OLD_PASSWORD)
    for name, (validity, messages) in before["mailboxes"].items():
        assert after["mailboxes"][name] == (validity, messages), name
    assert sorted(after["mailboxes"]["INBOX"][1]) == [1, 3, 4, 5]
