"""Behaviours Dovecot's imaptest checks (tools/imaptest), at the byte level over every backend:
\\Recent owned by exactly one session (RFC 3501 §2.3.2), EXAMINE showing \\Recent without
taking it, a new UIDVALIDITY for a recreated mailbox, ENVELOPE groups and routes, SEARCH on
address structure, LSUB's \\Noselect parents, LIST-EXTENDED selection options, CONDSTORE's
first enabling command, ESEARCH MODSEQ, SEARCH past the last message, keywords announced in
FLAGS before a FETCH shows them, and a FETCH racing another session's EXPUNGE."""

from __future__ import annotations

import re

import pytest

from tests.imap.support import ALICE, Session, deliver, make_factory

MSG = b"From: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def session(world, select: str | None = None) -> Session:
    s = Session(make_factory(world))
    assert b"a OK" in s.login()
    if select:
        assert b"OK" in s.cmd(f"s {select}")
    return s


def recent_uids(s: Session) -> set[int]:
    reply = s.cmd("r FETCH 1:* (UID FLAGS)")
    return {
        int(m[1])
        for m in re.finditer(rb"UID (\d+) FLAGS \(([^)]*)\)", reply)
        if b"\\Recent" in m[2]
    }


# -- \Recent -------------------------------------------------------------------------------------


def test_append_by_a_selecting_session_is_recent_there_and_nowhere_else(world):
    first, second, third = (
        session(world, "SELECT INBOX"),
        session(world, "SELECT INBOX"),
        session(world),
    )
    reply = first.cmd(b"b APPEND INBOX {%d+}\r\n" % len(MSG) + MSG)
    assert b"* 1 EXISTS\r\n* 1 RECENT\r\n" in reply
    assert b"* 1 EXISTS\r\n* 0 RECENT\r\n" in second.cmd("c NOOP")
    assert b"RECENT 0" in third.cmd("d STATUS INBOX (MESSAGES RECENT)")
    assert recent_uids(first) == {1} and recent_uids(second) == set()


def test_a_delivery_is_recent_in_exactly_one_of_two_selected_sessions(world):
    first, second = session(world, "SELECT INBOX"), session(world, "SELECT INBOX")
    for _ in range(3):
        deliver(world, ALICE, MSG)
        second.cmd("n NOOP")  # the second session happens to be told first
        first.cmd("n NOOP")
    assert recent_uids(second) == {1, 2, 3}
    assert recent_uids(first) == set()
    assert b"RECENT 0" in session(world).cmd("s STATUS INBOX (RECENT)")


def test_examine_shows_recent_without_taking_it(world):
    deliver(world, ALICE, MSG)
    deliver(world, ALICE, MSG)
    s = session(world)
    assert b"* 2 RECENT\r\n" in s.cmd("b EXAMINE INBOX")
    assert recent_uids(s) == {1, 2}
    s.cmd("c CLOSE")
    assert b"(RECENT 2)" in s.cmd("d STATUS INBOX (RECENT)")
    assert b"* 2 RECENT\r\n" in s.cmd("e SELECT INBOX")
    s.cmd("f CLOSE")
    assert b"(RECENT 0)" in s.cmd("g STATUS INBOX (RECENT)")


# -- UIDVALIDITY ---------------------------------------------------------------------------------


def test_a_mailbox_deleted_and_created_again_gets_another_uidvalidity(world):
    s = session(world)
    s.cmd("b CREATE Again")
    before = re.search(rb"UIDVALIDITY (\d+)", s.cmd("c STATUS Again (UIDVALIDITY)"))[1]
    s.cmd("d DELETE Again")
    s.cmd("e CREATE Again")  # within the same second
    after = re.search(rb"UIDVALIDITY (\d+)", s.cmd("f STATUS Again (UIDVALIDITY)"))[1]
    assert int(after) > int(before)


# -- ENVELOPE and address SEARCH -----------------------------------------------------------------

GROUPS = (
    b"From: user@domain (Real Name)\r\n"
    b"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
    b"Cc: group:;, group2: (foo) ;\r\n"
    b"Bcc: <@route:user@domain>\r\n"
    b"Sender: \r\n\r\nbody\r\n"
)


