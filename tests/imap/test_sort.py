"""SORT, THREAD, ESORT, SORT=DISPLAY and RFC 5267 search contexts at the byte level, over a
real store: what a client sees for each command, including the ADDTO/REMOVEFROM updates other
sessions' changes cause."""

from __future__ import annotations

import pytest

from tests.imap.support import ALICE, Session, deliver, make_factory
from tests.support.fixtures import make_world
from txmailhost.imap import headerkeys, sort


def message(subject: str, sender: str, date: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\n{extra}\r\nbody of {subject}\r\n"
    ).encode()


# seq: subject, from, sent date
MESSAGES = [
    message(
        "Re: lunch",
        "Carol <carol@x.test>",
        "Mon, 2 Feb 2026 12:00:00 +0000",
        "Message-ID: <2@x>\r\nIn-Reply-To: <1@x>\r\n",
    ),
    message("lunch", "bob@x.test", "Mon, 2 Feb 2026 10:00:00 +0000", "Message-ID: <1@x>\r\n"),
    message(
        "[list] agenda",
        "Adam <zed@x.test>",
        "Mon, 2 Feb 2026 09:00:00 -0500",
        "Message-ID: <3@x>\r\n",
    ),
    message(
        "Fwd: lunch",
        "dave@x.test",
        "Mon, 2 Feb 2026 11:00:00 +0000",
        "Message-ID: <4@x>\r\nReferences: <1@x> <2@x>\r\n",
    ),
]


@pytest.fixture
def world(tmp_path, backend):
    w = make_world(tmp_path, backend)
    w.add_user(ALICE)
    for raw in MESSAGES:
        deliver(w, ALICE, raw)
    return w


def open_session(world) -> Session:
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    return s


@pytest.fixture
def alice(world):
    s = open_session(world)
    yield s
    s.close()


def test_capabilities_name_the_sort_and_thread_extensions(alice):
    caps = alice.cmd("c CAPABILITY").split(b"\r\n")[0].split()
    for cap in (
        b"SORT",
        b"SORT=DISPLAY",
        b"THREAD=REFERENCES",
        b"THREAD=ORDEREDSUBJECT",
        b"ESORT",
        b"CONTEXT=SEARCH",
        b"CONTEXT=SORT",
    ):
        assert cap in caps


def test_sort_by_sent_date_in_utc(alice):
    # 3 was sent 14:00 UTC (09:00 -0500): after the others
    assert alice.cmd("t SORT (DATE) UTF-8 ALL") == b"* SORT 2 4 1 3\r\nt OK SORT completed\r\n"


def test_sort_by_subject_uses_the_base_subject_then_sequence(alice):
    # agenda < lunch (2, then 1 and 4 in sequence order: ties keep it)
    assert alice.cmd("t SORT (SUBJECT) US-ASCII ALL").startswith(b"* SORT 3 1 2 4\r\n")


def test_reverse_applies_to_its_criterion_only(alice):
    assert alice.cmd("t SORT (REVERSE SUBJECT) UTF-8 ALL").startswith(b"* SORT 1 2 4 3\r\n")
    assert alice.cmd("t SORT (SUBJECT REVERSE DATE) UTF-8 ALL").startswith(b"* SORT 3 1 4 2\r\n")


def test_sort_from_and_displayfrom(alice):
    assert alice.cmd("t SORT (FROM) UTF-8 ALL").startswith(b"* SORT 2 1 4 3\r\n")
    # display names: Adam, bob@x.test, Carol, dave@x.test
    assert alice.cmd("t SORT (DISPLAYFROM) UTF-8 ALL").startswith(b"* SORT 3 2 1 4\r\n")


def test_uid_sort_answers_uids_and_sorts_only_what_matches(alice):
    alice.cmd("t STORE 2 +FLAGS (\\Seen)")
    assert alice.cmd("t UID SORT (ARRIVAL) UTF-8 UNSEEN").startswith(b"* SORT 1 3 4\r\n")


