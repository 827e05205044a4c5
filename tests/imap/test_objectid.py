"""SAVEDATE (RFC 8514), OBJECTID (RFC 8474) and the failing-SAVE rule of SEARCHRES (RFC 5182)
at the byte level, over every store backend: the save date apart from INTERNALDATE, EMAILID
through COPY and MOVE, MAILBOXID through RENAME, THREADID from References, the SEARCH keys."""

from __future__ import annotations

import re
import time

import pytest

from tests.imap.support import ALICE, Session, make_factory

ROOT = b"From: bob@example.test\r\nSubject: plan\r\nMessage-ID: <root@example.test>\r\n\r\nhi\r\n"
REPLY = (
    b"From: alice@example.test\r\nSubject: Re: plan\r\nMessage-ID: <r1@example.test>\r\n"
    b"In-Reply-To: <root@example.test>\r\nReferences: <root@example.test>\r\n\r\nok\r\n"
)
DEEP = (
    b"Subject: Re: plan\r\nMessage-ID: <r2@example.test>\r\n"
    b"References: <root@example.test> <r1@example.test>\r\n\r\nfine\r\n"
)
OTHER = b"Subject: lunch\r\nMessage-ID: <lunch@example.test>\r\n\r\nnoon\r\n"
BARE = b"Subject: no ids at all\r\n\r\nbody\r\n"
OLD = "01-Jan-2001 10:00:00 +0000"
EMAILID = re.compile(rb"EMAILID \(([A-Za-z0-9_-]+)\)")
THREADID = re.compile(rb"THREADID (\(([A-Za-z0-9_-]+)\)|NIL)")
MAILBOXID = re.compile(rb"MAILBOXID \(([A-Za-z0-9_-]+)\)")


def session(world) -> Session:
    s = Session(make_factory(world))
    assert b"a OK" in s.login()
    return s


def append(s: Session, message: bytes, mailbox: str = "INBOX", date: str = OLD) -> bytes:
    reply = s.send(
        f'x APPEND {mailbox} "{date}" {{{len(message)}+}}\r\n'.encode() + message + b"\r\n"
    )
    assert b"x OK" in reply, reply
    return reply


@pytest.fixture
def box(world):
    s = session(world)
    for message in (ROOT, REPLY, DEEP, OTHER, BARE):
        append(s, message)
    s.cmd("b SELECT INBOX")
    return s


def today() -> str:
    return time.strftime("%d-%b-%Y", time.gmtime())


def test_both_capabilities_are_advertised_after_login(world):
    caps = Session(make_factory(world)).login()
    assert b" SAVEDATE" in caps and b" OBJECTID" in caps


# -- SAVEDATE ------------------------------------------------------------------------------------


def test_savedate_is_when_the_message_was_saved_not_its_internaldate(box):
    reply = box.cmd("c FETCH 1 (INTERNALDATE SAVEDATE)")
    assert b'INTERNALDATE "01-Jan-2001 10:00:00 +0000"' in reply
    saved = re.search(rb'SAVEDATE "(\d\d-\w{3}-\d{4}) ', reply)
    assert saved and saved[1].decode() == today()


def test_a_copy_keeps_internaldate_and_emailid_but_is_saved_anew(box):
    before = box.cmd("c FETCH 1 (EMAILID SAVEDATE)")
    time.sleep(1.1)  # the save date is shown to the second
    assert b"OK [COPYUID" in box.cmd("d COPY 1 Trash")
    box.cmd("e SELECT Trash")
    after = box.cmd("f FETCH 1 (EMAILID SAVEDATE INTERNALDATE)")
    assert EMAILID.search(after)[1] == EMAILID.search(before)[1]
    assert b'INTERNALDATE "01-Jan-2001 10:00:00 +0000"' in after
    saved = re.compile(rb'SAVEDATE ("[^"]+")')
    assert saved.search(after)[1] != saved.search(before)[1]


