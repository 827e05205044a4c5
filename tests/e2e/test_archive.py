"""Export, wipe, import on a running server: every message comes back with its bytes, flags,
UID and the mailbox's UIDVALIDITY, so an IMAP client's cache stays valid; the old password
still works; the Sieve scripts come back, the active one active, and sort the next mail."""

from __future__ import annotations

import imaplib
import json
import os
import re
import smtplib
import time

import pytest
from sievelib.managesieve import Client

from tests.e2e.conftest import PASSWORD
from tests.e2e.test_migrate_sieve import listing
from tests.e2e.test_sieve import send, subjects
from tests.support.pigeonhole import FILING, VACATION

pytestmark = [
    pytest.mark.slow,
    # Clear text on purpose: the server allows it from its own address (peer.PlaintextAuth).
    pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection"),
]
H = "127.0.0.1"
ALICE = "alice@example.test"


def imap(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(ALICE, PASSWORD)
    return client


def mailbox_state(server) -> dict[str, tuple]:
    """Per mailbox: UIDVALIDITY and MAILBOXID, and per UID its flags, bytes, EMAILID and save
    date, as an IMAP client sees them."""
    client = imap(server)
    state = {}
    for line in client.list()[1]:
        name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
        typ, data = client.select(f'"{name}"', readonly=True)
        validity = (client.response("UIDVALIDITY")[1][0], client.response("MAILBOXID")[1][0])
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS EMAILID SAVEDATE BODY.PEEK[])")
        messages = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0])[1])
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])[1].split()
                ids = re.search(rb'EMAILID \(\S+\) SAVEDATE "[^"]+"', item[0])[0]
                messages[uid] = (sorted(f for f in flags if f != b"\\Recent"), item[1], ids)
        state[name] = (validity, messages)
    client.logout()
    return state


def test_export_wipe_import_restores_bytes_flags_uids_and_uidvalidity(server, tmp_path):
    """... and the object ids and save dates (RFC 8474, RFC 8514) clients cache by."""
    for n in range(4):
        with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
            s.sendmail("x@remote.test", [ALICE], f"Subject: m{n}\r\n\r\nbody {n}\r\n")
    server.cli("alias", "add", "info@example.test", ALICE)
    deadline = time.time() + 10
    while len(json.loads(server.cli("search", ALICE, "INBOX", "ALL", "--json").stdout)) < 4:
        assert time.time() < deadline
        time.sleep(0.1)
    client = imap(server)
    client.create("Archive/2026")
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    client.expunge()  # a gap: UIDs 2, 3, 4 remain
    client.uid("STORE", "2", "+FLAGS", "(\\Seen \\Answered $Work)")
    client.uid("COPY", "3", "Archive/2026")
    client.append("Sent", "(\\Seen)", None, b"Subject: sent\r\n\r\nout\r\n")
    client.logout()
    before = mailbox_state(server)

    dest = tmp_path / "backup"
    server.cli("export", ALICE, str(dest))
    manifest = json.loads((dest / "txmailhost-export.json").read_text())
    assert manifest["format"] == "txmailhost-export" and manifest["users"] == [ALICE]
    server.cli("user", "del", ALICE, "--purge")
    server.cli("alias", "del", "info@example.test", check=False)

    report = json.loads(server.cli("import", str(dest), "--json").stdout)
    assert report[0]["account"] == "created"
    assert all(box["kept_uids"] for box in report[0]["mailboxes"])
    after = mailbox_state(server)  # logs in with the old password: the hash came back
    assert after == before
    assert sorted(before["INBOX"][1]) == [2, 3, 4]
    aliases = server.cli("alias", "list").stdout
    assert "info@example.test" in aliases and ALICE in aliases

    # New mail after the import continues above the restored UIDs.
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", [ALICE], "Subject: later\r\n\r\nnew\r\n")
    deadline = time.time() + 10
    while True:
        uids = [m["uid"] for m in json.loads(server.cli("search", ALICE, "INBOX", "ALL",
                                                         "--json").stdout)]  # fmt: skip
        if len(uids) == 4:
            break
        assert time.time() < deadline
        time.sleep(0.1)
    assert uids[-1] == 5


def deliver(server, recipients: list[str]) -> None:
    """One message to ``recipients`` over SMTP, waited for in each one's INBOX."""
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", recipients, "Subject: one\r\n\r\nbody\r\n")
    deadline = time.time() + 10
    while not all(json.loads(server.cli("search", user, "INBOX", "ALL", "--json").stdout)
                  for user in recipients):  # fmt: skip
        assert time.time() < deadline
        time.sleep(0.1)


def test_importing_into_a_mailbox_holding_mail_appends_with_new_uids(server, tmp_path):
    deliver(server, [ALICE, "bob@example.test"])
    server.cli("export", ALICE, str(tmp_path / "b"))
    report = json.loads(server.cli("import", "bob@example.test", str(tmp_path / "b"),
                                   "--json").stdout)  # fmt: skip
    (inbox,) = [box for box in report[0]["mailboxes"] if box["name"] == "INBOX"]
    assert report[0]["account"] == "existed"
    assert not inbox["kept_uids"] and inbox["messages"] == 1  # bob's INBOX held his own
    uids = [m["uid"] for m in json.loads(server.cli("search", "bob@example.test", "INBOX", "ALL",
                                                     "--json").stdout)]  # fmt: skip
    assert len(uids) == 2 and uids[1] > uids[0]