def test_sort_with_an_unknown_charset_is_no_badcharset(alice):
    assert alice.cmd("t SORT (DATE) KOI8-R ALL") == (
        b"t NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        "t SORT () UTF-8 ALL",
        "t SORT (REVERSE) UTF-8 ALL",
        "t SORT (COLOUR) UTF-8 ALL",
        "t SORT DATE UTF-8 ALL",
        "t SORT (DATE) UTF-8",
        "t THREAD BOGUS UTF-8 ALL",
        "t SORT RETURN (PARTIAL 1:*) (DATE) UTF-8 ALL",
        "t SEARCH RETURN (PARTIAL 0:3) ALL",
    ],
)
def test_malformed_sort_and_thread_are_bad(alice, command):
    assert alice.cmd(command).startswith(b"t BAD ")


def test_thread_references(alice):
    # 2 is the original; 1 replies to it, 4 references both (so under 1); 3 alone
    assert alice.cmd("t THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (2 1 4)(3)\r\nt OK THREAD completed\r\n"
    )


def test_uid_thread_orderedsubject(alice):
    # lunch (first sent: 2, then 4 and 1 by date) before agenda (sent 14:00 UTC)
    assert alice.cmd("t UID THREAD ORDEREDSUBJECT UTF-8 ALL").startswith(
        b"* THREAD (2 (4)(1))(3)\r\n"
    )


def test_thread_of_no_messages_is_an_empty_response(alice):
    assert alice.cmd("t THREAD REFERENCES UTF-8 KEYWORD nothing") == (
        b"* THREAD\r\nt OK THREAD completed\r\n"
    )


def test_esort_answers_in_sort_order(alice):
    assert alice.cmd("t SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL").startswith(
        b'* ESEARCH (TAG "t") MIN 2 MAX 3 COUNT 4 ALL 2,4,1,3\r\n'
    )


def test_partial_pages_a_sort_and_a_search(alice):
    assert alice.cmd("t SORT RETURN (PARTIAL 2:3) (DATE) UTF-8 ALL").startswith(
        b'* ESEARCH (TAG "t") PARTIAL (2:3 4,1)\r\n'
    )
    assert alice.cmd("u UID SEARCH RETURN (PARTIAL 4:2 COUNT) ALL").startswith(
        b'* ESEARCH (TAG "u") UID COUNT 4 PARTIAL (2:4 2:4)\r\n'
    )
    assert alice.cmd("v SEARCH RETURN (PARTIAL 5:9) ALL").startswith(
        b'* ESEARCH (TAG "v") PARTIAL (5:9 NIL)\r\n'
    )


def test_plain_esearch_is_still_answered(alice):
    assert alice.cmd("t SEARCH RETURN (COUNT) ALL").startswith(b'* ESEARCH (TAG "t") COUNT 4\r\n')


def test_search_update_reports_other_sessions_changes_and_deliveries(world, alice):
    assert alice.cmd("t UID SEARCH RETURN (UPDATE) UNSEEN UNDELETED") == (
        b'* ESEARCH (TAG "t") UID\r\nt OK SEARCH completed\r\n'
    )
    other = open_session(world)
    other.cmd("o STORE 1:2 +FLAGS (\\Seen)")
    out = alice.cmd("n NOOP")
    assert b'* ESEARCH (TAG "t") UID REMOVEFROM (0 1:2)\r\n' in out
    deliver(world, ALICE, message("new", "eve@x.test", "Tue, 3 Feb 2026 10:00:00 +0000"))
    out = alice.cmd("n NOOP")
    assert b"* 5 EXISTS\r\n" in out
    assert b'* ESEARCH (TAG "t") UID ADDTO (0 5)\r\n' in out
    other.cmd("o NOOP")  # learn of message 5
    other.cmd("o STORE 5 +FLAGS (\\Deleted)")
    other.cmd("o EXPUNGE")
    out = alice.cmd("n NOOP")
    # the removal is told before the EXPUNGE, while the numbers still name the message
    assert out.index(b"REMOVEFROM (0 5)") < out.index(b"* 5 EXPUNGE")
    assert alice.cmd('c CANCELUPDATE "t"') == b"c OK CANCELUPDATE completed\r\n"
    other.cmd("o STORE 3 -FLAGS (\\Seen)")
    other.cmd("o STORE 3 +FLAGS (\\Seen)")
    assert b"ESEARCH" not in alice.cmd("n NOOP")
    other.close()


