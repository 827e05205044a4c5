"""Moving in from mbox: a Postfix + Dovecot user's ``/var/mail/USER`` and ``~/mail`` folders,
migrated into the running server and read back over IMAP with imaplib: UIDVALIDITY, UIDs,
flags, keywords, INTERNALDATE, the octets (CRLF) and the folder list.

The second test has Debian's Dovecot itself write the mbox files (``dovecot-lda`` delivering,
``doveadm`` setting flags and expunging, without a daemon: as the unprivileged ``nobody``,
so root is needed to switch to it) and compares what ``doveadm fetch`` served with what the
migrated server serves; skipped where Dovecot isn't installed."""

from __future__ import annotations

import calendar
import imaplib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from passlib.hash import ldap_salted_sha512

H = "127.0.0.1"
CAROL = "carol@example.test"
OLD_PASSWORD = "carol-old-pass"
LDA = "/usr/lib/dovecot/dovecot-lda"

INBOX = (
    b"From MAILER-DAEMON Sat Dec  5 09:00:00 2026\n"
    b"Date: Sat, 5 Dec 2026 09:00:00 +0000\n"
    b"From: Mail System Internal Data <MAILER-DAEMON@mx.example.test>\n"
    b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
    b"X-IMAP: 1650000000 0000000012 $Important Customer\n"
    b"Status: RO\n"
    b"\n"
    b"This text is part of the internal format of your mail folder, and is not\n"
    b"a real message.\n"
    b"\n"
    b"From alice@example.org  Sat Dec  5 09:30:01 2026 +0000\n"
    b"Return-Path: <alice@example.org>\n"
    b"Subject: quoted\n"
    b"X-UID: 4\n"
    b"Status: RO\n"
    b"X-Status: AF\n"
    b"X-Keywords: $Important Customer\n"
    b"Content-Length: 37\n"
    b"\n"
    b">From the start.\n"
    b">>From stays.\n"
    b"end\n"
    b"\n"
    b"\n"
    b"From bob@example.org Sat Dec  5 10:00:00 2026 +0100\n"
    b"Subject: draft\n"
    b"X-UID: 9\n"
    b"X-Status: TD\n"
    b"X-Keywords: a(b\n"
    b"\n"
    b"two\n"
    b"\n"
)


def state(port: int, user: str, password: str) -> dict:
    """Per mailbox: UIDVALIDITY and {UID: (flags, INTERNALDATE as seconds, octets)}."""
    client = imaplib.IMAP4(H, port)
    client.login(user, password)
    boxes = {}
    for line in client.list()[1]:
        if b"\\Noselect" in line:
            continue
        name = re.match(rb'\([^)]*\) "." "?([^"]*)"?', line)[1].decode()
        client.select(f'"{name}"', readonly=True)
        validity = int(client.response("UIDVALIDITY")[1][0])
        messages = {}
        for item in client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")[1]:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0])[1])
                flags = sorted(re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].decode().split())
                date = time.mktime(imaplib.Internaldate2tuple(item[0]))
                messages[uid] = (flags, date, item[1])
        boxes[name] = (validity, messages)
    client.logout()
    return boxes


def passwd(path: Path, home: Path) -> Path:
    table = path / "passwd"
    table.write_text(f"{CAROL}:{ldap_salted_sha512.hash(OLD_PASSWORD)}:1000:1000::{home}::\n")
    return table


