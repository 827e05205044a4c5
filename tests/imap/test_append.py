"""APPEND at the byte level (append.py): MULTIAPPEND (RFC 3502) stores every message or none,
answers APPENDUID with the UID set (RFC 4315), and checks each message before storing any."""

from __future__ import annotations

import json
import re

import pytest
from twisted.logger import capturedLogs

from tests.imap.support import ALICE, Session, make_factory
from tests.support.fixtures import make_world
from txmailhost.ops.eventlog import PRERENDERED, format_event

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


def test_an_append_is_logged_as_one_prerendered_event_with_its_fields(alice):
    """One event per APPEND, its text rendered once by the session (eventlog.PRERENDERED),
    not by each log observer's str.format; the fields stay on it for the JSON log."""
    with capturedLogs() as events:
        reply = alice.cmd(b"b APPEND Drafts " + literal(ONE) + b" " + literal(TWO))
    assert reply.startswith(b"b OK [APPENDUID ")
    (event,) = [e for e in events if e.get("line", "").startswith("imap append ")]
    assert event["log_format"] is PRERENDERED
    size = len(ONE) + len(TWO)
    assert event["line"] == f"imap append {ALICE} Drafts uid 1:2 ({size} octets)"
    assert format_event(event, "text").endswith("] " + event["line"])
    record = json.loads(format_event(event, "json"))
    assert record["text"] == event["line"]
    fields = (record["user"], record["mailbox"], record["uids"], record["size"])
    assert fields == (ALICE, "Drafts", "1:2", size)


# -- BINARY (RFC 3516) ---------------------------------------------------------------------------

BINARY_MESSAGE = (
    b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"\x00-\xe4\n\r\n\n"
)


def test_a_literal8_append_is_stored_as_base64_and_fetched_back_as_binary(alice):
    assert b"BINARY" in alice.cmd("c CAPABILITY")
    reply = alice.cmd(b"b APPEND INBOX ~{%d+}\r\n" % len(BINARY_MESSAGE) + BINARY_MESSAGE)
    assert b"b OK [APPENDUID" in reply
    alice.cmd("c SELECT INBOX")
    body = alice.cmd("d FETCH 1 BODY.PEEK[1]")
    assert b"\x00" not in body and b"AC3kCg0KCg==" in body  # readable by any IMAP4rev1 client
    assert b"Content-Transfer-Encoding: base64" in alice.cmd("e FETCH 1 BODY.PEEK[HEADER]")
    assert alice.cmd("f FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])") == (
        b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\x00-\xe4\n\r\n\n)\r\n"
        b"f OK FETCH completed\r\n"
    )
    assert b"\\Seen" not in alice.cmd("g FETCH 1 FLAGS")  # PEEK and SIZE leave \Seen alone


def test_binary_fetch_decodes_base64_and_quoted_printable_parts(alice):
    message = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n  aGVs \r\nbG8gd29y\r\nbGQ=\r\n"
        b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nfoo = \t\r\n=62ar  \r\nx=3D1\r\n"
        b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n"
    )
    alice.cmd(b"b APPEND INBOX {%d+}\r\n" % len(message) + message)
    alice.cmd("c SELECT INBOX")
    assert alice.cmd("d FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2]<4.3>)") == (
        b"* 1 FETCH (BINARY[1] {11}\r\nhello world BINARY[2]<4> {3}\r\nbar)\r\n"
        b"d OK FETCH completed\r\n"
    )
    assert alice.cmd("e FETCH 1 BINARY.SIZE[2]") == (
        b"* 1 FETCH (BINARY.SIZE[2] 12)\r\ne OK FETCH completed\r\n"  # "foo bar\\r\\nx=1"
    )
    assert alice.cmd("f FETCH 1 BINARY.PEEK[3]") == (
        b"f NO [UNKNOWN-CTE] unknown Content-Transfer-Encoding\r\n"
    )
    assert b"\\Seen" in alice.cmd("g FETCH 1 BINARY[1]")  # without PEEK it marks \Seen


@pytest.mark.parametrize("item", ["BINARY[1.MIME]", "BINARY[HEADER]", "BINARY.SIZE[1]<0.5>"])
def test_binary_takes_part_numbers_only(alice, item):
    alice.cmd(b"b APPEND INBOX {%d+}\r\n" % len(ONE) + ONE)
    alice.cmd("c SELECT INBOX")
    assert alice.cmd(f"d FETCH 1 {item}").startswith(b"d BAD ")


# -- CATENATE (RFC 4469) -------------------------------------------------------------------------

FORWARDED = b"From: a@example.test\r\nSubject: orig\r\n\r\nthe body\r\n"


@pytest.fixture
def original(alice):
    """(session, UIDVALIDITY) with FORWARDED as UID 1 of INBOX."""
    reply = alice.cmd(b"o APPEND INBOX " + literal(FORWARDED))
    return alice, int(re.search(rb"APPENDUID (\d+) 1\]", reply)[1])


