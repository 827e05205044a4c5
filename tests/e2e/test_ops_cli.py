"""The doveadm-class commands against a running server: what they change, an IMAP client sees
(and the other way round), because both go through the same store."""

from __future__ import annotations

import imaplib
import json
import os
import smtplib
import subprocess
import time

import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.server import BIN

pytestmark = pytest.mark.slow
H = "127.0.0.1"
ALICE = "alice@example.test"


def send(server, subject: str, body: str = "hello") -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", [ALICE], f"Subject: {subject}\r\n\r\n{body}\r\n")


def imap(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, server.ports["imap"])
    client.login(ALICE, PASSWORD)
    return client


def cli_json(server, *args: str) -> object:
    return json.loads(server.cli(*args, "--json").stdout)


def wait_for_messages(server, count: int) -> list[dict]:
    deadline = time.time() + 10
    while True:
        found = cli_json(server, "search", ALICE, "INBOX", "ALL")
        if len(found) >= count or time.time() > deadline:
            return found
        time.sleep(0.1)


def test_mailbox_create_rename_delete_show_in_imap_list(server):
    server.cli("mailbox", "create", ALICE, "Projects", "Projects/2026")
    server.cli("mailbox", "rename", ALICE, "Projects/2026", "Projects/Done")
    client = imap(server)
    listed = b" ".join(client.list()[1])
    assert b'"Projects/Done"' in listed or b"Projects/Done" in listed
    assert b"Projects/2026" not in listed
    assert b"Projects/Done" in b" ".join(client.lsub()[1])  # created subscribed
    client.create("FromClient")
    client.logout()

    names = server.cli("mailbox", "list", ALICE).stdout.split("\n")
    assert names[0] == "INBOX" and "FromClient" in names and "Projects/Done" in names
    server.cli("mailbox", "delete", ALICE, "FromClient")
    rows = cli_json(server, "mailbox", "list", ALICE)
    assert "FromClient" not in [row["name"] for row in rows]


def test_mailbox_status_counts_what_was_delivered(server):
    send(server, "one")
    send(server, "two")
    wait_for_messages(server, 2)
    (inbox,) = cli_json(server, "mailbox", "status", ALICE, "INBOX")
    client = imap(server)
    typ, data = client.status("INBOX", "(MESSAGES UNSEEN UIDVALIDITY UIDNEXT)")
    client.logout()
    assert inbox["messages"] == 2 and inbox["unseen"] == 2
    assert f"UIDVALIDITY {inbox['uidvalidity']}".encode() in data[0]
    assert f"UIDNEXT {inbox['uidnext']}".encode() in data[0]


