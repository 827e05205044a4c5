"""Maildir files with LF line ends, as Dovecot, procmail, mutt or mbsync write them, dropped into
the mailboxes of a running server: imaplib and poplib must see CRLF-only messages whose sizes
are the octets sent, found by header SEARCH, in INBOX and in a folder (issue 13, item 13)."""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import smtplib

import pytest

from tests.e2e.conftest import PASSWORD
from tests.imap.support import listening_port

H = "127.0.0.1"
ALICE = "alice@example.test"
pytestmark = pytest.mark.shared_server  # the tests only read what ``mailboxes`` drops in
CAROL = (
    b'From: "Carol Tanaka" <carol.tanaka@example.org>\n'
    b"Subject: lf-check\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\n"
    b"\n"
    b"line one\n"
    b"line two\n"
)
BIG = b"From: bob.tanaka@example.org\nSubject: big lf\n\n" + b"".join(
    b"line %06d of a message larger than one streamed chunk\n" % n for n in range(8000)
)
FOLDER = b"From: dave@example.org\nSubject: in a folder\n\nfiled by procmail\r\nmixed\n"


def crlf(text: bytes) -> bytes:
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def ok(response) -> list:
    typ, data = response
    assert typ == "OK", data
    return data


def literal(data: list, label: bytes) -> bytes:
    """The literal that follows ``label`` in an imaplib FETCH response."""
    for item in data:
        if isinstance(item, tuple) and label in item[0]:
            return item[1]
    raise AssertionError(f"no {label!r} in {data!r}")


def flat(data: list) -> bytes:
    return b"".join(b"".join(item) if isinstance(item, tuple) else item for item in data)


@pytest.fixture(scope="module")
def mailboxes(shared_server):
    """Alice's INBOX (one mail delivered by SMTP, so its index exists) and folder Lists, both
    opened once; then the LF files are dropped in, as into a running server's mailboxes."""
    server = shared_server
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as client:
        client.sendmail("x@remote.test", [ALICE], "Subject: first\r\n\r\nvia smtp\r\n")
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    ok(client.login(ALICE, PASSWORD))
    ok(client.create("Lists"))
    ok(client.select("Lists"))
    ok(client.select("INBOX"))
    client.logout()
    home = os.path.join(server.data_dir, "mail", "example.test", "alice")
    for directory, name, text in (
        (home, "1764756000.M1P1.acceptance:2,", CAROL),
        (home, "1764756001.M2P1.acceptance:2,S", BIG),
        (os.path.join(home, ".Lists"), "1764756002.M3P1.acceptance:2,", FOLDER),
    ):
        with open(os.path.join(directory, "cur", name), "wb") as f:
            f.write(text)
    return home


@pytest.fixture
def imap(server, mailboxes):
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    ok(client.login(ALICE, PASSWORD))
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def test_imap_finds_lf_messages_by_header_and_serves_them_crlf(imap):
    ok(imap.select("INBOX"))
    (found,) = ok(imap.uid("SEARCH", "FROM", '"carol.tanaka@example.org"'))
    assert len(found.split()) == 1
    uid = found.split()[0].decode()
    assert ok(imap.uid("SEARCH", "SUBJECT", "lf-check")) == [found.strip()]
    data = ok(imap.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])"))
    body = literal(data, b"BODY[]")
    assert body == crlf(CAROL) and b"\n" not in body.replace(b"\r\n", b"")
    assert int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0])[1]) == len(body)
    data = ok(imap.uid("FETCH", uid, "(ENVELOPE BODY.PEEK[HEADER.FIELDS (FROM)])"))
    assert b'"lf-check"' in data[0][0] and b'"Carol Tanaka"' in data[0][0]
    assert literal(data, b"HEADER.FIELDS") == crlf(CAROL.splitlines(True)[0] + b"\n")
    data = ok(imap.uid("FETCH", uid, "(BODY.PEEK[TEXT] BODY.PEEK[]<120.25> BODYSTRUCTURE)"))
    assert literal(data, b"BODY[TEXT]") == b"line one\r\nline two\r\n"
    assert literal(data, b"BODY[]<120>") == crlf(CAROL)[120:145]
    assert b'"7BIT" 20 2 ' in flat(data)  # octets and lines of the CRLF form


def test_imap_streams_a_large_lf_message_in_crlf_form(imap):
    ok(imap.select("INBOX"))
    (found,) = ok(imap.uid("SEARCH", "LARGER", str(len(BIG))))
    uid = found.split()[0].decode()  # its CRLF form is larger than the file
    data = ok(imap.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[]<300000.1000>)"))
    assert int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0])[1]) == len(crlf(BIG))
    assert literal(data, b"BODY[] ") == crlf(BIG)
    assert literal(data, b"BODY[]<300000>") == crlf(BIG)[300000:301000]
    (found,) = ok(imap.uid("SEARCH", "FROM", "bob.tanaka@example.org"))
    assert found.split() == [uid.encode()]


def test_imap_serves_lf_messages_in_a_folder(imap):
    ok(imap.select("Lists"))
    (found,) = ok(imap.uid("SEARCH", "SUBJECT", '"in a folder"'))
    uid = found.split()[0].decode()
    data = ok(imap.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])"))
    assert literal(data, b"BODY[]") == crlf(FOLDER)
    assert int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0])[1]) == len(crlf(FOLDER))


def test_pop3_lists_retrieves_and_tops_lf_messages_in_crlf_form(server, mailboxes):
    client = poplib.POP3(H, server.ports["pop3"], timeout=10)
    try:
        client.user(ALICE)
        client.pass_(PASSWORD)
        sizes = [int(line.split()[1]) for line in client.list()[1]]
        wanted = {len(crlf(CAROL)), len(crlf(BIG))}
        assert wanted <= set(sizes)
        for number, size in enumerate(sizes, 1):
            response, lines, octets = client.retr(number)
            assert int(response.split()[1]) == size
            # poplib counts each line's terminator as read: CRLF-only means two per line.
            assert octets == sum(len(line) + 2 for line in lines)
            text = b"\r\n".join(lines) + b"\r\n"
            assert len(text) == size
            if size == len(crlf(BIG)):
                assert text == crlf(BIG)
            if size == len(crlf(CAROL)):
                assert text == crlf(CAROL)
                response, top, octets = client.top(number, 1)
                assert top == [*crlf(CAROL).split(b"\r\n")[:4], b"line one"]
                assert octets == sum(len(line) + 2 for line in top)
    finally:
        client.quit()
