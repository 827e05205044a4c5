"""IMAP4rev2 (RFC 9051) beside IMAP4rev1, SEARCHRES (RFC 5182) and UTF8=ACCEPT (RFC 6855) at
the byte level: what ``ENABLE IMAP4rev2`` changes in a session, what it leaves alone in others,
the saved search result ``$``, and UTF-8 mailbox names and APPEND."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, Session, deliver, make_factory

MSG = b"From: bob@example.test\r\nSubject: hello\r\n\r\nbody\r\n"
UTF8_MSG = "From: Jösé <bob@example.test>\r\nSubject: Grüße\r\n\r\nünïcode\r\n".encode()


def session(world, *enable: str) -> Session:
    s = Session(make_factory(world))
    assert b"a OK" in s.login()
    if enable:
        reply = s.cmd("e ENABLE " + " ".join(enable))
        assert reply.endswith(b"e OK ENABLE completed\r\n")
    return s


def test_both_revisions_are_advertised_before_and_after_login(world):
    s = Session(make_factory(world))
    assert b" IMAP4rev1 IMAP4rev2 " in s.greeting
    caps = s.login()
    for cap in (b"IMAP4rev2", b"SEARCHRES", b"UTF8=ACCEPT", b"ESEARCH", b"STATUS=SIZE"):
        assert b" " + cap + b" " in caps or b" " + cap + b"]" in caps


def test_enable_imap4rev2_is_acknowledged_once(world):
    s = session(world)
    assert s.cmd("b ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\nb OK ENABLE completed\r\n"
    assert s.cmd("c ENABLE IMAP4rev2") == b"* ENABLED\r\nc OK ENABLE completed\r\n"


def test_rev2_select_has_no_recent_nor_unseen_and_gives_the_list_line(world):
    deliver(world, ALICE, MSG)
    s = session(world, "IMAP4rev2")
    reply = s.cmd("b SELECT INBOX")
    assert b"RECENT" not in reply
    assert b"[UNSEEN" not in reply
    assert b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n' in reply
    assert b"* 1 EXISTS\r\n" in reply
    assert b"\\Recent" not in s.cmd("c FETCH 1 FLAGS")


def test_enabling_rev2_while_selected_drops_recent_from_fetch(world):
    deliver(world, ALICE, MSG)
    s = session(world)
    s.cmd("b SELECT INBOX")
    assert b"\\Recent" in s.cmd("c FETCH 1 FLAGS")
    s.cmd("d ENABLE IMAP4rev2")
    assert s.cmd("e FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS ())\r\ne OK FETCH completed\r\n"


def test_a_rev2_session_leaves_recent_to_a_rev1_session(world):
    deliver(world, ALICE, MSG)
    rev2 = session(world, "IMAP4rev2")
    rev2.cmd("b SELECT INBOX")
    rev1 = session(world)
    assert b"* 1 RECENT\r\n" in rev1.cmd("b SELECT INBOX")


def test_rev1_sessions_keep_rfc3501_answers(world):
    deliver(world, ALICE, MSG)
    s = session(world)
    reply = s.cmd("b SELECT INBOX")
    assert b"* 1 RECENT\r\n" in reply and b"* LIST" not in reply
    assert s.cmd("c SEARCH ALL") == b"* SEARCH 1\r\nc OK SEARCH completed\r\n"


def test_rev2_new_mail_is_exists_without_recent(world):
    s = session(world, "IMAP4rev2")
    s.cmd("b SELECT INBOX")
    deliver(world, ALICE, MSG)
    assert s.cmd("c NOOP") == b"* 1 EXISTS\r\nc OK NOOP completed\r\n"


def test_rev2_search_answers_esearch(world):
    for _ in range(3):
        deliver(world, ALICE, MSG)
    s = session(world, "IMAP4rev2")
    s.cmd("b SELECT INBOX")
    assert s.cmd("c SEARCH ALL") == b'* ESEARCH (TAG "c") ALL 1:3\r\nc OK SEARCH completed\r\n'
    assert s.cmd("d UID SEARCH 2") == b'* ESEARCH (TAG "d") UID ALL 2\r\nd OK SEARCH completed\r\n'
    assert s.cmd("e SEARCH DELETED") == b'* ESEARCH (TAG "e")\r\ne OK SEARCH completed\r\n'


def test_rev2_status_has_deleted_and_size_but_no_recent(world):
    deliver(world, ALICE, MSG)
    deliver(world, ALICE, MSG)
    s = session(world, "IMAP4rev2")
    s.cmd("b SELECT INBOX")
    s.cmd("c STORE 2 +FLAGS (\\Deleted)")
    reply = s.cmd("d STATUS INBOX (MESSAGES DELETED SIZE)")
    assert reply == (
        b'* STATUS "INBOX" (MESSAGES 2 DELETED 1 SIZE %d)\r\nd OK STATUS completed\r\n'
        % (2 * len(MSG))
    )
    assert s.cmd("e STATUS INBOX (RECENT)").startswith(b"e BAD ")


def test_rev2_select_of_another_mailbox_says_closed(world):
    s = session(world, "IMAP4rev2")
    s.cmd("b SELECT INBOX")
    assert s.cmd("c EXAMINE Sent").startswith(b"* OK [CLOSED] previous mailbox closed\r\n")


# -- SEARCHRES (RFC 5182) ----------------------------------------------------------------------


@pytest.fixture
def five(world):
    for i in range(5):
        deliver(world, ALICE, MSG.replace(b"hello", b"hello %d" % i))
    s = session(world)
    s.cmd("b SELECT INBOX")
    return s


def test_search_return_save_alone_answers_nothing_and_dollar_names_the_result(five):
    assert five.cmd("c SEARCH RETURN (SAVE) 2:4") == b"c OK SEARCH completed, result saved\r\n"
    reply = five.cmd("d FETCH $ (UID)")
    assert re.findall(rb"\* (\d+) FETCH", reply) == [b"2", b"3", b"4"]
    assert five.cmd("e UID SEARCH UID $") == b"* SEARCH 2 3 4\r\ne OK SEARCH completed\r\n"


def test_save_with_min_keeps_only_the_minimum(five):
    reply = five.cmd("c SEARCH RETURN (SAVE MIN) 2:4")
    assert reply == b'* ESEARCH (TAG "c") MIN 2\r\nc OK SEARCH completed\r\n'
    assert five.cmd("d SEARCH $") == b"* SEARCH 2\r\nd OK SEARCH completed\r\n"


def test_dollar_follows_expunges_and_is_empty_after_a_new_select(five):
    five.cmd("c UID SEARCH RETURN (SAVE) 3:5")
    five.cmd("d STORE 3 +FLAGS (\\Deleted)")
    five.cmd("e EXPUNGE")
    assert five.cmd("f UID SEARCH $") == b"* SEARCH 4 5\r\nf OK SEARCH completed\r\n"
    five.cmd("g SELECT INBOX")
    assert five.cmd("h SEARCH $") == b"* SEARCH\r\nh OK SEARCH completed\r\n"


def test_store_and_copy_take_dollar(five):
    five.cmd("c SEARCH RETURN (SAVE) SUBJECT 3")
    assert b"\\Flagged" in five.cmd("d STORE $ +FLAGS (\\Flagged)")
    assert b"[COPYUID" in five.cmd("e COPY $ Trash")


def test_save_with_sort_or_partial_is_bad(five):
    assert five.cmd("c SORT RETURN (SAVE) (DATE) UTF-8 ALL").startswith(b"c BAD ")
    assert five.cmd("d SEARCH RETURN (SAVE PARTIAL 1:2) ALL").startswith(b"d BAD ")


def test_dollar_is_a_sequence_set_only_alone(five):
    assert five.cmd("c FETCH $,1 (UID)").startswith(b"c BAD ")


# -- UTF8=ACCEPT (RFC 6855) --------------------------------------------------------------------


def test_utf8_names_after_enable_and_modified_utf7_before(world):
    s = session(world)
    assert s.cmd("b CREATE &AMk-t&AOk-").endswith(b"] CREATE completed\r\n")
    assert b'"&AMk-t&AOk-"' in s.cmd('c LIST "" "*"')
    assert s.cmd("d ENABLE UTF8=ACCEPT") == b"* ENABLED UTF8=ACCEPT\r\nd OK ENABLE completed\r\n"
    assert '"Été"'.encode() in s.cmd('e LIST "" "*"')
    assert s.cmd('f CREATE "Ärger&Co"'.encode()).endswith(b"] CREATE completed\r\n")
    assert '* STATUS "Ärger&Co" (MESSAGES 0)'.encode() in s.cmd(
        'g STATUS "Ärger&Co" (MESSAGES)'.encode()
    )
    other = session(world)
    assert b'"&AMQ-rger&-Co"' in other.cmd('b LIST "" "*"')


def test_invalid_utf8_name_is_refused(world):
    s = session(world, "UTF8=ACCEPT")
    assert s.cmd(b'b CREATE "\xff\xfe"').startswith(b"b NO ")


def test_append_utf8_literal8_stores_the_message_as_it_came(world):
    s = session(world, "UTF8=ACCEPT")
    assert s.send(b"b APPEND INBOX UTF8 (~{%d}\r\n" % len(UTF8_MSG)).startswith(b"+ ")
    assert b"b OK [APPENDUID" in s.send(UTF8_MSG + b")\r\n")
    s.cmd("c SELECT INBOX")
    assert UTF8_MSG in s.cmd("d FETCH 1 BODY.PEEK[]")
    reply = s.cmd('e SEARCH CHARSET UTF-8 SUBJECT "Grüße"'.encode())
    assert reply == b"* SEARCH 1\r\ne OK SEARCH completed\r\n"


def test_append_utf8_without_enable_is_bad(world):
    s = session(world)
    reply = s.send(b"b APPEND INBOX UTF8 (~{5+}\r\nhello)\r\n")
    assert reply.startswith(b"b BAD ")
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"
