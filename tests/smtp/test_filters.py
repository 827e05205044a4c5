"""The content filter chain at the SMTP protocol level: each verdict's exact reply, and what
is stored (txmailhost.filters, docs/filters.rst)."""

from __future__ import annotations

import os

import pytest
from twisted.internet.defer import Deferred

from tests.filters.example import ExampleFilter
from tests.smtp.test_server import Session
from tests.support.fixtures import make_world
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.filters.base import MessageFilter
from txmailhost.filters.chain import FilterChain
from txmailhost.filters.interfaces import Verdict
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory

ALICE = "alice@example.test"


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    for user in (ALICE, "blocked@example.test", "spam-trap@example.test", "drop-me@example.test"):
        w.add_user(user)
    return w


def session(world, *filters, timeout: float = 5.0, on_error: str = "tempfail") -> Session:
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    chain = FilterChain(list(filters) or [ExampleFilter()], world.reactor, world.pool,
                        timeout=timeout, on_error=on_error)  # fmt: skip
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        hostname="mx.example.test",
        reactor=world.reactor,
        filters=chain,
    )
    s = Session(factory)
    s.read()
    s.send(b"EHLO c.test\r\n")
    return s


def send(s: Session, subject: bytes, rcpts=(b"alice@example.test",), body=b"hello\r\n") -> bytes:
    s.send(b"MAIL FROM:<x@remote.test>\r\n")
    for rcpt in rcpts:
        s.send(b"RCPT TO:<" + rcpt + b">\r\n")
    s.send(b"DATA\r\n")
    return s.send(b"Subject: " + subject + b"\r\n\r\n" + body + b".\r\n")


def test_an_added_header_field_is_stored_at_the_top_below_our_return_path(world):
    reply = send(session(world), b"plain")
    assert reply.startswith(b"250 2.0.0 OK delivered as ")
    (stored,) = world.inbox_files(ALICE)
    # Return-Path stays first (RFC 5321 4.4; the relay strips it, Sieve reads it)
    return_path, added, rest = stored.split(b"\r\n", 2)
    assert return_path == b"Return-Path: <x@remote.test>"
    assert added.startswith(b"X-Example-Filter: checked ") and rest.startswith(
        b"Received: from c.test"
    )
    # The filter read the whole message as stored, our own trace fields included.
    octets = int(added.split(b"checked ")[1].split(b" ")[0])
    assert octets == len(return_path) + 2 + len(rest)


def test_a_large_spilled_message_gets_its_header_and_its_whole_body(world):
    body = b"x" * 1000 + b"\r\n"
    reply = send(session(world), b"big", body=body * 400)  # 400 KB: past the in-memory limit
    assert reply.startswith(b"250 2.0.0")
    (stored,) = world.inbox_files(ALICE)
    assert stored.split(b"\r\n")[1].startswith(b"X-Example-Filter: checked ")
    assert stored.endswith(b"Subject: big\r\n\r\n" + body * 400)
    assert [n for n in os.listdir(os.path.join(world.root, "queue", "tmp"))] == []


def test_tempfail_answers_451_471_with_the_reason_and_stores_nothing(world):
    reply = send(session(world), b"tempfail-me")
    assert reply == b"451 4.7.1 example: try again later\r\n"
    assert world.inbox_files(ALICE) == []


def test_reject_answers_550_571_with_the_reason(world):
    assert send(session(world), b"reject-me") == b"550 5.7.1 example: no thanks\r\n"
    assert world.inbox_files(ALICE) == []


def test_junk_puts_the_copy_in_the_junk_folder(world):
    assert send(session(world), b"junk-me").startswith(b"250 2.0.0")
    assert world.inbox_files(ALICE) == [] and len(world.inbox_files(ALICE, "Junk")) == 1


def test_a_recipient_refused_at_rcpt_gets_550_and_the_others_their_mail(world):
    s = session(world)
    s.send(b"MAIL FROM:<x@remote.test>\r\n")
    assert s.send(b"RCPT TO:<blocked@example.test>\r\n") == (
        b"550 5.7.1 example: that recipient is blocked\r\n"
    )
    assert s.send(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250 2.1.5")


def test_junk_at_rcpt_and_a_drop_at_the_end_are_per_recipient(world):
    rcpts = (b"alice@example.test", b"spam-trap@example.test")
    assert send(session(world), b"plain", rcpts).startswith(b"250 2.0.0")
    assert len(world.inbox_files(ALICE)) == 1
    assert world.inbox_files("spam-trap@example.test") == []
    assert len(world.inbox_files("spam-trap@example.test", "Junk")) == 1
    assert (
        send(session(world), b"plain", (b"alice@example.test", b"drop-me@example.test"))[:3]
        == b"250"
    )
    assert world.inbox_files("drop-me@example.test") == []
    assert len(world.inbox_files(ALICE)) == 2


def test_a_filter_that_raises_gets_the_default_tempfail_and_nothing_is_stored(world):
    reply = send(session(world), b"crash-me")
    assert reply == b"451 4.7.1 content check unavailable, try again later\r\n"
    assert world.inbox_files(ALICE) == []


def test_on_error_accept_lets_the_message_through_when_a_filter_raises(world):
    assert send(session(world, on_error="accept"), b"crash-me").startswith(b"250 2.0.0")
    assert len(world.inbox_files(ALICE)) == 1


class Hanging(MessageFilter):
    """Answers the end of data never: only the time budget ends the wait."""

    name = "hanging"

    def end_of_data(self, client, transaction, message):
        return Deferred()


def test_a_filter_past_its_time_budget_gets_the_default_tempfail(world):
    s = session(world, Hanging(), timeout=3.0)
    s.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert s.send(b"Subject: hi\r\n\r\nx\r\n.\r\n") == b""  # waiting for the filter
    world.reactor.advance(3.1)
    assert s.read() == b"451 4.7.1 content check unavailable, try again later\r\n"
    assert world.inbox_files(ALICE) == []


class RefuseConnections(MessageFilter):
    name = "refuse"

    def connect(self, client):
        assert client.address == "192.0.2.7"
        return Verdict.reject("example: not from there")


def test_a_refusal_at_connect_replaces_the_greeting_and_closes(world):
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    chain = FilterChain([RefuseConnections()], world.reactor, world.pool)
    factory = SMTPFactory(InboundPolicy(world.router, world.store),
                          Submission(world.store, spool), reactor=world.reactor, filters=chain)  # fmt: skip
    s = Session(factory)
    assert s.read() == b"554 5.7.1 example: not from there\r\n"
    assert s.send(b"EHLO c.test\r\n") == b""
