"""NOTIFY (RFC 5465) at the byte level, on every backend: the STATUS starting point, STATUS
lines for changes to other mailboxes, pushes for the selected one without a command, LIST
lines for another session's CREATE/DELETE/RENAME/SUBSCRIBE, and the command's errors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.imap.support import ALICE, Session, deliver, make_factory
from tests.support.linecount import lines_run
from txmailhost.imap import names, notify
from txmailhost.imap.notify import EventGroup, NotifySet

MSG = b"From: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def factory(world):
    return make_factory(world)


def session(factory, select: str | None = None) -> Session:
    s = Session(factory)
    assert b"a OK" in s.login()
    if select:
        assert b"OK" in s.cmd(f"s {select}")
    return s


def test_notify_is_offered(factory):
    assert b" NOTIFY" in session(factory).cmd("c CAPABILITY")


def test_set_status_sends_the_starting_point_for_the_events_asked(factory):
    s = session(factory)
    assert b"OK" in s.cmd("c CREATE box2")
    s.cmd(b"d APPEND box2 {%d+}\r\n" % len(MSG) + MSG)
    reply = s.cmd("e NOTIFY SET STATUS (mailboxes box2 (MessageExpunge))")
    assert b'* STATUS "box2" (MESSAGES 1)\r\ne OK' in reply
    reply = s.cmd("f NOTIFY SET STATUS (mailboxes box2 (MessageNew))")
    assert re.search(
        rb"\* STATUS \x22box2\x22 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)\r\nf OK", reply
    )
    reply = s.cmd("g NOTIFY SET STATUS (mailboxes box2 (FlagChange))")
    assert re.search(
        rb"\* STATUS \x22box2\x22 \(UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)\r\ng OK", reply
    )
    reply = s.cmd("h NOTIFY SET (mailboxes box2 (MessageNew MessageExpunge FlagChange))")
    assert reply == b"h OK NOTIFY completed\r\n"


def test_new_mail_in_a_watched_mailbox_is_pushed_as_status_without_a_command(world, factory):
    s = session(factory, "SELECT INBOX")
    assert b"OK" in s.cmd("c CREATE Lists")
    assert b"h OK" in s.cmd("h NOTIFY SET (subtree Lists (MessageNew MessageExpunge))")
    deliver(world, ALICE, MSG, "Lists")
    pushed = s.take()
    assert re.fullmatch(
        rb"\* STATUS \x22Lists\x22 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)\r\n", pushed
    )
    # not for the selected mailbox: that one is told the IMAP way, at the next command
    deliver(world, ALICE, MSG)
    assert s.take() == b""
    assert b"* 1 EXISTS" in s.cmd("n NOOP")


def test_lines_for_other_mailboxes_wait_for_the_running_command(world, factory):
    s = session(factory)
    assert b"h OK" in s.cmd("h NOTIFY SET (personal (MessageNew MessageExpunge))")
    s.protocol._running = True  # as inside a FETCH that streams a literal
    deliver(world, ALICE, MSG, "INBOX")
    assert s.take() == b""
    s.protocol._running = False
    reply = s.cmd("n NOOP")
    assert re.match(
        rb"\* STATUS \x22INBOX\x22 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)\r\nn OK", reply
    )


def test_selected_events_push_exists_and_the_fetch_attributes_asked(world, factory):
    s = session(factory, "SELECT INBOX")
    reply = s.cmd(
        "h NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
        "MessageExpunge FlagChange)) (personal (MessageNew))"
    )
    assert reply.endswith(b"h OK NOTIFY completed\r\n")
    deliver(world, ALICE, MSG)
    pushed = s.take()
    assert b"* 1 EXISTS\r\n" in pushed
    assert b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {" in pushed
    assert b"Subject: hi" in pushed and b"STATUS" not in pushed
    other = session(factory, "SELECT INBOX")
    assert b"OK" in other.cmd("x STORE 1 +FLAGS (\\Flagged)")
    assert b"\\Flagged))" in s.take()
    assert b"OK" in other.cmd("y STORE 1 +FLAGS (\\Deleted)")
    s.take()
    assert b"OK" in other.cmd("z EXPUNGE")
    assert b"* 1 EXPUNGE\r\n" in s.take()  # "selected": at once, not at the next command


def test_selected_delayed_keeps_expunges_for_a_command(world, factory):
    s = session(factory, "SELECT INBOX")
    deliver(world, ALICE, MSG)
    s.cmd("n NOOP")
    assert b"OK" in s.cmd("h NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    other = session(factory, "SELECT INBOX")
    other.cmd("y STORE 1 +FLAGS (\\Deleted)")
    other.cmd("z EXPUNGE")
    assert b"EXPUNGE" not in s.take()
    assert b"* 1 EXPUNGE\r\n" in s.cmd("n NOOP")


def test_another_sessions_mailbox_changes_are_list_lines(factory):
    s = session(factory)
    assert b"OK" in s.cmd("h NOTIFY SET (personal (MailboxName SubscriptionChange))")
    other = session(factory)
    other.cmd("c CREATE Projects")
    assert s.take() == b'* LIST () "/" "Projects"\r\n'
    other.cmd("d SUBSCRIBE Projects")
    assert s.take() == b'* LIST (\\Subscribed) "/" "Projects"\r\n'
    other.cmd("e RENAME Projects Archive")
    assert s.take() == b'* LIST () "/" "Archive" ("OLDNAME" ("Projects"))\r\n'
    other.cmd("f DELETE Archive")
    assert s.take() == b'* LIST (\\NonExistent) "/" "Archive"\r\n'
    assert b"OK" in s.cmd("n NOTIFY NONE")
    other.cmd("g CREATE Later")
    assert s.take() == b""


@pytest.mark.parametrize(
    "args, reply",
    [
        ("SET (selected (MessageNew))", b"BAD"),  # MessageExpunge must come with it
        ("SET (selected (FlagChange))", b"BAD"),
        ("SET (personal (MessageNew (UID)))", b"BAD"),  # fetch attributes: selected only
        ("SET (selected (MessageNew (NOSUCHATT) MessageExpunge))", b"BAD"),
        ("SET (nowhere (MessageNew))", b"BAD"),
        ("SET (personal (NoSuchEvent))", b"BAD"),
        ("SET", b"BAD"),
        ("FOO", b"BAD"),
        ("SET (personal (AnnotationChange))", b"NO [BADEVENT (MessageNew MessageExpunge"),
        ("SET (personal NONE)", b"OK"),
        ("NONE", b"OK"),
    ],
)
def test_notify_arguments_are_checked(factory, args, reply):
    assert session(factory).cmd(f"t NOTIFY {args}").startswith(b"t " + reply)


def test_the_hub_forwards_local_events_and_tells_forwarded_ones_to_everyone():
    from txmailhost.imap.notify import NotifyHub

    class Session:
        def __init__(self) -> None:
            self.heard: list[tuple] = []

        def notify_mailbox_event(self, event, name, old):
            self.heard.append((event, name, old))

    sent: list[tuple] = []
    hub = NotifyHub(forward=lambda *event: sent.append(event))
    maker, other = Session(), Session()
    hub.join("a@example.test", maker)
    hub.join("a@example.test", other)
    hub.tell("a@example.test", maker, "MailboxName", "New", None)
    assert other.heard == [("MailboxName", "New", None)] and maker.heard == []
    assert sent == [("a@example.test", "MailboxName", "New", None)]
    hub.tell("a@example.test", None, "MailboxName", "Renamed", "New")  # from another worker
    assert maker.heard == [("MailboxName", "Renamed", "New")]
    assert len(sent) == 1  # not sent back


def test_subtree_covers_the_name_and_below_not_names_it_is_a_prefix_of(factory):
    s = session(factory)
    assert b"OK" in s.cmd("h NOTIFY SET (subtree (Lists/ietf Other) (MailboxName))")
    other = session(factory)
    other.cmd("c CREATE Lists/ietfx")
    other.cmd("d CREATE Lists/ietf")
    other.cmd("e CREATE Lists/ietf/imap")
    assert s.take() == b'* LIST () "/" "Lists/ietf"\r\n* LIST () "/" "Lists/ietf/imap"\r\n'


_notify_names = st.one_of(
    st.lists(st.sampled_from(["a", "b", "bc", "INBOX"]), min_size=1, max_size=3).map("/".join),
    st.text(alphabet="ab/", max_size=5),
)


@given(
    st.sampled_from(["SUBTREE", "MAILBOXES"]),
    st.lists(_notify_names, min_size=1, max_size=5),
    _notify_names,
)
def test_subtree_and_mailboxes_cover_what_comparing_every_name_covers(kind, roots, name):
    """Each filter name is in a set, and SUBTREE walks up the mailbox's name; the answer is
    the one comparing the mailbox with each filter name in turn gave."""
    group = EventGroup(kind, tuple(roots), frozenset({"MailboxName"}))
    if kind == "SUBTREE":
        expected = any(name == root or name.startswith(root + "/") for root in roots)
    else:
        expected = name in roots
    assert group.covers(name, set()) is expected


def test_notify_work_grows_linearly_with_the_mailboxes_and_subtree_names():
    """What NOTIFY SET, and every mailbox event from another session, ask of the set: which
    of the user's mailboxes it covers. Four times the mailboxes and subtree names, about
    four times the lines run; comparing each mailbox with each name ran sixteen times as many."""

    def resolve(size: int) -> int:
        mailboxes = ["INBOX", *(f"many/box{i:05d}" for i in range(size))]
        roots = tuple(f"many/box{i:05d}" for i in range(0, 2 * size, 2))
        spec = NotifySet([EventGroup("SUBTREE", roots, frozenset({"MessageNew"}))])
        return lines_run(
            [notify, names], lambda: [n for n in mailboxes if spec.events_for(n, set())]
        )

    small, large = resolve(500), resolve(2000)
    assert large < 6 * small, (small, large)
