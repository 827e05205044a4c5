"""SAVEDATE (RFC 8514) and OBJECTID (RFC 8474) on the real server, driven by Python's imaplib
over loopback: what a client caches by these ids stays true across a restart, a COPY, a MOVE
and a RENAME."""

from __future__ import annotations

import imaplib
import re
import time

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"
MSG = b"From: bob@example.test\r\nSubject: kept\r\nMessage-ID: <kept@example.test>\r\n\r\nbody\r\n"
OLD = '"01-Jan-2001 10:00:00 +0000"'

imaplib.Commands.setdefault("MOVE", ("SELECTED",))


def ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def login(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    caps = ok(client.capability())[-1].split()
    assert b"SAVEDATE" in caps and b"OBJECTID" in caps
    return client


def ids(client: imaplib.IMAP4, mailbox: str) -> tuple[bytes, list[bytes]]:
    """(MAILBOXID, the FETCH (EMAILID THREADID SAVEDATE INTERNALDATE) line of each message)."""
    status = ok(client.status(mailbox, "(MAILBOXID)"))[0]
    ok(client.select(mailbox))
    lines = ok(client.fetch("1:*", "(EMAILID THREADID SAVEDATE INTERNALDATE)"))
    return re.search(rb"MAILBOXID \((\S+)\)", status)[1], lines


def test_imaplib_ids_and_save_dates_survive_a_restart_copy_move_and_rename(
    server_template, tmp_path
):
    from tests.e2e.conftest import start_from_template

    proc = start_from_template(server_template, str(tmp_path / "data"))
    try:
        client = login(proc)
        ok(client.create("Keep"))
        ok(client.append("Keep", None, OLD, MSG))
        before = ids(client, "Keep")
        (line,) = before[1]
        assert b'INTERNALDATE "01-Jan-2001 10:00:00 +0000"' in line
        assert time.strftime("%d-%b-%Y", time.gmtime()).encode() in line  # the SAVEDATE
        emailid = re.search(rb"EMAILID \((\S+)\)", line)[1]
        client.logout()
        proc.stop()
        proc.start()

        client = login(proc)
        assert ids(client, "Keep") == before  # nothing in memory only
        time.sleep(1.1)  # save dates are shown to the second
        ok(client.copy("1", "Trash"))
        ok(client._simple_command("MOVE", "1", "Junk"))
        client.close()
        mailboxids = {}
        for mailbox in ("Trash", "Junk"):
            mailboxids[mailbox], (copied,) = ids(client, mailbox)
            assert re.search(rb"EMAILID \((\S+)\)", copied)[1] == emailid
            assert b"THREADID (T" in copied and b'"01-Jan-2001 10:00:00 +0000"' in copied
            assert copied != line  # saved there later than into Keep
            client.close()
        ok(client.rename("Junk", "Junk2"))
        status = ok(client.status("Junk2", "(MAILBOXID)"))[0]
        assert re.search(rb"MAILBOXID \((\S+)\)", status)[1] == mailboxids["Junk"]
        ok(client.select("Junk2"))
        assert ok(client.uid("SEARCH", "EMAILID", emailid.decode())) == [b"1"]
        client.logout()
    finally:
        proc.stop()
