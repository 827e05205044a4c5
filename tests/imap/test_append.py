"""APPEND at the byte level (append.py): MULTIAPPEND (RFC 3502) stores every message or none,
answers APPENDUID with the UID set (RFC 4315), and checks each message before storing any."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, Session, make_factory
from tests.support.fixtures import make_world

ONE = b"Subject: one\r\n\r\nfirst\r\n"
TWO = b"Subject: two\r\n\r\nsecond\r\n"


@pytest.fixture
def alice(tmp_path, backend):
    world = make_world(tmp_path, backend)
    world.add_user(ALICE)
    s = Session(make_factory(world))
    s.login()
    yield s
    s.close()


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def test_multiappend_stores_every_message_with_its_own_flags_and_date(alice):
    assert b"MULTIAPPEND" in alice.cmd("c CAPABILITY")
    reply = alice.cmd(
        b"b APPEND Drafts (\\Seen) "
        + literal(ONE)
        + b' (\\Draft $Work) "05-Mar-2024 10:00:00 +0100" '
        + literal(TWO)
    )
    assert re.fullmatch(rb"b OK \[APPENDUID \d+ 1:2\] APPEND completed\r\n", reply)
    alice.cmd("d SELECT Drafts")
    fetched = alice.cmd("e FETCH 1:2 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    flags = dict(re.findall(rb"\* (\d) FETCH \(FLAGS \(([^)]*)\)", fetched))
    assert set(flags[b"1"].split()) == {b"\\Recent", b"\\Seen"}
    assert set(flags[b"2"].split()) == {b"\\Recent", b"\\Draft", b"$Work"}
    assert b'"05-Mar-2024 09:00:00 +0000"' in fetched
    assert fetched.index(b"Subject: one") < fetched.index(b"Subject: two")


def test_multiappend_with_synchronizing_literals_asks_for_each(alice):
    assert alice.cmd(b"b APPEND INBOX {%d}" % len(ONE)) == b"+ Ready for literal data\r\n"
    assert alice.send(ONE + b" {%d}\r\n" % len(TWO)) == b"+ Ready for literal data\r\n"
    assert b"b OK [APPENDUID" in alice.send(TWO + b"\r\n")
    assert b"MESSAGES 2" in alice.cmd("c STATUS INBOX (MESSAGES)")


def test_multiappend_with_one_bad_message_stores_none(alice):
    reply = alice.cmd(b"b APPEND INBOX " + literal(ONE) + b" " + literal(b""))
    assert reply == b"b NO empty message\r\n"
    reply = alice.cmd(b'b APPEND INBOX {3+}\r\none "not-a-date" ' + literal(TWO))
    assert reply.startswith(b"b BAD ")
    assert b"MESSAGES 0" in alice.cmd("c STATUS INBOX (MESSAGES)")


def test_multiappend_to_a_missing_mailbox_is_trycreate(alice):
    reply = alice.cmd(b"b APPEND Nope " + literal(ONE) + b" " + literal(TWO))
    assert reply.startswith(b"b NO [TRYCREATE]")