def test_catenate_builds_a_message_from_text_and_urls(original):
    alice, validity = original
    assert b"CATENATE" in alice.cmd("c CAPABILITY")
    head = b"From: me@example.test\r\nSubject: fwd\r\n\r\n"
    reply = alice.cmd(
        b"b APPEND Drafts (\\Draft) CATENATE (TEXT "
        + literal(head)
        + b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=TEXT"' % validity
        + b' URL "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)/;PARTIAL=0.8" TEXT '
        + literal(b"\r\n-- \r\nme\r\n")
        + b")"
    )
    assert re.fullmatch(rb"b OK \[APPENDUID \d+ 1\] APPEND completed\r\n", reply)
    alice.cmd("c SELECT Drafts")
    assert alice.cmd("d FETCH 1 BODY.PEEK[]") == (
        b"* 1 FETCH (BODY[] {%d}\r\n" % (len(head) + 10 + 8 + 11)
        + head
        + b"the body\r\nSubject:\r\n-- \r\nme\r\n)\r\nd OK FETCH completed\r\n"
    )


def test_catenate_with_a_bad_url_stores_nothing(original):
    alice, validity = original
    for url in (
        b"/INBOX;UIDVALIDITY=%d/;UID=1" % (validity + 1),  # another incarnation
        b"/INBOX/;UID=99",  # no such message
        b"/Nope/;UID=1",  # no such mailbox
        b"/INBOX/;UID=1/;SECTION=NOPE",  # no such section
        b"imap://host/../../bob@example.test/;UID=1",  # not a mailbox name
        b"not a url",
    ):
        reply = alice.cmd(b'b APPEND Drafts CATENATE (TEXT {3+}\r\nhi\n URL "%s")' % url)
        assert reply.startswith(b"b NO [BADURL "), (url, reply)
    assert b"MESSAGES 0" in alice.cmd("c STATUS Drafts (MESSAGES)")


def test_catenate_to_a_missing_mailbox_is_trycreate_before_urls_are_read(original):
    alice, _ = original
    reply = alice.cmd(b'b APPEND Nope CATENATE (URL "/INBOX;UIDVALIDITY=1/;UID=1")')
    assert reply.startswith(b"b NO [TRYCREATE]")


def test_catenate_and_multiappend_together(original):
    alice, _ = original
    reply = alice.cmd(
        b'b APPEND Drafts CATENATE (URL "/INBOX/;UID=1") (\\Answered) ' + literal(ONE)
    )
    assert re.fullmatch(rb"b OK \[APPENDUID \d+ 1:2\] APPEND completed\r\n", reply)
    alice.cmd("c SELECT Drafts")
    fetched = alice.cmd("d FETCH 1:2 BODY.PEEK[]")
    assert FORWARDED in fetched and ONE in fetched


def test_catenate_result_larger_than_appendlimit_is_toobig(tmp_path, backend):
    world = make_world(tmp_path, backend)
    world.add_user(ALICE)
    s = Session(make_factory(world, max_literal_size=20))
    s.login()
    s.cmd(b"o APPEND INBOX " + literal(b"Subject: x\r\n\r\n0123\r\n"))  # 20 octets
    reply = s.cmd(b'b APPEND INBOX CATENATE (URL "/INBOX/;UID=1" TEXT {2+}\r\nab)')
    assert reply.startswith(b"b NO [TOOBIG]")


def test_the_catenate_messages_of_one_append_are_bounded_together(tmp_path, backend):
    """They are built in memory before anything is stored: each within APPENDLIMIT, 40 of
    them from a 7 KB command grew the server by 322 MiB (and past the user's quota)."""
    world = make_world(tmp_path, backend)
    world.add_user(ALICE)
    s = Session(make_factory(world, max_literal_size=50))
    s.login()
    s.cmd(b"o APPEND INBOX " + literal(b"Subject: x\r\n\r\n0123\r\n"))  # 20 octets
    three = b' CATENATE (URL "/INBOX/;UID=1")' * 3  # 60 octets in all
    assert s.cmd(b"b APPEND Drafts" + three).startswith(b"b NO [TOOBIG]")
    assert s.cmd(b"c APPEND Drafts" + three[: len(three) * 2 // 3]).startswith(b"c OK")
    assert b"MESSAGES 2" in s.cmd("d STATUS Drafts (MESSAGES)")


def test_at_most_64_messages_in_one_append(original):
    alice, _ = original
    many = b' CATENATE (URL "/INBOX/;UID=1")' * 65
    assert alice.cmd(b"b APPEND Drafts" + many).startswith(b"b NO [LIMIT]")
    assert b"MESSAGES 0" in alice.cmd("c STATUS Drafts (MESSAGES)")
    assert alice.cmd(b"d APPEND Drafts" + many[: len(many) // 65 * 64]).startswith(b"d OK")


NUL_MESSAGE = b"Subject: nul\r\n\r\nbefore\x00after\r\n"


@pytest.mark.parametrize("item", ["BODY.PEEK[]", "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "RFC822"])
def test_a_stored_nul_is_sent_as_0x80_in_a_literal(alice, item):
    """RFC 3501 §9: a ``{n}`` literal holds CHAR8, %x01-ff. A message stored with a NUL (an
    APPEND of such a literal, or mail that came over SMTP so) was sent back with it, and a
    client reading C strings stops there. As Dovecot: 0x80, the same length."""
    alice.cmd(b"a APPEND INBOX " + literal(NUL_MESSAGE))
    alice.cmd("s SELECT INBOX")
    reply = alice.cmd(f"b FETCH 1 {item}")
    assert b"\x00" not in reply and b"before\x80after" in reply
    size = len(NUL_MESSAGE) if item in ("BODY.PEEK[]", "RFC822") else len(b"before\x00after\r\n")
    assert b"{%d}\r\n" % size in reply
    assert b"before\x00after" in alice.cmd("c FETCH 1 BINARY.PEEK[1]")  # as ~{n}: NUL allowed