def test_own_store_and_expunge_update_a_sequence_number_context(alice):
    alice.cmd("t SEARCH RETURN (UPDATE ALL) UNSEEN")
    out = alice.cmd("s STORE 2,4 +FLAGS (\\Seen)")
    assert b'* ESEARCH (TAG "t") REMOVEFROM (0 2,4)\r\n' in out
    out = alice.cmd("s STORE 2 -FLAGS (\\Seen)")
    assert b'* ESEARCH (TAG "t") ADDTO (0 2)\r\n' in out
    alice.cmd("s STORE 1 +FLAGS (\\Deleted)")
    out = alice.cmd("s EXPUNGE")
    assert out.startswith(b'* ESEARCH (TAG "t") REMOVEFROM (0 1)\r\n* 1 EXPUNGE\r\n')


def test_sort_update_reports_positions(world, alice):
    assert alice.cmd("t UID SORT RETURN (UPDATE ALL) (DATE) UTF-8 UNSEEN").startswith(
        b'* ESEARCH (TAG "t") UID ALL 2,4,1,3\r\n'
    )
    alice.cmd("s UID STORE 4 +FLAGS (\\Seen)")  # position 2 in the result
    out = alice.cmd("s UID STORE 4 -FLAGS (\\Seen)")
    assert b'* ESEARCH (TAG "t") UID ADDTO (2 4)\r\n' in out


def test_update_with_sequence_numbers_in_the_criteria_is_bad(alice):
    assert alice.cmd("t SEARCH RETURN (UPDATE) 1:2").startswith(b"t BAD ")


def test_cancelupdate_of_an_unknown_tag_is_bad(alice):
    assert alice.cmd('c CANCELUPDATE "nope"').startswith(b"c BAD ")


def test_contexts_end_when_another_mailbox_is_selected(world, alice):
    alice.cmd("t UID SEARCH RETURN (UPDATE) UNSEEN")
    alice.cmd("c CREATE other")
    alice.cmd("s SELECT other")
    alice.cmd("s SELECT INBOX")
    assert alice.cmd('c CANCELUPDATE "t"').startswith(b"c BAD ")


def test_sort_keys_are_kept_for_the_next_session(world, alice):
    alice.cmd("t SORT (SUBJECT) UTF-8 ALL")
    later = open_session(world)
    assert later.cmd("t SORT (SUBJECT) UTF-8 ALL").startswith(b"* SORT 3 1 2 4\r\n")
    later.close()


def test_sort_by_date_reads_the_kept_dates_alone_and_agrees(world, alice, monkeypatch):
    """SORT (DATE) in a later session reads only the sent dates of the kept keys
    (``headerkeys.load_sent``): the same order as the keys loaded whole, a message without a
    usable Date by its INTERNALDATE, one with no kept keys derived as before."""
    deliver(world, ALICE, b"Subject: undated\r\n\r\nno Date field\r\n")  # 5: INTERNALDATE, now
    deliver(world, ALICE, message("bad", "e@x.test", "not a date"))  # 6: INTERNALDATE too
    alice.cmd("n NOOP")
    whole = alice.cmd("t SORT (DATE) UTF-8 ALL")
    assert whole == b"* SORT 2 4 1 3 5 6\r\nt OK SORT completed\r\n"
    # 5 and 6 arrived in the same second or not (INTERNALDATE is whole seconds): the order
    # the whole keys give is the one to agree with
    reversed_whole = alice.cmd("u SORT (REVERSE DATE SIZE) UTF-8 ALL")
    assert reversed_whole.startswith((b"* SORT 6 5 3 1 4 2\r\n", b"* SORT 5 6 3 1 4 2\r\n"))
    later = open_session(world)
    with monkeypatch.context() as patch:
        patch.setattr(headerkeys, "decode_many", None)  # no kept keys are read whole
        assert later.cmd("t SORT (DATE) UTF-8 ALL") == whole
        assert later.cmd("u SORT (REVERSE DATE SIZE) UTF-8 ALL") == reversed_whole
    deliver(world, ALICE, message("late", "f@x.test", "Mon, 2 Feb 2026 08:00:00 +0000"))
    later.cmd("n NOOP")  # 7: no kept keys yet, derived now
    assert later.cmd("v SORT (DATE) UTF-8 ALL").startswith(b"* SORT 7 2 4 1 3 5 6\r\n")
    assert later.cmd("w SORT (SUBJECT) UTF-8 ALL").startswith(b"* SORT 3 6 7 1 2 4 5\r\n")
    later.close()