def test_search_saved_keys_use_the_save_date(box):
    day = today()
    assert box.cmd(f"c SEARCH SAVEDON {day}") == b"* SEARCH 1 2 3 4 5\r\nc OK SEARCH completed\r\n"
    assert box.cmd(f"d SEARCH SINCE {day}") == b"* SEARCH\r\nd OK SEARCH completed\r\n"
    assert box.cmd(f"e SEARCH SAVEDSINCE {day}").startswith(b"* SEARCH 1 2 3 4 5\r\n")
    assert box.cmd(f"f SEARCH SAVEDBEFORE {day}") == b"* SEARCH\r\nf OK SEARCH completed\r\n"
    assert box.cmd("g SEARCH SAVEDBEFORE 1-Jan-2002") == b"* SEARCH\r\ng OK SEARCH completed\r\n"
    assert box.cmd("h SEARCH BEFORE 1-Jan-2002").startswith(b"* SEARCH 1 2 3 4 5\r\n")
    assert box.cmd("i SEARCH SAVEDATESUPPORTED").startswith(b"* SEARCH 1 2 3 4 5\r\n")
    assert box.cmd("j SEARCH NOT SAVEDATESUPPORTED") == b"* SEARCH\r\nj OK SEARCH completed\r\n"
    assert box.cmd("k SEARCH SAVEDON 32-Jan-2020").startswith(b"k BAD ")


def test_sort_and_esearch_take_the_saved_keys_too(box):
    reply = box.cmd(f"c SORT (ARRIVAL) UTF-8 SAVEDSINCE {today()}")
    assert reply.startswith(b"* SORT 1 2 3 4 5\r\n")
    reply = box.cmd(f"d SEARCH RETURN (COUNT) SAVEDON {today()}")
    assert reply.startswith(b'* ESEARCH (TAG "d") COUNT 5\r\n')


# -- EMAILID and THREADID ----------------------------------------------------------------------


def test_emailids_differ_between_messages_and_follow_a_move(box):
    ids = EMAILID.findall(box.cmd("c FETCH 1:5 EMAILID"))
    assert len(ids) == 5 and len(set(ids)) == 5
    assert b"OK" in box.cmd("d MOVE 2 Junk")
    box.cmd("e SELECT Junk")
    assert EMAILID.findall(box.cmd("f FETCH 1 EMAILID")) == [ids[1]]


def test_search_emailid_finds_the_message_in_any_mailbox_it_was_copied_to(box):
    emailid = EMAILID.search(box.cmd("c FETCH 4 EMAILID"))[1].decode()
    assert box.cmd(f"d SEARCH EMAILID {emailid}") == b"* SEARCH 4\r\nd OK SEARCH completed\r\n"
    box.cmd("e COPY 4 Trash")
    box.cmd("f SELECT Trash")
    assert box.cmd(f"g UID SEARCH EMAILID {emailid}") == b"* SEARCH 1\r\ng OK SEARCH completed\r\n"
    assert box.cmd("h SEARCH EMAILID Mnothing") == b"* SEARCH\r\nh OK SEARCH completed\r\n"
    assert box.cmd("i SEARCH EMAILID bad!id").startswith(b"i BAD ")


def test_threadid_groups_replies_with_their_root_and_is_nil_without_ids(box):
    reply = box.cmd("c FETCH 1:5 THREADID")
    found = [m[0] for m in THREADID.findall(reply)]
    assert found[0] == found[1] == found[2] != found[3]
    assert found[4] == b"NIL"
    thread = re.search(rb"\((T[0-9a-f]+)\)", found[0])[1].decode()
    assert box.cmd(f"d SEARCH THREADID {thread}") == b"* SEARCH 1 2 3\r\nd OK SEARCH completed\r\n"


def test_emailid_and_threadid_combine_with_other_items_and_bodies(box):
    reply = box.cmd("c FETCH 4 (UID EMAILID THREADID BODY.PEEK[TEXT] SAVEDATE)")
    assert reply.startswith(b"* 4 FETCH (UID 4 EMAILID (M")
    assert b" THREADID (T" in reply and b"BODY[TEXT] {6}\r\nnoon\r\n" in reply
    assert b" SAVEDATE " in reply and reply.endswith(b"c OK FETCH completed\r\n")


# -- MAILBOXID -----------------------------------------------------------------------------------


