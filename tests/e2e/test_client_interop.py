"""More real clients from Debian against the real server: msmtp submitting on 587 (STARTTLS)
and 465 (implicit TLS), getmail6 fetching over POP3 with UIDL, offlineimap3 syncing an IMAP
account both ways. Skipped where the client isn't installed (``.ci/run`` installs them)."""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import subprocess
import textwrap

import pytest

from tests.e2e.conftest import PASSWORD

H = "127.0.0.1"
ALICE = "alice@example.test"

pytestmark = pytest.mark.interop


def _needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")


def _imap(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    client.login(ALICE, PASSWORD)
    return client


def _cert(server) -> str:
    """The server's self-signed certificate, for clients told to trust exactly it."""
    return f"{server.data_dir}/tls/cert.pem"


def _messages(server, user: str) -> list[bytes]:
    """Every message of ``user``'s INBOX, whole, in order."""
    client = imaplib.IMAP4(H, server.ports["imap"], timeout=10)
    try:
        client.login(user, PASSWORD)
        client.select("INBOX", readonly=True)
        _typ, data = client.fetch("1:*", "(BODY.PEEK[])")
    finally:
        client.logout()
    return [part[1] for part in data if isinstance(part, tuple)]


def _subjects(server, mailbox: str = "INBOX") -> list[str]:
    client = _imap(server)
    try:
        client.select(mailbox, readonly=True)
        _typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found = [part[1] for part in data if isinstance(part, tuple)]
        return [raw.decode().strip().removeprefix("Subject: ") for raw in found]
    finally:
        client.logout()


def flags_by_subject(client: imaplib.IMAP4) -> dict[str, str]:
    """Each message of the selected mailbox's FETCH line (its flags) by subject."""
    _typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return {
        part[1].decode().strip().removeprefix("Subject: "): part[0].decode()
        for part in data
        if isinstance(part, tuple)
    }


def _send(server, subject: str) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as client:
        client.sendmail(
            "bob@remote.test",
            [ALICE],
            f"From: bob@remote.test\r\nSubject: {subject}\r\n\r\nbody\r\n.leading dot\r\n",
        )


def _msmtp(server, tmp_path, account: str, author: str) -> subprocess.CompletedProcess:
    rc = tmp_path / "msmtprc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            defaults
            tls on
            tls_certcheck off
            auth on
            user {ALICE}
            password {PASSWORD}
            from {ALICE}
            account starttls
            host {H}
            port {server.ports["submission"]}
            tls_starttls on
            account implicit
            host {H}
            port {server.ports["submissions"]}
            tls_starttls off
            """
        )
    )
    rc.chmod(0o600)
    message = f"From: {author}\nTo: {ALICE}\nSubject: via msmtp {account}\n\nhi\n.dot line\n"
    return subprocess.run(
        ["msmtp", "-C", str(rc), "-a", account, ALICE],
        input=message,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_msmtp_submits_over_starttls_and_implicit_tls_and_cannot_forge(server, tmp_path):
    _needs("msmtp")
    for account in ("starttls", "implicit"):
        result = _msmtp(server, tmp_path, account, ALICE)
        assert result.returncode == 0, result.stderr
    forged = _msmtp(server, tmp_path, "starttls", "bob@example.test")
    assert forged.returncode != 0 and "550" in forged.stderr, forged.stderr
    subjects = _subjects(server)
    assert "via msmtp starttls" in subjects and "via msmtp implicit" in subjects
    assert len(subjects) == 2


def _getmail(server, tmp_path) -> list[bytes]:
    """One getmail run; the messages it delivered this time."""
    out = tmp_path / "fetched"
    out.mkdir(exist_ok=True)
    before = set(os.listdir(out))
    rc = tmp_path / "getmailrc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            [retriever]
            type = SimplePOP3Retriever
            server = {H}
            port = {server.ports["pop3"]}
            username = {ALICE}
            password = {PASSWORD}
            [destination]
            type = MDA_external
            path = /bin/sh
            arguments = ("-c", "cat > {out}/$$")
            allow_root_commands = true
            [options]
            delete = false
            read_all = false
            """
        )
    )
    result = subprocess.run(
        ["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [(out / name).read_bytes() for name in sorted(set(os.listdir(out)) - before)]


def test_getmail_fetches_over_pop3_and_uidl_keeps_it_from_fetching_twice(server, tmp_path):
    _needs("getmail")
    _send(server, "first")
    _send(server, "second")
    fetched = _getmail(server, tmp_path)
    assert len(fetched) == 2
    assert all(b"\n.leading dot" in message for message in fetched)  # unstuffed
    assert _getmail(server, tmp_path) == []  # kept on the server, known by UIDL
    _send(server, "third")
    [third] = _getmail(server, tmp_path)
    assert b"Subject: third" in third


def test_offlineimap_syncs_both_ways(server, tmp_path):
    _needs("offlineimap")
    for n in range(3):
        _send(server, f"server {n}")
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            [general]
            accounts = test
            metadata = {tmp_path / "meta"}
            [Account test]
            localrepository = local
            remoterepository = remote
            [Repository local]
            type = Maildir
            localfolders = {local}
            [Repository remote]
            type = IMAP
            remotehost = {H}
            remoteport = {server.ports["imap"]}
            remoteuser = {ALICE}
            remotepass = {PASSWORD}
            ssl = no
            starttls = no
            folderfilter = lambda name: name in ("INBOX", "Trash")
            """
        )
    )

    def sync() -> None:
        result = subprocess.run(
            ["offlineimap", "-c", str(rc), "-u", "basic", "-o"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    sync()
    inbox = local / "INBOX"
    names = sorted(os.listdir(inbox / "new")) + sorted(os.listdir(inbox / "cur"))
    assert len(names) == 3
    first = names[0]  # flag one, delete another, write a new one, all locally
    place = "new" if first in os.listdir(inbox / "new") else "cur"
    os.rename(inbox / place / first, inbox / "cur" / (first.split(":2,")[0] + ":2,FS"))
    second = names[1]
    os.remove(inbox / ("new" if second in os.listdir(inbox / "new") else "cur") / second)
    (inbox / "new" / "1.local").write_bytes(b"From: me@example.test\r\nSubject: local\r\n\r\nx\r\n")
    sync()
    client = _imap(server)
    try:
        client.select("INBOX", readonly=True)
        flagged = client.search(None, "FLAGGED")[1][0].split()
        assert len(flagged) == 1 and client.search(None, "SEEN")[1][0].split() == flagged
        assert len(client.search(None, "ALL")[1][0].split()) == 3  # 3 - 1 deleted + 1 new
    finally:
        client.logout()
    assert "local" in _subjects(server)