def shared_session(factory) -> Session:
    s = Session(factory)
    s.login()
    return s


def test_a_later_session_sorts_and_threads_from_the_keys_an_earlier_one_loaded(world, monkeypatch):
    factory = make_factory(world)
    first = shared_session(factory)
    first.cmd("s SELECT INBOX")
    answers = [
        first.cmd(command)
        for command in (
            "a SORT (SUBJECT) UTF-8 ALL",
            "b SORT (DATE) UTF-8 ALL",
            "c THREAD REFERENCES UTF-8 ALL",
        )
    ]
    first.close()
    later = shared_session(factory)
    later.cmd("s SELECT INBOX")

    def unread(*args, **kwargs):
        raise AssertionError("kept keys read again")

    monkeypatch.setattr(headerkeys, "decode_many", unread)
    monkeypatch.setattr(headerkeys, "sent_dates", unread)
    monkeypatch.setattr(headerkeys, "derive", unread)
    assert answers[0].startswith(b"* SORT 3 1 2 4\r\n")
    assert later.cmd("a SORT (SUBJECT) UTF-8 ALL") == answers[0]
    assert later.cmd("b SORT (DATE) UTF-8 ALL") == answers[1]
    assert later.cmd("c THREAD REFERENCES UTF-8 ALL") == answers[2]
    later.close()


def test_a_mailbox_deleted_and_created_again_is_sorted_by_its_own_messages(world):
    """The new mailbox's UIDs 1 and 2 are other messages, and its UIDVALIDITY may be the old
    one's (the clock's second): only MAILBOXID tells them apart."""
    factory = make_factory(world)
    s = shared_session(factory)
    s.cmd("c CREATE box")
    for subject in ("alpha", "beta"):
        deliver(world, ALICE, message(subject, "a@x.test", "Mon, 2 Feb 2026 10:00:00 +0000"), "box")
    s.cmd("s SELECT box")
    assert s.cmd("t SORT (SUBJECT) UTF-8 ALL").startswith(b"* SORT 1 2\r\n")
    assert s.cmd("d SORT (DATE) UTF-8 ALL").startswith(b"* SORT 1 2\r\n")
    s.cmd("u UNSELECT")
    s.cmd("x DELETE box")
    s.cmd("c CREATE box")
    for subject, date in (("zulu", "Tue, 3 Feb 2026"), ("kilo", "Sun, 1 Feb 2026")):
        deliver(world, ALICE, message(subject, "a@x.test", date + " 10:00:00 +0000"), "box")
    later = shared_session(factory)
    later.cmd("s SELECT box")
    assert later.cmd("t SORT (SUBJECT) UTF-8 ALL").startswith(b"* SORT 2 1\r\n")
    assert later.cmd("d SORT (DATE) UTF-8 ALL").startswith(b"* SORT 2 1\r\n")
    s.close()
    later.close()


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        (b'[1700000000.5,"S",false]', 1700000000.5),
        (b'[null,"S",false]', None),
        (b"[1e9,", 1e9),
        (b'["x","S"]', "left out"),
        (b"{}", "left out"),
        (b"[]", "left out"),
        (b"", "left out"),
    ],
)
def test_sent_dates_read_the_first_element_and_leave_out_what_does_not_read(stored, sent):
    assert headerkeys.sent_dates({7: stored}).get(7, "left out") == sent


