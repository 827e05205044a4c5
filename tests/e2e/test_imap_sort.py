"""SORT, THREAD, ESORT and search contexts on the real server, driven by Python's imaplib."""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import threading
import time

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"


def msg(subject: str, date: str, extra: str = "") -> bytes:
    return (
        f"From: Bob <bob@example.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\n{extra}\r\nbody\r\n"
    ).encode()


def ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


@pytest.fixture
def imap(server):
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    client.login(ALICE, PASSWORD)
    ok(client.create("Sorted"))
    for raw in (
        msg("lunch", "Mon, 2 Feb 2026 10:00:00 +0000", "Message-ID: <1@x>\r\n"),
        msg("Re: lunch", "Mon, 2 Feb 2026 12:00:00 +0000", "In-Reply-To: <1@x>\r\n"),
        msg("agenda", "Mon, 2 Feb 2026 11:00:00 +0000"),
    ):
        ok(client.append("Sorted", None, None, raw))
    ok(client.select("Sorted"))
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def test_sort_and_thread_with_imaplib(imap):
    assert ok(imap.sort("(REVERSE DATE)", "UTF-8", "ALL")) == [b"2 3 1"]
    assert ok(imap.sort("(SUBJECT)", "UTF-8", "ALL")) == [b"3 1 2"]
    assert ok(imap.uid("SORT", "(DISPLAYFROM DATE)", "UTF-8", "ALL")) == [b"1 3 2"]
    assert ok(imap.thread("REFERENCES", "UTF-8", "ALL")) == [b"(1 2)(3)"]
    assert ok(imap.thread("ORDEREDSUBJECT", "US-ASCII", "ALL")) == [b"(1 2)(3)"]


def test_esort_partial_and_update_with_imaplib(server, imap):
    # (imaplib's sort() would wrap RETURN in the criteria's parentheses; uid() passes it on)
    ok(imap.uid("SORT", "RETURN", "(PARTIAL 1:2 COUNT)", "(DATE)", "UTF-8", "ALL"))
    _name, (esort,) = imap.response("ESEARCH")
    assert esort.endswith(b"UID COUNT 3 PARTIAL (1:2 1,3)")
    ok(imap.uid("SEARCH", "RETURN", "(UPDATE)", "UNSEEN"))
    other = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    try:
        other.login(ALICE, PASSWORD)
        ok(other.select("Sorted"))
        ok(other.store("2", "+FLAGS", "(\\Seen)"))
    finally:
        other.logout()
    ok(imap.noop())
    _name, updates = imap.response("ESEARCH")
    assert any(line.endswith(b"UID REMOVEFROM (0 2)") for line in updates), updates


def test_a_crafted_subject_holds_up_no_other_session(server):
    """80 KB of folded "(fwd)" lines in a Subject, which anyone can send: SORT, THREAD, FETCH
    THREADID and SEARCH THREADID answer, and bob's NOOPs meanwhile are answered promptly.
    SORT, FETCH and SEARCH each took 11 s of the reactor's CPU before (bob waited 18-29 s)."""
    folded = "x" + "\r\n (fwd)" * 10_000
    crafted = f"From: x@remote.test\r\nTo: {ALICE}\r\nSubject: {folded}\r\n"
    crafted += "Message-ID: <crafted@remote.test>\r\n\r\nhello\r\n"
    with smtplib.SMTP(H, server.ports["smtp"], timeout=60) as smtp:
        smtp.sendmail("x@remote.test", [ALICE], crafted)
    alice = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=60)
    alice.login(ALICE, PASSWORD)
    ok(alice.append("INBOX", None, None, msg("a reply (fwd)", "Mon, 2 Feb 2015 10:00:00 +0000")))
    ok(alice.select("INBOX"))
    bob = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=60)
    bob.login("bob@example.test", PASSWORD)
    waits: list[float] = []
    done = threading.Event()

    def noops() -> None:
        while True:
            start = time.monotonic()
            try:
                ok(bob.noop())
            finally:
                waits.append(time.monotonic() - start)
            if done.wait(0.05):
                return

    prober = threading.Thread(target=noops)
    prober.start()
    try:
        assert ok(alice.sort("(SUBJECT)", "UTF-8", "ALL")) == [b"2 1"]
        assert ok(alice.thread("ORDEREDSUBJECT", "UTF-8", "ALL")) == [b"(2)(1)"]
        (fetched,) = ok(alice.fetch("1", "(THREADID)"))
        thread = re.search(rb"THREADID \((T\w+)\)", fetched)[1]
        assert ok(alice.search(None, "THREADID", thread.decode())) == [b"1"]
    finally:
        done.set()
        prober.join()
        alice.logout()
        bob.logout()
    assert max(waits) < 5, waits