def test_importing_the_same_export_again_changes_nothing(server, tmp_path):
    """It used to add every message again, under new UIDs."""
    deliver(server, [ALICE])
    server.cli("export", ALICE, str(tmp_path / "b"))
    first = json.loads(server.cli("import", "bob@example.test", str(tmp_path / "b"),
                                  "--json").stdout)  # fmt: skip
    (inbox,) = [box for box in first[0]["mailboxes"] if box["name"] == "INBOX"]
    assert inbox["kept_uids"] and inbox["messages"] == 1  # bob's INBOX was empty
    again = server.cli("import", "bob@example.test", str(tmp_path / "b"))
    assert "  INBOX: 0 message(s) added, 1 there already, UIDs kept" in again.stdout
    search = server.cli("search", "bob@example.test", "INBOX", "ALL", "--json")
    assert [m["uid"] for m in json.loads(search.stdout)] == [1]


def test_export_refuses_a_nonempty_destination_and_import_an_incomplete_export(server, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = server.cli("export", ALICE, str(tmp_path / "full"), check=False)
    assert result.returncode == 1 and "is not an empty directory" in result.stderr
    (tmp_path / "partial" / ALICE).mkdir(parents=True)
    result = server.cli("import", str(tmp_path / "partial"), check=False)
    assert result.returncode == 1
    assert "no txmailhost-export.json: not an export, or an incomplete one" in result.stderr
    assert not os.path.exists(tmp_path / "partial" / "txmailhost-export.json")


def test_export_all_includes_an_online_copy_of_the_accounts_database(server, tmp_path):
    import sqlite3

    dest = tmp_path / "all"
    out = json.loads(server.cli("export", "--all", str(dest), "--json").stdout)
    assert [u["user"] for u in out["users"]] == [ALICE, "bob@example.test"]
    copy = sqlite3.connect(dest / "accounts.sqlite")
    assert sorted(r[0] for r in copy.execute("SELECT address FROM users")) == [
        ALICE, "bob@example.test",
    ]  # fmt: skip
    assert os.stat(dest / "accounts.sqlite").st_mode & 0o077 == 0


def test_sieve_scripts_come_back_with_the_active_one_and_sort_mail(server, tmp_path):
    """They were left out of the export: after the restore ManageSieve listed nothing and
    mail to ``[work]`` stayed in INBOX."""
    client = Client(H, server.ports["managesieve"])
    assert client.connect(ALICE, PASSWORD, authmech="PLAIN"), client.errmsg
    for name, script in (("rules", FILING), ("away", VACATION)):
        assert client.putscript(name, script), client.errmsg
    assert client.setactive("rules"), client.errmsg
    imap_client = imap(server)
    imap_client.create("Work")
    imap_client.logout()
    server.cli("export", ALICE, str(tmp_path / "b"))
    # lost with the account: the scripts deleted, then the user and their mail
    assert client.setactive(""), client.errmsg
    assert client.deletescript("rules") and client.deletescript("away"), client.errmsg
    client.logout()
    server.cli("user", "del", ALICE, "--purge")

    out = server.cli("import", str(tmp_path / "b")).stdout
    assert "  sieve 'rules': imported, active\n" in out
    assert listing(server, ALICE) == ("rules", ["away"])
    send(server, "bob@example.test", ALICE, "[work] plan")
    send(server, "bob@example.test", ALICE, "lunch")
    assert subjects(server, ALICE, "Work", want=1) == ["[work] plan"]
    assert subjects(server, ALICE, want=1) == ["lunch"]


imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def test_metadata_and_acls_set_over_imap_come_back_over_imap(server, tmp_path):
    """They were left out: after the restore GETMETADATA gave NIL and GETACL no bob."""
    client = imap(server)
    assert client._simple_command("SETMETADATA", "INBOX", '(/private/comment "kept")')[0] == "OK"
    assert client._simple_command("SETMETADATA", '""', '(/shared/comment "note")')[0] == "OK"
    assert client.setacl("INBOX", "bob@example.test", "lrs")[0] == "OK"
    client.logout()
    server.cli("export", ALICE, str(tmp_path / "b"))
    server.cli("user", "del", ALICE, "--purge")
    server.cli("import", str(tmp_path / "b"))

    client = imap(server)
    client._simple_command("GETMETADATA", "INBOX", "/private/comment")
    assert client.untagged_responses.pop("METADATA") == [b'"INBOX" (/private/comment "kept")']
    client._simple_command("GETMETADATA", '""', "/shared/comment")
    assert client.untagged_responses.pop("METADATA") == [b'"" (/shared/comment "note")']
    typ, data = client.getacl("INBOX")
    client.logout()
    assert typ == "OK" and b"bob@example.test lrs" in data[0], data