def test_mailboxid_in_create_select_status_and_through_rename(world):
    s = session(world)
    reply = s.cmd("b CREATE Projects")
    assert re.fullmatch(rb"b OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\] CREATE completed\r\n", reply)
    created = MAILBOXID.search(reply)[1]
    assert MAILBOXID.search(s.cmd("c EXAMINE Projects"))[1] == created
    assert s.cmd("d STATUS Projects (MESSAGES MAILBOXID)") == (
        b'* STATUS "Projects" (MESSAGES 0 MAILBOXID ('
        + created
        + b"))\r\nd OK STATUS completed\r\n"
    )
    s.cmd("e UNSELECT")
    assert s.cmd("f RENAME Projects Archive").startswith(b"f OK")
    assert MAILBOXID.search(s.cmd("g STATUS Archive (MAILBOXID)"))[1] == created
    assert MAILBOXID.search(s.cmd("h SELECT Archive"))[1] == created
    s.cmd("i UNSELECT")
    s.cmd("j DELETE Archive")
    assert MAILBOXID.search(s.cmd("k CREATE Archive"))[1] != created
    inbox = MAILBOXID.search(s.cmd("l STATUS INBOX (MAILBOXID)"))[1]
    assert inbox != created and MAILBOXID.search(s.cmd("m SELECT INBOX"))[1] == inbox


def test_renaming_inbox_keeps_its_id_and_gives_the_new_mailbox_one(world):
    s = session(world)
    append(s, ROOT)
    inbox = MAILBOXID.search(s.cmd("b STATUS INBOX (MAILBOXID)"))[1]
    s.cmd("c SELECT INBOX")
    emailid = EMAILID.search(s.cmd("d FETCH 1 EMAILID"))[1]
    s.cmd("e UNSELECT")
    assert s.cmd("f RENAME INBOX Before").startswith(b"f OK")
    assert MAILBOXID.search(s.cmd("g STATUS INBOX (MAILBOXID)"))[1] == inbox
    assert MAILBOXID.search(s.cmd("h STATUS Before (MAILBOXID)"))[1] != inbox
    s.cmd("i SELECT Before")
    assert EMAILID.search(s.cmd("j FETCH 1 EMAILID"))[1] == emailid


def test_list_status_gives_mailboxid(world):
    s = session(world)
    reply = s.cmd('b LIST "" "Sent" RETURN (STATUS (MAILBOXID))')
    assert MAILBOXID.search(reply) and reply.endswith(b"b OK LIST completed\r\n")


# -- SEARCHRES (RFC 5182) ------------------------------------------------------------------------


def test_a_failing_search_with_save_empties_dollar(box):
    box.cmd("c SEARCH RETURN (SAVE) 2:3")
    assert box.cmd("d SEARCH $") == b"* SEARCH 2 3\r\nd OK SEARCH completed\r\n"
    assert box.cmd("e SEARCH RETURN (SAVE) NOSUCHKEY").startswith(b"e BAD ")
    assert box.cmd("f SEARCH $") == b"* SEARCH\r\nf OK SEARCH completed\r\n"
    box.cmd("g SEARCH RETURN (SAVE) 4")
    reply = box.cmd("h SEARCH RETURN (SAVE) CHARSET KOI8-R SUBJECT x")
    assert reply.startswith(b"h NO [BADCHARSET")
    assert box.cmd("i SEARCH $") == b"* SEARCH\r\ni OK SEARCH completed\r\n"


def test_a_failing_search_without_save_leaves_dollar_alone(box):
    box.cmd("c SEARCH RETURN (SAVE) 2:3")
    assert box.cmd("d SEARCH NOSUCHKEY").startswith(b"d BAD ")
    assert box.cmd("e SEARCH RETURN (MIN) NOSUCHKEY").startswith(b"e BAD ")
    assert box.cmd("f SEARCH $") == b"* SEARCH 2 3\r\nf OK SEARCH completed\r\n"


def test_return_empty_list_is_all_and_keeps_dollar(box):
    """RFC 4731: ``RETURN ()`` is ``RETURN (ALL)``; without SAVE, ``$`` stays (RFC 5182 §2.4)."""
    box.cmd("c SEARCH RETURN (SAVE) 5")
    reply = box.cmd("d SEARCH RETURN () 1:2")
    assert reply == b'* ESEARCH (TAG "d") ALL 1:2\r\nd OK SEARCH completed\r\n'
    assert box.cmd("e SEARCH $") == b"* SEARCH 5\r\ne OK SEARCH completed\r\n"


def test_save_in_a_search_that_names_dollar_and_fails_empties_it(box):
    box.cmd("c SEARCH RETURN (SAVE) 1:2")
    assert box.cmd("d SEARCH RETURN (SAVE) $ BEFORE not-a-date").startswith(b"d BAD ")
    assert box.cmd("e FETCH $ UID") == b"e OK FETCH completed\r\n"


