"""The real server (twistd txmailhost) driven by Python's imaplib over loopback: every command of
issue 3, IDLE push of an SMTP delivery, IMAPS and STARTTLS, and isolation between users."""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import smtplib
import socket
import ssl
import time

import pytest

from tests.imap.support import listening_port
from tests.support.workers import stat_fields
from txmailhost.store.maildir import folder_directory, user_directory

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"
MSG = (
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: e2e test\r\n"
    b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nMessage-ID: <e2e@example.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=xx\r\n\r\n"
    b"--xx\r\nContent-Type: text/plain\r\n\r\nhello imap\r\n"
    b"--xx\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--xx--\r\n"
)


@pytest.fixture
def imap(server):
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def smtp_deliver(server, body: str, to: str = ALICE) -> None:
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.sendmail("sender@remote.test", [to], body)


def ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def test_imaplib_session_exercises_every_rfc3501_command(imap, server):
    caps = ok(imap.capability())[0].decode().split()
    assert "IMAP4rev1" in caps and "IDLE" in caps
    ok(imap.noop())
    ok(imap.create("Work/Reports"))
    ok(imap.subscribe("Work/Reports"))
    assert b'"Work/Reports"' in b" ".join(ok(imap.lsub()))
    ok(imap.unsubscribe("Work/Reports"))
    ok(imap.rename("Work/Reports", "Work/Archive"))
    listing = b"\n".join(ok(imap.list()))
    assert b'(\\HasChildren) "/" "Work"' in listing
    assert b'"Work/Archive"' in listing
    data = ok(imap.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()), MSG))
    assert re.search(rb"APPENDUID \d+ 1", data[0])
    assert b"MESSAGES 1" in ok(imap.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)"))[0]
    ok(imap.select("INBOX"))
    ok(imap.check())
    data = ok(imap.fetch("1", "(FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"))
    assert b"\\Flagged" in data[0] and b"RFC822.SIZE %d" % len(MSG) in data[0]
    assert b'"e2e test"' in data[0] and b'"html"' in data[0]
    data = ok(imap.fetch("1", "(BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.HEADER)"))
    assert data[0][1] == b"hello imap"
    assert data[1][1] == b"Subject: e2e test\r\n\r\n"
    assert ok(imap.fetch("1", "(BODY[]<0.4>)"))[0][1] == MSG[:4]
    data = ok(imap.store("1", "+FLAGS", "(\\Answered)"))
    assert b"\\Answered" in data[0]
    assert ok(imap.search(None, "ANSWERED", "FROM", "bob")) == [b"1"]
    assert ok(imap.search("UTF-8", "BODY", "hello")) == [b"1"]
    assert ok(imap.uid("SEARCH", None, "ALL")) == [b"1"]
    data = ok(imap.uid("FETCH", "1", "(FLAGS)"))
    assert b"UID 1" in data[0]
    ok(imap.uid("STORE", "1", "-FLAGS", "(\\Flagged)"))
    typ, data = imap.copy("1", "Work/Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = imap.uid("COPY", "1", "Trash")
    assert typ == "OK"
    ok(imap.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    assert ok(imap.expunge()) == [b"1"]
    ok(imap.close())
    ok(imap.select("Work/Archive", readonly=True))
    assert ok(imap.fetch("1", "(UID)"))[0] == b"1 (UID 1)"
    ok(imap.unselect())
    ok(imap.delete("Work/Archive"))


def test_login_with_wrong_password_fails(server):
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(ALICE, "wrong")


@pytest.mark.shared_server
def test_authenticate_plain(server):
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()


def test_smtp_delivery_reaches_an_idle_session_within_a_second(server):
    s = socket.create_connection((H, listening_port(server, "imap")), 10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a1 LOGIN {ALICE} {PASSWORD}\r\na2 SELECT INBOX\r\na3 IDLE\r\n".encode())
    while not f.readline().startswith(b"+"):
        pass
    started = time.time()
    smtp_deliver(server, "Subject: idle\r\n\r\npushed\r\n")
    s.settimeout(2)
    line = f.readline()
    assert re.match(rb"\* 1 EXISTS", line), line
    assert time.time() - started < 1.5
    s.sendall(b"DONE\r\n")
    assert f.readline() == b"* 1 RECENT\r\n"
    assert f.readline() == b"a3 OK IDLE terminated\r\n"
    s.close()


def test_other_sessions_changes_are_reported_on_noop(server, imap):
    smtp_deliver(server, "Subject: one\r\n\r\nx\r\n")
    ok(imap.select("INBOX"))
    other = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    other.login(ALICE, PASSWORD)
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Seen)")
    smtp_deliver(server, "Subject: two\r\n\r\ny\r\n")
    ok(imap.noop())
    assert imap.untagged_responses.get("EXISTS")[-1] == b"2"
    assert any(b"\\Seen" in r for r in imap.untagged_responses.get("FETCH", []))
    other.logout()


def test_uidplus_move_and_uid_expunge(server, imap):
    for i in range(3):
        smtp_deliver(server, f"Subject: m{i}\r\n\r\nbody {i}\r\n")
    ok(imap.select("INBOX"))
    typ, data = imap.uid("MOVE", "2", "Junk")
    assert typ == "OK"
    assert re.search(rb"COPYUID \d+ 2 1", b" ".join(imap.untagged_responses.get("OK", [])))
    ok(imap.uid("STORE", "1,3", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(imap.uid("EXPUNGE", "3"))
    assert ok(imap.uid("SEARCH", None, "ALL")) == [b"1"]


def test_condstore_qresync_esearch_and_quota(server, imap):
    smtp_deliver(server, "Subject: cs\r\n\r\nx\r\n")
    ok(imap._simple_command("ENABLE", "QRESYNC"))
    typ, data = imap.select("INBOX")
    assert imap.untagged_responses.get("HIGHESTMODSEQ")
    ok(imap.store("1", "+FLAGS", "(\\Seen)"))
    typ, data = imap._simple_command("UID", "FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE 1)")
    assert typ == "OK"
    fetched = imap.untagged_responses.pop("FETCH", [])
    assert any(b"MODSEQ" in r for r in fetched)
    typ, _ = imap._simple_command("UID", "SEARCH", "RETURN", "(COUNT)", "ALL")
    assert typ == "OK"
    (esearch,) = imap.untagged_responses.pop("ESEARCH")
    assert esearch.endswith(b"UID COUNT 1")
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK"
    assert b"STORAGE" in b" ".join(x for x in data[1] if isinstance(x, bytes))


@pytest.mark.shared_server
def test_namespace_id_and_special_use_listing(imap):
    assert ok(imap.namespace()) == [b'(("" "/")) (("Other Users/" "/")) (("Shared/" "/"))']
    typ, _ = imap.xatom("ID", "NIL")
    assert typ == "OK"
    listing = b"\n".join(ok(imap.list()))
    for attribute in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk"):
        assert attribute in listing


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far."""
    fields = stat_fields(pid)
    assert fields is not None, f"no process {pid}"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _make_folders_on_disk(server, user: str, mailboxes: list[str]) -> None:
    """Maildir++ folders made straight in the store's directory (as a migration would leave
    them): thousands of CREATEs over IMAP, each fsync'd, take minutes."""
    user_dir = user_directory(os.path.join(server.data_dir, "mail"), user)
    for name in mailboxes:
        directory = folder_directory(user_dir, name)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(directory, sub))
        open(os.path.join(directory, "maildirfolder"), "wb").close()


def test_list_of_twelve_thousand_mailboxes_answers_each_with_its_children(server):
    """LIST's \\HasChildren was found by asking every other name of each one listed: 1.7 s of
    the server's event loop (every user's sessions waiting) for 4,000 mailboxes, some 15 s
    for 12,000. Now a set built once per LIST; each name keeps its attributes, including a
    name that is another's prefix without being its parent (many/box0010, many/box00100)."""
    flat = [f"many/box{i:05d}" for i in range(12_000)]
    extra = ["many/box00100/sub", "many/box0010", "deep/a/b"]
    _make_folders_on_disk(server, ALICE, flat + extra)
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=120)
    client.login(ALICE, PASSWORD)
    before = _cpu_seconds(server.process.pid)
    lines = ok(client.list('""', "*"))
    spent = _cpu_seconds(server.process.pid) - before
    listed = {}
    for line in lines:
        found = re.fullmatch(rb'\((.*?)\) "/" "?(.*?)"?', line)
        assert found, line
        listed[found[2].decode()] = found[1].decode()
    assert (
        len(listed) == 1 + 4 + 1 + 12_000 + len(extra) + 2
    )  # INBOX, 4 defaults, many, deep, deep/a
    assert listed["many"] == "\\Noselect \\HasChildren"
    assert listed["many/box00100"] == "\\HasChildren"
    assert listed["many/box00100/sub"] == "\\HasNoChildren"
    assert listed["many/box0010"] == "\\HasNoChildren"
    assert listed["many/box00101"] == "\\HasNoChildren"
    assert listed["many/box11999"] == "\\HasNoChildren"
    assert listed["deep"] == listed["deep/a"] == "\\Noselect \\HasChildren"
    assert listed["deep/a/b"] == "\\HasNoChildren"
    assert listed["Sent"] == "\\HasNoChildren \\Sent"
    children = ok(client.list('""', '"many/box001*" RETURN (CHILDREN)'))
    assert len(children) == 100 + 2  # box00100-box00199, box00100/sub, box0010
    for line in children:
        found = re.fullmatch(rb'\((.*?)\) "/" "?(.*?)"?', line)
        assert found and listed[found[2].decode()] == found[1].decode(), line
    # The server's CPU time, not the wall clock: other processes' load doesn't count.
    assert spent < 5, f"LIST of 12,000 mailboxes took {spent:.1f} s of the server's CPU"
    client.logout()


@pytest.mark.shared_server
def test_users_cannot_reach_each_others_mailboxes(server, imap):
    smtp_deliver(server, "Subject: for bob\r\n\r\nsecret\r\n", to="bob@example.test")
    for name in ("../bob", "../../example.test/bob", "~bob", "/etc", "INBOX/../../bob"):
        try:
            typ, _ = imap.status(name, "(MESSAGES)")
        except imaplib.IMAP4.error:
            typ = "NO"
        assert typ == "NO", name
    assert b"bob" not in b" ".join(ok(imap.list()))


@pytest.mark.shared_server
def test_literal_bomb_gets_no_continuation(server):
    s = socket.create_connection((H, listening_port(server, "imap")), 10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a1 LOGIN {ALICE} {PASSWORD}\r\n".encode())
    assert f.readline().startswith(b"a1 OK")
    s.sendall(b"a2 APPEND INBOX {4294967295}\r\n")
    assert f.readline().startswith(b"a2 NO [TOOBIG]")
    s.sendall(b"a3 NOOP\r\n")
    assert f.readline() == b"a3 OK NOOP completed\r\n"
    s.close()


@pytest.mark.shared_server
def test_imaps_with_implicit_tls(server):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = imaplib.IMAP4_SSL(H, listening_port(server, "imaps"), ssl_context=context, timeout=10)
    assert "AUTH=PLAIN" in client.capabilities
    client.login(ALICE, PASSWORD)
    ok(client.select("INBOX"))
    client.logout()


@pytest.mark.shared_server
def test_starttls_upgrades_the_connection(server):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    assert "STARTTLS" in client.capabilities
    ok(client.starttls(ssl_context=context))
    client.login(ALICE, PASSWORD)
    client.logout()


def test_recent_goes_to_one_of_several_selected_sessions(server, imap):
    """RFC 3501 §2.3.2, as imaptest's stress checks it: SMTP deliveries while three imaplib
    sessions have INBOX selected are each \\Recent in exactly one of them."""
    ok(imap.select("INBOX"))
    others = []
    for _ in range(2):
        other = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
        other.login(ALICE, PASSWORD)
        ok(other.select("INBOX"))
        others.append(other)
    sessions = [imap, *others]
    for i in range(4):
        smtp_deliver(server, f"Subject: r{i}\r\n\r\nx\r\n")
        for s in sessions[i % 3 :] + sessions[: i % 3]:  # a different one is told first each time
            ok(s.noop())
    owners: dict[bytes, int] = {}
    for n, s in enumerate(sessions):
        for line in ok(s.fetch("1:*", "(UID FLAGS)")):
            uid = re.search(rb"UID (\d+)", line)[1]
            if b"\\Recent" in line:
                assert uid not in owners, f"UID {uid} recent in sessions {owners[uid]} and {n}"
                owners[uid] = n
    assert sorted(owners) == [b"1", b"2", b"3", b"4"]
    assert b"RECENT 0" in ok(imap.status("INBOX", "(RECENT)"))[0]
    for other in others:
        other.logout()