def test_envelope_keeps_groups_and_source_routes(world):
    deliver(world, ALICE, GROUPS)
    reply = session(world, "SELECT INBOX").cmd("b FETCH 1 ENVELOPE")
    author = b'(("Real Name" NIL "user" "domain"))'
    assert reply.startswith(
        b"* 1 FETCH (ENVELOPE (NIL NIL " + author + b" " + author + b" " + author + b" "
        b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) '
        b'((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) '
        b'((NIL "@route" "user" "domain")) NIL NIL))\r\n'
    )


def test_search_from_matches_the_address_however_it_is_written(world):
    deliver(world, ALICE, b"From: <user-from (comment)@ (comment) domain.org>\r\n\r\nx\r\n")
    deliver(world, ALICE, b"From: user-from@domain.org (RealFrom)\r\n\r\nx\r\n")
    deliver(world, ALICE, b"From: other@domain.org\r\n\r\nx\r\n")
    s = session(world, "SELECT INBOX")
    assert (
        s.cmd("b SEARCH FROM user-from@domain.org") == b"* SEARCH 1 2\r\nb OK SEARCH completed\r\n"
    )
    assert s.cmd("c SEARCH FROM realfrom") == b"* SEARCH 2\r\nc OK SEARCH completed\r\n"
    assert s.cmd("d SEARCH TO user-from") == b"* SEARCH\r\nd OK SEARCH completed\r\n"


# -- LSUB and LIST-EXTENDED ----------------------------------------------------------------------


@pytest.fixture
def tree(world):
    s = session(world)
    for name in ("T/a", "T/p/c", "T/q/c", "T/gone"):
        s.cmd(f"c CREATE {name}")
    for name in ("T/a", "T/p/c", "T/gone"):
        s.cmd(f"s SUBSCRIBE {name}")
    s.cmd("d DELETE T/gone")
    return s


def test_lsub_lists_a_parent_the_pattern_stops_at_as_noselect(tree):
    assert tree.cmd('b LSUB "" T/%') == (
        b'* LSUB () "/" "T/a"\r\n* LSUB (\\Noselect) "/" "T/gone"\r\n'
        b'* LSUB (\\Noselect) "/" "T/p"\r\nb OK LSUB completed\r\n'
    )
    assert tree.cmd('c LSUB "" T/*') == (
        b'* LSUB () "/" "T/a"\r\n* LSUB (\\Noselect) "/" "T/gone"\r\n'
        b'* LSUB () "/" "T/p/c"\r\nc OK LSUB completed\r\n'
    )


@pytest.mark.parametrize(
    "command",
    [
        'b LIST (IMAPTEST) "" ""',
        'b LIST (RECURSIVEMATCH) "" ""',
        'b LIST (RECURSIVEMATCH REMOTE) "" ""',
        'b LIST "" "" RETURN (IMAPTEST)',
    ],
)
def test_invalid_list_options_are_bad(tree, command):
    assert tree.cmd(command).startswith(b"b BAD ")


def test_list_subscribed_shows_names_that_no_longer_exist_as_nonexistent(tree):
    assert tree.cmd('b LIST (SUBSCRIBED) "" T/*') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "T/a"\r\n'
        b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "T/gone"\r\n'
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "T/p/c"\r\nb OK LIST completed\r\n'
    )


def test_recursivematch_reports_parents_of_subscribed_children_with_childinfo(tree):
    assert tree.cmd('b LIST (SUBSCRIBED RECURSIVEMATCH) "" T/%') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "T/a"\r\n'
        b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "T/gone"\r\n'
        b'* LIST (\\HasChildren) "/" "T/p" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
        b"b OK LIST completed\r\n"
    )
    # A child the patterns match is listed itself; its parent then needs no CHILDINFO.
    assert tree.cmd('c LIST (SUBSCRIBED RECURSIVEMATCH) "" (T/p T/p/c)') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "T/p/c"\r\nc OK LIST completed\r\n'
    )