def test_a_later_session_asking_the_same_thread_gets_the_kept_answer(world, monkeypatch):
    """Built once per mailbox, messages and numbers (``threadcache``); a new message, or
    sequence numbers instead of UIDs, is threaded afresh."""
    from txmailhost.imap import thread, threadcache

    monkeypatch.setattr(threadcache, "MIN_MESSAGES", 0)
    factory = make_factory(world)
    first = shared_session(factory)
    first.cmd("s SELECT INBOX")
    answer = first.cmd("t UID THREAD REFERENCES UTF-8 ALL")
    first.close()
    built = []
    references = thread.references
    monkeypatch.setattr(
        thread, "references", lambda messages: built.append(1) or references(messages)
    )
    monkeypatch.setitem(sort.THREAD_ALGORITHMS, b"REFERENCES", thread.references)
    later = shared_session(factory)
    later.cmd("s SELECT INBOX")
    assert later.cmd("t UID THREAD REFERENCES UTF-8 ALL") == answer
    assert built == []
    by_number = later.cmd("n THREAD REFERENCES UTF-8 ALL")
    assert built == [1] and by_number.startswith(b"* THREAD ")
    deliver(world, ALICE, message("Re: lunch", "e@x.test", "Mon, 2 Feb 2026 13:00:00 +0000",
                                  "Message-ID: <5@x>\r\nIn-Reply-To: <2@x>\r\n"))  # fmt: skip
    later.cmd("n NOOP")
    fresh = later.cmd("t UID THREAD REFERENCES UTF-8 ALL")
    assert built == [1, 1] and fresh.startswith(b"* THREAD (2 1 (4)(5))(3)\r\n")
    later.close()


def test_a_gb2312_subject_with_gbk_characters_sorts_and_is_found_by_its_text(world):
    """Mail labelled gb2312 holds GBK characters (堃, 88 D2); decoded strictly, the words
    failed and the subject was sorted and searched as its raw ``=?gb2312?B?...?=``, which
    sorts before every letter (``charsets.py``)."""
    deliver(
        world,
        ALICE,
        message("=?gb2312?B?zfWI0rXEsai45g==?=", "e@x.test", "Tue, 3 Feb 2026 09:00:00 +0000"),
    )
    deliver(world, ALICE, message("zebra", "f@x.test", "Tue, 3 Feb 2026 10:00:00 +0000"))
    s = open_session(world)
    answer = s.cmd("b SORT (SUBJECT) UTF-8 ALL")
    assert answer.startswith(b"* SORT 3 1 2 4 6 5\r\n"), answer  # CJK after "zebra"
    found = s.cmd("c SEARCH CHARSET UTF-8 SUBJECT {3+}\r\n\xe5\xa0\x83".encode("latin-1"))
    assert found.startswith(b"* SEARCH 5\r\n"), found
    body = "王堃的报告".encode("gbk")  # an 8-bit text part labelled gb2312
    deliver(world, ALICE, b"Subject: b\r\nContent-Type: text/plain; charset=gb2312\r\n\r\n" + body)
    s.cmd("d NOOP")
    found = s.cmd(b"e SEARCH CHARSET UTF-8 BODY {6+}\r\n" + "王堃".encode())
    assert found.startswith(b"* SEARCH 7\r\n"), found


def test_years_are_read_as_rfc_5322_reads_them(world):
    """RFC 5322 4.3: ``102`` is 2002 and ``55`` is 1955; four digits are a year "1900 or
    later", so ``0102`` (a mailer of 2002 printing tm_year) is no date: SORT takes the
    INTERNALDATE (RFC 5256) and SENT* don't match it. The standard library read year 102
    (before every message) and 2055."""
    deliver(world, ALICE, message("y2k", "g@x.test", "Sat, 02 Feb 0102 11:39:51 +0200"))
    deliver(world, ALICE, message("fifties", "h@x.test", "Tue, 1 Mar 55 10:00:00 +0000"))
    deliver(world, ALICE, message("three", "i@x.test", "Fri, 1 Mar 102 10:00:00 +0000"))
    s = open_session(world)
    assert s.cmd("b SORT (DATE) UTF-8 ALL").startswith(b"* SORT 6 7 2 4 1 3 5\r\n")
    assert s.cmd("c SEARCH SENTSINCE 1-Jan-2002 SENTBEFORE 1-Jan-2003").startswith(
        b"* SEARCH 7\r\n"
    )
    assert s.cmd("d SEARCH SENTBEFORE 1-Jan-1956").startswith(b"* SEARCH 6\r\n")
    assert s.cmd("e SEARCH SENTBEFORE 1-Jan-1000").startswith(b"* SEARCH\r\n")
