"""FETCH and SEARCH, at the byte level, of a Maildir file with LF line ends that another tool put
into the INBOX: every literal in CRLF form, sizes and offsets of that form (RFC 3501 §2.2)."""

from __future__ import annotations

import os

import pytest

from tests.imap.support import ALICE, Session, make_factory
from tests.support.fixtures import make_world
from txmailhost.store.maildir import user_directory

LF = b"From: Bob Tanaka <bob.tanaka@example.org>\nSubject: lf-check\n\nline one\nline two\n"
CRLF = LF.replace(b"\n", b"\r\n")


@pytest.fixture
def alice(tmp_path):
    world = make_world(tmp_path)
    world.add_user(ALICE)
    path = os.path.join(user_directory(world.store.root, ALICE), "cur", "1764756000.M1P1.x:2,")
    with open(path, "wb") as f:
        f.write(LF)
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    yield s
    s.close()


def test_fetch_of_an_lf_file_sends_crlf_literals_and_crlf_sizes(alice):
    assert alice.cmd("b FETCH 1 (RFC822.SIZE BODY.PEEK[])") == (
        b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (len(CRLF), len(CRLF))
        + CRLF
        + b")\r\nb OK FETCH completed\r\n"
    )


def test_fetch_header_fields_text_and_partial_of_an_lf_file(alice):
    assert alice.cmd(
        "b FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT] BODY.PEEK[]<40.30>)"
    ) == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {21}\r\nSubject: lf-check\r\n\r\n"
        b" BODY[TEXT] {20}\r\nline one\r\nline two\r\n"
        b" BODY[]<40> {30}\r\n" + CRLF[40:70] + b")\r\nb OK FETCH completed\r\n"
    )


def test_envelope_and_bodystructure_of_an_lf_file(alice):
    reply = alice.cmd("b FETCH 1 (ENVELOPE BODYSTRUCTURE)")
    assert b'"lf-check"' in reply and b'(("Bob Tanaka" NIL "bob.tanaka" "example.org"))' in reply
    assert b'"7BIT" 20 2 NIL NIL NIL NIL)' in reply  # octets and lines of the CRLF form


def test_search_by_header_and_size_finds_an_lf_file(alice):
    assert alice.cmd('b UID SEARCH FROM "bob.tanaka@example.org"') == (
        b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
    )
    assert alice.cmd(f"b SEARCH SUBJECT lf-check LARGER {len(LF)}") == (
        b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
    )
