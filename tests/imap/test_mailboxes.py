"""Authenticated-state commands at the byte level: SELECT/EXAMINE, LIST/LSUB, CREATE, DELETE,
RENAME, SUBSCRIBE, STATUS, APPEND, and the isolation of one user's mailboxes from another's."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, BOB, Session, deliver, make_factory
from txmailhost.imap import fetch
from txmailhost.store.interfaces import IFileDelivery

MSG = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
def alice(world):
    s = Session(make_factory(world))
    assert b"a OK" in s.login()
    yield s
    s.close()


def uidvalidity(reply: bytes) -> int:
    return int(re.search(rb"UIDVALIDITY (\d+)", reply)[1])


def mailboxid(reply: bytes) -> bytes:
    return re.search(rb"MAILBOXID \(([A-Za-z0-9_-]+)\)", reply)[1]


def test_select_reports_every_rfc3501_item(alice, world):
    deliver(world, ALICE, MSG)
    deliver(world, ALICE, MSG)
    reply = alice.cmd("b SELECT INBOX")
    validity = uidvalidity(reply)
    assert reply == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
        b" flags permitted\r\n"
        b"* 2 EXISTS\r\n* 2 RECENT\r\n"
        b"* OK [UNSEEN 1] first unseen message\r\n"
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
        b"* OK [UIDNEXT 3] predicted next UID\r\n"
        b"* OK [HIGHESTMODSEQ 3] highest modseq\r\n"
        b"* OK [MAILBOXID (%s)] mailbox id\r\n"
        b"b OK [READ-WRITE] SELECT completed\r\n" % (validity, mailboxid(reply))
    )


def test_recent_is_seen_by_the_first_session_only(world):
    deliver(world, ALICE, MSG)
    first, second = Session(make_factory(world)), Session(make_factory(world))
    first.login()
    second.login()
    assert b"* 1 RECENT" in first.cmd("b SELECT INBOX")
    assert b"* 0 RECENT" in second.cmd("b SELECT INBOX")


def test_examine_is_read_only_with_no_permanent_flags(alice):
    reply = alice.cmd("b EXAMINE INBOX")
    assert b"* OK [PERMANENTFLAGS ()] flags permitted\r\n" in reply
    assert reply.endswith(b"b OK [READ-ONLY] EXAMINE completed\r\n")


def test_select_of_a_missing_mailbox_is_no_nonexistent(alice):
    assert alice.cmd("b SELECT Nope") == b"b NO [NONEXISTENT] no such mailbox\r\n"


def test_failed_select_leaves_the_selected_state(alice):
    alice.cmd("b SELECT INBOX")
    alice.cmd("c SELECT Nope")
    assert alice.cmd("d FETCH 1 FLAGS") == b"d BAD command not valid in authenticated state\r\n"


def test_list_marks_special_use_and_children(alice):
    alice.cmd("b CREATE Lists/twisted")
    assert alice.cmd('c LIST "" *') == (
        b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
        b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'
        b'* LIST (\\HasNoChildren \\Junk) "/" "Junk"\r\n'
        b'* LIST (\\HasChildren) "/" "Lists"\r\n'
        b'* LIST (\\HasNoChildren) "/" "Lists/twisted"\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"\r\n'
        b"c OK LIST completed\r\n"
    )


def test_list_percent_stops_at_the_separator(alice):
    alice.cmd("b CREATE Lists/twisted")
    assert alice.cmd('c LIST "Lists/" %') == (
        b'* LIST (\\HasNoChildren) "/" "Lists/twisted"\r\nc OK LIST completed\r\n'
    )


def test_list_empty_pattern_returns_the_separator(alice):
    assert alice.cmd('b LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\nb OK LIST completed\r\n'


def test_list_extended_special_use_selection(alice):
    reply = alice.cmd('b LIST (SPECIAL-USE) "" *')
    assert b'"INBOX"' not in reply
    assert b"\\Sent" in reply and b"\\Trash" in reply


def test_list_return_status(alice, world):
    deliver(world, ALICE, MSG)
    reply = alice.cmd('b LIST "" INBOX RETURN (STATUS (MESSAGES UNSEEN))')
    assert reply == (
        b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
        b'* STATUS "INBOX" (MESSAGES 1 UNSEEN 1)\r\nb OK LIST completed\r\n'
    )
    # RFC 5819: "STATUS" SP "(" status-att *(SP status-att) ")", as STATUS itself
    assert alice.cmd('c LIST "" INBOX RETURN (STATUS ())').startswith(b"c BAD ")


def test_non_ascii_names_travel_as_modified_utf7(alice):
    assert alice.cmd("b CREATE Entw&APw-rfe").endswith(b"] CREATE completed\r\n")
    assert b'"Entw&APw-rfe"' in alice.cmd('c LIST "" *')


def test_create_existing_mailbox_is_no_alreadyexists(alice):
    assert alice.cmd("b CREATE Sent") == b"b NO [ALREADYEXISTS] mailbox already exists\r\n"


def test_delete_then_select_fails(alice):
    alice.cmd("b CREATE Old")
    assert alice.cmd("c DELETE Old") == b"c OK DELETE completed\r\n"
    assert alice.cmd("d SELECT Old") == b"d NO [NONEXISTENT] no such mailbox\r\n"


def test_delete_inbox_is_refused(alice):
    assert alice.cmd("b DELETE INBOX") == b"b NO [CANNOT] INBOX can't be deleted\r\n"


def test_rename_moves_children_too(alice):
    alice.cmd("b CREATE A/B")
    assert alice.cmd("c RENAME A Z") == b"c OK RENAME completed\r\n"
    reply = alice.cmd('d LIST "" Z*')
    assert b'"Z"' in reply and b'"Z/B"' in reply
    assert b'"A' not in reply


def test_rename_inbox_moves_its_messages(alice, world):
    deliver(world, ALICE, MSG)
    assert alice.cmd("b RENAME INBOX Old") == b"b OK RENAME completed\r\n"
    assert b"MESSAGES 1" in alice.cmd("c STATUS Old (MESSAGES)")
    assert b"MESSAGES 0" in alice.cmd("d STATUS INBOX (MESSAGES)")


def test_subscribe_and_lsub(alice):
    alice.cmd("b CREATE News")
    alice.cmd("c SUBSCRIBE News")
    assert b'* LSUB () "/" "News"' in alice.cmd('d LSUB "" *')
    alice.cmd("e UNSUBSCRIBE News")
    assert b"News" not in alice.cmd('f LSUB "" *')


def test_status_reports_counts(alice, world):
    deliver(world, ALICE, MSG)
    reply = alice.cmd("b STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN HIGHESTMODSEQ SIZE)")
    assert reply == (
        b'* STATUS "INBOX" (MESSAGES 1 RECENT 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ 2 SIZE %d)\r\n'
        b"b OK STATUS completed\r\n" % len(MSG)
    )


def test_status_answers_the_appendlimit_the_capability_advertises(alice):
    """RFC 7889 §3.2: APPENDLIMIT is also a STATUS item (and LIST-STATUS's); it was BAD."""
    limit = re.search(rb"APPENDLIMIT=(\d+)", alice.cmd("a CAPABILITY")).group(1)
    assert alice.cmd("b STATUS INBOX (MESSAGES APPENDLIMIT)") == (
        b'* STATUS "INBOX" (MESSAGES 0 APPENDLIMIT %s)\r\nb OK STATUS completed\r\n' % limit
    )
    reply = alice.cmd('c LIST "" INBOX RETURN (STATUS (APPENDLIMIT))')
    assert b'* STATUS "INBOX" (APPENDLIMIT %s)' % limit in reply


def test_status_with_an_empty_or_unknown_item_list_is_bad(alice):
    assert alice.cmd("b STATUS INBOX ()") == b"b BAD STATUS needs at least one item\r\n"
    assert alice.cmd("c STATUS INBOX (BOGUS)") == b"c BAD unknown STATUS item BOGUS\r\n"


def test_append_answers_appenduid_and_stores_the_exact_bytes(alice, world):
    message = b"Subject: saved\r\n\r\ndraft\r\n"
    assert alice.cmd(f"b APPEND Drafts (\\Draft) {{{len(message)}}}") == (
        b"+ Ready for literal data\r\n"
    )
    reply = alice.cmd(message)
    validity = int(re.search(rb"APPENDUID (\d+) 1\]", reply)[1])
    assert reply == b"b OK [APPENDUID %d 1] APPEND completed\r\n" % validity
    assert world.inbox_files(ALICE, "Drafts") == [message]


@pytest.mark.parametrize(
    ("date", "why"),
    [
        ("31-Feb-2020 00:00:00 +0000", b"date-time"),
        ("01-Jan-2020 24:00:00 +0000", b"date-time"),
        ("01-Jan-2024 10:00:00 +9999", b"date-time zone"),  # taken as +99 h 99 min
        ("01-Jan-2024 10:00:00 -0060", b"date-time zone"),
    ],
)
def test_append_with_a_date_that_does_not_exist_is_bad(alice, date, why):
    reply = alice.send(b'b APPEND INBOX () "%s" {3+}\r\nabc\r\n' % date.encode())
    assert reply == b"b BAD invalid %s\r\n" % why


def test_append_with_date_sets_internaldate(alice):
    message = b"Subject: dated\r\n\r\nx\r\n"
    alice.send(
        b'b APPEND INBOX () "17-Jul-1996 02:44:25 -0700" {%d+}\r\n%s\r\n' % (len(message), message)
    )
    alice.cmd("c SELECT INBOX")
    assert alice.cmd("d FETCH 1 INTERNALDATE") == (
        b'* 1 FETCH (INTERNALDATE "17-Jul-1996 09:44:25 +0000")\r\nd OK FETCH completed\r\n'
    )


@pytest.mark.parametrize("date", ["31-Dec-9999 23:59:59 -2359", "01-Jan-0001 00:00:00 +0001"])
def test_append_with_a_date_outside_years_1_to_9999_in_utc_is_bad(alice, date):
    """INTERNALDATE is sent back in +0000 with a 4-digit year: "01-Jan-10000" is no
    date-time, so a date that becomes one in UTC is refused, and nothing is stored."""
    reply = alice.send(b'b APPEND INBOX () "%s" {3+}\r\nabc\r\n' % date.encode())
    assert reply == b"b BAD date-time out of range: years 0001 to 9999 in UTC\r\n"
    assert b"MESSAGES 0" in alice.cmd("c STATUS INBOX (MESSAGES)")


def test_append_on_the_last_second_of_year_9999_in_utc_is_stored_and_sent_back(alice):
    alice.send(b'b APPEND INBOX () "31-Dec-9999 23:59:59 +0000" {3+}\r\nabc\r\n')
    alice.cmd("c SELECT INBOX")
    assert b'INTERNALDATE "31-Dec-9999 23:59:59 +0000"' in alice.cmd("d FETCH 1 INTERNALDATE")


def test_internaldate_outside_years_1_to_9999_is_sent_as_the_nearest_date_time():
    assert fetch.internaldate(fetch.LATEST + 86400) == b'"31-Dec-9999 23:59:59 +0000"'
    assert fetch.internaldate(fetch.EARLIEST - 60) == b'"01-Jan-0001 00:00:00 +0000"'
    assert fetch.internaldate(0) == b'"01-Jan-1970 00:00:00 +0000"'


def test_append_to_missing_mailbox_is_trycreate(alice):
    assert alice.send(b"b APPEND Nope {3+}\r\nabc\r\n") == b"b NO [TRYCREATE] no such mailbox\r\n"


def test_large_append_is_staged_in_a_file_and_stored(alice, world):
    message = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * 30000
    assert alice.send(b"b APPEND INBOX {%d}\r\n" % len(message)) == b"+ Ready for literal data\r\n"
    for start in range(0, len(message), 65536):
        alice.send(message[start : start + 65536])
    assert alice.send(b"\r\n").startswith(b"b OK [APPENDUID ")
    assert world.inbox_files(ALICE) == [message]
    if IFileDelivery.providedBy(world.store):  # the staged file was linked, then removed
        staging = world.store.staging_directory(ALICE)
        assert [n for n in __import__("os").listdir(staging) if n.startswith(".imap")] == []


@pytest.mark.parametrize(
    "name",
    [
        "../bob@example.test",
        "../../example.test/bob",
        "/etc",
        "..",
        "INBOX/../../bob",
        "a/./b",
        "a\x00b",
        "Sent/..",
    ],
)
def test_traversal_names_are_refused_with_no(alice, name):
    quoted = '"' + name.replace("\x00", "") + '"' if "\x00" not in name else "{3+}"
    if "\x00" in name:
        reply = alice.send(b"b STATUS {3+}\r\na\x00b (MESSAGES)\r\n")
    else:
        reply = alice.cmd(f"b STATUS {quoted} (MESSAGES)")
    assert reply.startswith(b"b NO ")


def test_another_users_mailbox_is_never_reachable(alice, world):
    deliver(world, BOB, MSG)
    for name in ("~bob", "bob@example.test", "../bob", "#users/bob"):
        assert alice.cmd(f'b SELECT "{name}"').startswith(b"b NO ")
    assert b"bob" not in alice.cmd('c LIST "" *')


def test_create_of_a_name_too_long_for_the_disk_is_no_cannot_not_a_server_bug(alice):
    reply = alice.cmd("b CREATE " + "z" * 300)
    assert reply == b"b NO [CANNOT] invalid mailbox name\r\n"  # was NO [SERVERBUG] (ENAMETOOLONG)


@pytest.mark.parametrize("name", [b"&AIU-y", b"a&ICg-b", b"a&ICk-b"])  # U+0085, U+2028, U+2029
def test_create_of_a_name_with_c1_controls_or_line_separators_is_refused(alice, name):
    """RFC 6855 §3: no C1 controls and no line or paragraph separators in a name; in UTF-8
    (after ENABLE UTF8=ACCEPT) as in modified UTF-7."""
    refused = b"NO [CANNOT] mailbox name contains control characters\r\n"
    assert alice.cmd(b"b CREATE " + name) == b"b " + refused
    alice.cmd("e ENABLE UTF8=ACCEPT")
    utf8 = name.decode("ascii").encode("ascii").decode("imap4-utf-7").encode()
    assert alice.cmd(b'c CREATE "' + utf8 + b'"') == b"c " + refused


def test_a_refused_create_leaves_no_superiors_behind(alice):
    """The superiors were made before the store refused the whole name: ``CREATE`` of 200
    levels answered NO and left 127 new mailboxes."""
    before = alice.cmd('c LIST "" *').count(b"* LIST")
    reply = alice.cmd('b CREATE "' + "/".join(["d"] * 200) + '"')
    assert reply.startswith(b"b NO ")
    assert alice.cmd('c LIST "" *').count(b"* LIST") == before
    assert alice.cmd('d CREATE "p/q/r"').startswith(b"d OK")  # superiors still made
    assert b'"p/q"' in alice.cmd('e LIST "" p*')


def test_create_refuses_wildcards(alice):
    assert alice.cmd('b CREATE "a*b"') == b"b NO [CANNOT] mailbox names can't contain * or %\r\n"


def test_a_literal_whose_line_goes_on_later_is_acknowledged_at_once(alice, monkeypatch):
    """imaplib sends the literal and the CRLF after it in two writes; the server asks the
    kernel to ACK the literal now (peer.quick_ack), or the CRLF waits 40 ms in the client's
    Nagle buffer."""
    import txmailhost.imap.server as imap_server

    acked: list[object] = []
    monkeypatch.setattr(imap_server, "quick_ack", acked.append)
    message = b"Subject: split\r\n\r\nx\r\n"
    assert alice.cmd(f"b APPEND INBOX {{{len(message)}}}").startswith(b"+ ")
    assert alice.send(message) == b"" and len(acked) == 1  # the rest of the line isn't here
    assert alice.send(b"\r\n").startswith(b"b OK [APPENDUID")
    alice.cmd(f"c APPEND INBOX {{{len(message)}}}")
    alice.send(message + b"\r\n")  # all at once: nothing to hurry
    assert len(acked) == 1
    # LITERAL+: no continuation reply carries the ACK, so the command line itself is acked.
    alice.send(f"d APPEND INBOX {{{len(message)}+}}\r\n".encode())
    assert len(acked) == 2
    assert alice.send(message + b"\r\n").startswith(b"d OK [APPENDUID")
    assert len(acked) == 2