# -- the parsers and THREADID on their own --------------------------------------------------------


def test_fetch_items_say_what_the_store_must_load():
    from txmailhost.imap.fetch import index_only, parse_fetch
    from txmailhost.imap.parser import Reader

    request = parse_fetch(Reader(b"(SAVEDATE EMAILID)"))
    assert request.needs_origins and not request.needs_header and not index_only(request)
    request = parse_fetch(Reader(b"THREADID"))
    assert request.needs_header and not request.needs_origins
    assert not parse_fetch(Reader(b"(UID FLAGS)")).needs_origins


def test_threadid_is_the_roots_from_references_then_in_reply_to_then_message_id():
    from txmailhost.imap.objectid import threadid

    root = threadid(b"Message-ID: <a@x>\r\n\r\n")
    assert root is not None and re.fullmatch(r"T[0-9a-f]{24}", root)
    assert threadid(b"Message-ID: <b@x>\r\nReferences: <a@x> <c@x>\r\n\r\n") == root
    assert threadid(b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\n\r\n") == root
    assert threadid(b"Message-ID: <b@x>\r\n\r\n") != root
    assert threadid(b"Subject: none\r\n\r\n") is None


def test_threadid_reads_the_id_fields_without_decoding_the_subject(monkeypatch):
    # FETCH THREADID and SEARCH THREADID ask for it of every message every time: deriving all
    # the sort keys cost 11 s a message with 80 KB of "(fwd)" in its Subject.
    from txmailhost.imap import headerkeys
    from txmailhost.imap.objectid import threadid

    header = b"Subject: x" + b"\r\n (fwd)" * 10_000 + b"\r\nIn-Reply-To: <p@x>\r\n\r\n"
    monkeypatch.setattr(headerkeys, "base_subject", None)
    monkeypatch.setattr(headerkeys, "header_text", None)
    assert threadid(header) == threadid(b"Message-ID: <p@x>\r\n\r\n")


def test_the_cli_search_and_webmail_search_know_the_new_keys(tmp_path):
    """``txmailhost search`` (ops/mailbox_admin.py) and the webmail's search run IMAP SEARCH
    programs outside a session: the save-date and EMAILID keys load ``origins`` there too."""
    from twisted.internet.defer import Deferred

    from tests.support.syncpool import SyncReactor, SyncThreadPool, result
    from txmailhost.ops.mailbox_admin import search as cli_search
    from txmailhost.store.interfaces import MessageSource
    from txmailhost.store.memory import MemoryStore
    from txmailhost.web.search import run_search

    store = MemoryStore(SyncReactor(), SyncThreadPool())
    box = result(store.open(ALICE, "INBOX"))
    for message in (ROOT, OTHER):
        result(box.append(MessageSource.from_bytes(message), [], 978343200.0))
    emailid = result(box.origins([2]))[2].emailid
    day = today()
    assert [m.uid for m in cli_search(box, ["SAVEDON", day])] == [1, 2]
    assert [m.uid for m in cli_search(box, ["ON", day])] == []
    assert [m.uid for m in cli_search(box, ["EMAILID", emailid])] == [2]
    found = Deferred.fromCoroutine(run_search(box, f"SAVEDSINCE {day} NOT EMAILID {emailid}"))
    assert result(found) == [1]


def test_save_beside_count_or_all_answers_those_and_keeps_every_match(box):
    """RFC 5182 §2.4: SAVE changes nothing in the ESEARCH answer (and is not named in it);
    beside COUNT or ALL the whole result is saved."""
    reply = box.cmd("c SEARCH RETURN (SAVE COUNT) 2:4")
    assert reply == b'* ESEARCH (TAG "c") COUNT 3\r\nc OK SEARCH completed\r\n'
    assert box.cmd("d SEARCH $") == b"* SEARCH 2 3 4\r\nd OK SEARCH completed\r\n"
    reply = box.cmd("e UID SEARCH RETURN (ALL SAVE MAX) 1:2")
    assert reply == b'* ESEARCH (TAG "e") UID MAX 2 ALL 1:2\r\ne OK SEARCH completed\r\n'
    assert box.cmd("f UID SEARCH $") == b"* SEARCH 1 2\r\nf OK SEARCH completed\r\n"