def test_mbox_files_move_in_as_imap_clients_knew_them(server, tmp_path: Path) -> None:
    home = tmp_path / "home" / "carol"
    (home / "mail" / "Lists").mkdir(parents=True)
    (home / "mail" / "Lists" / "twisted").write_bytes(
        b"From list@example.org  Fri Dec  4 08:00:00 2026\nSubject: list\n\nhi\r\n\n"
    )
    (home / "mail" / "Sent").write_bytes(b"")
    (home / "mail" / ".subscriptions").write_text("Lists/twisted\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "carol").write_bytes(INBOX)
    result = server.cli("migrate", "dovecot", "--passwd-file", str(passwd(tmp_path, home)),
                        "--mail-location", f"mbox:~/mail:INBOX={spool}/%n")  # fmt: skip
    assert f"{CAROL}: account created" in result.stdout
    assert "  INBOX: 2 message(s), UIDVALIDITY 1650000000, UIDs kept" in result.stdout

    boxes = state(server.ports["imap"], CAROL, OLD_PASSWORD)
    assert set(boxes) == {"INBOX", "Lists/twisted", "Sent", "Drafts", "Junk", "Trash"}
    quoted = (b"Return-Path: <alice@example.org>\r\nSubject: quoted\r\n\r\n"
              b">From the start.\r\n>>From stays.\r\nend\r\n\r\n")  # fmt: skip
    assert boxes["INBOX"] == (1650000000, {
        4: (["$Important", "Customer", "\\Answered", "\\Flagged", "\\Seen"],
            calendar.timegm((2026, 12, 5, 9, 30, 1)), quoted),
        9: (["\\Deleted", "\\Draft"], calendar.timegm((2026, 12, 5, 9, 0, 0)),
            b"Subject: draft\r\n\r\ntwo\r\n"),
    })  # fmt: skip
    listed = boxes["Lists/twisted"][1]
    assert [body for _flags, _date, body in listed.values()] == [b"Subject: list\r\n\r\nhi\r\n"]
    assert boxes["Sent"][1] == {}
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(CAROL, OLD_PASSWORD)
    assert b"Lists/twisted" in b" ".join(client.lsub()[1])
    client.select("INBOX")
    client.append("INBOX", None, None, b"Subject: new\r\n\r\nnew\r\n")
    assert client.uid("SEARCH", "ALL")[1][0].split()[-1] == b"13"  # above X-IMAP's last UID
    client.logout()


def _dovecot_missing() -> str | None:
    if not (os.path.exists(LDA) and shutil.which("doveadm") and shutil.which("setpriv")):
        return "Debian's dovecot-core is not installed"
    if os.geteuid() != 0:
        return "running Dovecot as another user needs root"
    return None


class DovecotMbox:
    """Dovecot's LDA and doveadm on an mbox tree of their own (no daemon, no listener):
    ``mail_location = mbox:ROOT/mail:INBOX=ROOT/inbox``, run as ``nobody``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "mail").mkdir()
        for path in (root, root / "mail"):
            os.chmod(path, 0o777)
        self.conf = root / "dovecot.conf"
        self.conf.write_text(
            f"base_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n"
            f"mail_location = mbox:{root}/mail:INBOX={root}/inbox\nssl = no\n"
            "first_valid_uid = 1\nlda_mailbox_autocreate = yes\n"
        )

    def run(self, *args: str, stdin: bytes | None = None) -> bytes:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i",
                   "PATH=/usr/bin:/bin", f"HOME={self.root}", "USER=nobody", "TZ=UTC", *args]  # fmt: skip
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=60)
        assert done.returncode == 0, (args, done.stderr, (self.root / "dovecot.log").read_text())
        return done.stdout

    def deliver(self, message: bytes, folder: str = "INBOX") -> None:
        self.run(LDA, "-c", str(self.conf), "-f", "sender@example.org", "-m", folder,
                 stdin=message)  # fmt: skip

    def doveadm(self, *args: str) -> bytes:
        return self.run("doveadm", "-c", str(self.conf), *args)

    def served(self, folder: str) -> tuple[int, dict]:
        """UIDVALIDITY and {UID: (flags, INTERNALDATE, text)} as Dovecot serves them."""
        status = self.doveadm("mailbox", "status", "uidvalidity", folder).decode()
        fetched = json.loads(self.doveadm(
            "-f", "json", "fetch", "uid flags date.received text", "mailbox", folder, "all"
        ))  # fmt: skip
        messages = {}
        for m in fetched:
            flags = sorted(f for f in m["flags"].split() if f != "\\Recent")
            date = calendar.timegm(time.strptime(m["date.received"], "%Y-%m-%d %H:%M:%S"))
            messages[int(m["uid"])] = (flags, date, m["text"].encode())
        return int(status.split("=")[1]), messages


@pytest.mark.interop
@pytest.mark.skipif(_dovecot_missing() is not None, reason=str(_dovecot_missing()))
def test_mbox_files_dovecot_wrote_serve_what_dovecot_served(server, monkeypatch) -> None:
    """Dovecot quotes nothing and writes its own Content-Length: a body's dated From lines
    stay in their message; its hidden headers go; its UIDs, flags and keywords come over."""
    monkeypatch.setenv("TZ", "UTC")  # the From lines are local time: Dovecot's and ours
    root = Path(tempfile.mkdtemp(prefix="txm-mbox-"))
    os.chmod(root, 0o755)
    try:
        old = DovecotMbox(root)
        patch = (b"Subject: [PATCH] mbox\n\nFrom 1234abcd Mon Sep 17 00:00:00 2001\n"
                 b"From: Dev <dev@example.org>\nSubject: [PATCH] x\n\n---\n>From quoted\n")  # fmt: skip
        old.deliver(b"Subject: one\n\nFrom here on\nbody\n")
        old.deliver(patch)
        old.deliver(b"Subject: three\n\nthree\n")
        old.deliver(b"Subject: four\n\nfour\n")
        old.deliver(b"Subject: work\n\nwork\n", "Work")
        old.deliver(b"Subject: twisted\n\nlist\n", "Lists/twisted")
        old.doveadm("flags", "add", "\\Seen \\Flagged $Important", "mailbox", "INBOX", "uid", "2")
        old.doveadm("flags", "add", "\\Answered Customer", "mailbox", "INBOX", "uid", "3")
        old.doveadm("flags", "add", "\\Draft", "mailbox", "Work", "uid", "1")
        old.doveadm("expunge", "mailbox", "INBOX", "uid", "1")
        old.doveadm("mailbox", "subscribe", "Lists/twisted")
        before = {name: old.served(name) for name in ("INBOX", "Work", "Lists/twisted")}
        assert sorted(before["INBOX"][1]) == [2, 3, 4]
        table = root / "passwd"
        table.write_text(f"{CAROL}:{ldap_salted_sha512.hash(OLD_PASSWORD)}::::{root}::\n")
        result = server.cli("migrate", "dovecot", "--passwd-file", str(table),
                            "--mail-location", "mbox:%h/mail:INBOX=%h/inbox")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert "skipped" not in result.stdout, result.stdout
    after = state(server.ports["imap"], CAROL, OLD_PASSWORD)
    for name, (validity, messages) in before.items():
        crlf = {uid: (flags, date, text.replace(b"\n", b"\r\n"))
                for uid, (flags, date, text) in messages.items()}  # fmt: skip
        assert after[name] == (validity, crlf), name
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(CAROL, OLD_PASSWORD)
    assert b"Lists/twisted" in b" ".join(client.lsub()[1])
    client.logout()