def test_search_fetch_flags_and_expunge_are_what_an_imap_client_sees(server):
    send(server, "quarterly report", "numbers")
    send(server, "lunch?", "pizza")
    found = wait_for_messages(server, 2)
    assert len(found) == 2
    # A quoted phrase is passed as one word; the search is IMAP's own.
    (report,) = cli_json(server, "search", ALICE, "INBOX", "SUBJECT", "quarterly report")
    assert server.cli("search", ALICE, "INBOX", "BODY", "pizza").stdout.split() == [
        str(m["uid"]) for m in found if m["uid"] != report["uid"]
    ]

    client = imap(server)
    client.select("INBOX")
    _typ, data = client.uid("FETCH", str(report["uid"]), "(BODY.PEEK[])")
    client_bytes = data[0][1]
    fetched = subprocess.run(
        [os.path.join(BIN, "txmailhost"), "--data", server.data_dir, "fetch", ALICE, "INBOX",
         str(report["uid"])],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    assert fetched.stdout == client_bytes  # the bytes as stored, CRLF and all

    server.cli("flags", ALICE, "INBOX", "add", "\\Flagged $Important", "UID", str(report["uid"]))
    client.noop()
    _typ, data = client.uid("FETCH", str(report["uid"]), "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"$Important" in data[0]
    (flagged,) = cli_json(server, "search", ALICE, "INBOX", "FLAGGED")
    assert flagged["uid"] == report["uid"] and flagged["modseq"] > report["modseq"]
    assert flagged["flags"] == ["$Important", "\\Flagged"]

    out = cli_json(server, "expunge", ALICE, "INBOX", "FLAGGED")
    assert out == {"expunged": [report["uid"]]}
    client.noop()
    _typ, data = client.uid("SEARCH", "ALL")
    client.logout()
    assert str(report["uid"]).encode() not in data[0].split()
    assert len(data[0].split()) == 1


def test_expunge_needs_a_query_and_a_bad_one_is_one_line(server):
    result = server.cli("expunge", ALICE, "INBOX", check=False)
    assert result.returncode == 2  # argparse: the query is required
    result = server.cli("search", ALICE, "INBOX", "NOSUCHKEY", check=False)
    assert result.returncode == 1
    assert result.stderr == "txmailhost: error: bad search query: unknown search key NOSUCHKEY\n"
    result = server.cli("mailbox", "list", "nobody@example.test", check=False)
    assert result.stderr == "txmailhost: error: no such user: nobody@example.test\n"
    result = server.cli("fetch", ALICE, "INBOX", "99999999999999999999999", check=False)
    assert result.returncode == 2 and "a UID is from 1 to 4294967295" in result.stderr
    for flag in ("\\Recent", "\\Bogus", "two(words"):
        result = server.cli("flags", ALICE, "INBOX", "add", flag, "ALL", check=False)
        assert result.stderr == f"txmailhost: error: not an IMAP flag or keyword: {flag}\n"


def test_index_rebuild_adopts_a_file_another_tool_dropped_in(server):
    new = os.path.join(server.data_dir, "mail", "example.test", "alice", "new")
    with open(os.path.join(new, "1700000000.M1P1.elsewhere"), "wb") as f:
        f.write(b"Subject: dropped in\n\nby hand\n")
    rows = cli_json(server, "index", "rebuild", ALICE)
    assert {"user": ALICE, "mailbox": "INBOX", "messages": 1, "text": 1, "set_aside": None} in rows
    (used,) = cli_json(server, "quota", "recalc", ALICE)
    assert used["user"] == ALICE and used["used"] > len(b"Subject: dropped in\r\n")


def test_auth_test_checks_the_password_without_throttling_logins(server):
    for _ in range(8):
        wrong = server.cli("auth", "test", ALICE, "--password-file", "-", stdin="nope\n",
                           check=False)  # fmt: skip
        assert wrong.returncode == 1
        assert wrong.stdout == f"auth failed for {ALICE}: wrong password\n"
    right = server.cli("auth", "test", ALICE, "--password-file", "-", stdin=PASSWORD + "\n")
    assert right.stdout == f"auth succeeded for {ALICE}: ok\n"
    started = time.monotonic()
    imap(server).logout()  # not slowed or refused: nothing was counted against it
    assert time.monotonic() - started < 5
    assert "auth failed" not in server.log() and "login failed" not in server.log()


def test_status_shows_the_queue_and_every_listener(server):
    document = cli_json(server, "status")
    listeners = {row["listener"]: row for row in document["listeners"]}
    assert set(listeners) >= {"smtp", "imap", "pop3", "metrics"}
    assert listeners["smtp"]["state"] == "unknown"  # port 0 in the test config
    assert document["queue"]["messages"] == 0
    assert document["accounts"] == {"domains": 1, "users": 2}
    assert document["disk"]["free"] > 0


def test_a_mailbox_name_that_is_not_utf8_is_refused_and_nothing_made(server):
    """An octet that isn't UTF-8 reaches Python as a lone surrogate: the store made the
    folder, then the subscriptions file refused the name (exit 1, folder left behind)."""
    result = subprocess.run(
        [os.path.join(BIN, "txmailhost"), "--data", server.data_dir, "mailbox", "create",
         ALICE, b"cli\xffname"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"invalid mailbox name" in result.stderr
    assert "cli" not in server.cli("mailbox", "list", ALICE).stdout
    client = imap(server)
    typ, _ = client.create('"&2D0-"')  # half a UTF-16 pair
    assert typ != "OK"
    assert b"&2D0-" not in b" ".join(client.list()[1])
    client.logout()