def test_a_list_pattern_that_is_not_modified_utf7_is_taken_literally(tree):
    assert tree.cmd('b LIST "" &\'+,-%*') == b"b OK LIST completed\r\n"
    assert tree.cmd("c NOOP") == b"c OK NOOP completed\r\n"


# -- SEARCH, ESEARCH, CONDSTORE ------------------------------------------------------------------


@pytest.fixture
def four(world):
    for _ in range(4):
        deliver(world, ALICE, MSG)
    return session(world, "SELECT INBOX")


def test_search_past_the_last_message_is_ok_and_empty(four):
    assert (
        four.cmd("b SEARCH RETURN () 1000") == b'* ESEARCH (TAG "b")\r\nb OK SEARCH completed\r\n'
    )
    assert four.cmd("c SEARCH 3:1000") == b"* SEARCH 3 4\r\nc OK SEARCH completed\r\n"
    assert four.cmd("d FETCH 1000 FLAGS").startswith(b"d BAD ")  # FETCH stays strict


def test_the_first_condstore_command_while_selected_reports_highestmodseq(four):
    reply = four.cmd("b FETCH 1 MODSEQ")
    assert re.fullmatch(
        rb"\* OK \[HIGHESTMODSEQ \d+\] highest modseq\r\n\* 1 FETCH \(MODSEQ \(\d+\)\)\r\n"
        rb"b OK FETCH completed\r\n",
        reply,
    )
    assert b"HIGHESTMODSEQ" not in four.cmd("c FETCH 1 MODSEQ")


def test_esearch_modseq_is_that_of_the_messages_returned(four):
    four.cmd("a FETCH 1 MODSEQ")  # CONDSTORE on: STORE reports each MODSEQ
    modseq = {}
    for seq in (1, 3, 2, 4):
        reply = four.cmd(f"s STORE {seq} +FLAGS (\\Seen)")
        modseq[seq] = int(re.search(rb"MODSEQ \((\d+)\)", reply)[1])
    search = 'SEARCH RETURN ({}) 1:3 MODSEQ "/flags/\\\\seen" all 1'
    assert b"MIN 1 MODSEQ %d\r\n" % modseq[1] in four.cmd("b " + search.format("MIN"))
    assert b"MAX 3 MODSEQ %d\r\n" % modseq[3] in four.cmd("c " + search.format("MAX"))
    assert b"ALL 1:3 MODSEQ %d\r\n" % modseq[2] in four.cmd("d " + search.format(""))
    assert b"COUNT 3 MODSEQ %d\r\n" % modseq[2] in four.cmd("e " + search.format("COUNT"))


# -- keywords and concurrent expunges ------------------------------------------------------------


def test_a_keyword_set_elsewhere_is_announced_in_flags_before_fetch_shows_it(world):
    deliver(world, ALICE, MSG)
    first, second = session(world, "SELECT INBOX"), session(world, "SELECT INBOX")
    second.cmd("b STORE 1 +FLAGS.SILENT ($Work)")
    reply = first.cmd("c FETCH 1 FLAGS")
    assert 0 <= reply.index(b"* FLAGS (") < reply.index(b"* 1 FETCH (FLAGS (") > 0
    assert b"$Work" in reply.split(b"\r\n")[0]


def test_fetch_skips_a_message_expunged_while_it_runs_with_expungeissued(world):
    deliver(world, ALICE, MSG)
    deliver(
        world, ALICE, b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
    )
    s = session(world, "SELECT INBOX")
    mailbox = s.protocol.view.mailbox
    read = mailbox.messages

    def expunge_before_content(uids, header=False, content=False):
        if content:  # another session's EXPUNGE lands between FETCH's two reads
            mailbox.expunge([2])
        return read(uids, header, content)

    mailbox.messages = expunge_before_content
    reply = s.cmd("b FETCH 1:2 BODYSTRUCTURE")
    assert b"* 2 FETCH" not in reply  # never a structure made from the header alone
    assert reply.startswith(b"* 1 FETCH (BODYSTRUCTURE (")
    assert reply.endswith(
        b"b NO [EXPUNGEISSUED] some of the requested messages no longer exist\r\n"
    )
