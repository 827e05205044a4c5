"""ESMTP protocol behaviour at the byte level (StringTransport), over a real store and accounts."""

from __future__ import annotations

import email
import errno
import os
import sqlite3

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from zope.interface import implementer

from tests.support.fixtures import make_world
from txmailhost.delivery import incoming
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.replies import SMTPReply
from txmailhost.smtp.server import SMTPFactory


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    tls_creator = None

    def startTLS(self, creator):
        self.tls_creator = creator


class Session:
    """One SMTP session: send lines, read what the server wrote since the last read."""

    def __init__(self, factory: SMTPFactory, transport: StringTransport | None = None) -> None:
        self.transport = transport or StringTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000)
        )
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def read(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        return self.read()

    def codes(self, data: bytes) -> list[str]:
        return [line[:3].decode() for line in self.send(data).split(b"\r\n") if line[3:4] == b" "]


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user("alice@example.test")
    w.add_user("bob@example.test")
    return w


def make_factory(world, **kw) -> SMTPFactory:
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    spool.sweep()
    kw.setdefault("max_message_size", 10_000)
    return SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        hostname="mx.example.test",
        reactor=world.reactor,
        **kw,
    )


@pytest.fixture
def session(world):
    s = Session(make_factory(world))
    assert s.read().startswith(b"220 mx.example.test ESMTP")
    return s


def test_junk_commands_past_the_limit_close_the_session_and_a_message_resets_them(world):
    """NOOP, RSET, VRFY, EXPN and HELP are "junk" (Postfix's smtpd_junk_command_limit): a
    hundred are answered, the next ends the session with 421; a message taken starts the
    count again, so a client that tidies up between its messages is never cut off."""
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c.test\r\n")
    junk = [b"NOOP", b"RSET", b"VRFY x", b"EXPN x", b"HELP"]
    for n in range(99):
        assert s.send(junk[n % 5] + b"\r\n")[:1] in (b"2", b"5")
    message = b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhi\r\n.\r\n"
    assert s.send(message).split(b"\r\n")[-2].startswith(b"250 2.0.0 OK")  # counts again from 0
    for _ in range(100):
        assert s.send(b"RSET\r\n") == b"250 2.0.0 reset OK\r\n"
    assert s.send(b"NOOP\r\n") == (
        b"421 4.7.0 too many commands without mail, closing connection\r\n"
    )
    assert s.transport.disconnecting


def test_unknown_recipients_past_max_errors_end_the_session(session):
    """A refused RCPT counts as an error, and past ``max_errors`` (20) the session ends, as
    Postfix's smtpd_hard_error_limit has it: they were counted but never ended anything, and
    a dictionary attack could go on in one session (128 probes seen, each answered)."""
    session.send(b"EHLO c.test\r\nMAIL FROM:<x@r.test>\r\n")
    for n in range(20):
        out = session.send(b"RCPT TO:<nobody%d@example.test>\r\n" % n)
        assert out.startswith(b"550 5.1.1"), out
    assert session.send(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")  # not counted
    greylisted = SMTPReply(451, "4.7.1", "greylisted, try again later")
    assert session.protocol._refused(greylisted) is greylisted  # temporary: never ends it
    assert not session.transport.disconnecting
    last = session.send(b"RCPT TO:<nobody@example.test>\r\n")
    assert last.split(b"\r\n")[1] == b"421 4.7.0 too many errors, closing connection", last
    assert last.startswith(b"550 5.1.1")
    assert session.transport.disconnecting


def test_ehlo_advertises_pipelining_size_8bitmime_enhancedstatuscodes(session):
    reply = session.send(b"EHLO client.test\r\n")
    lines = reply.split(b"\r\n")
    assert lines[0] == b"250-mx.example.test greets client.test"
    assert b"250-PIPELINING" in lines
    assert b"250-SIZE 10000" in lines
    assert b"250-8BITMIME" in lines
    assert b"250-ENHANCEDSTATUSCODES" in lines
    assert lines[-2].startswith(b"250 ")


def test_message_to_local_user_is_stored_with_trace_headers(session, world):
    out = session.send(
        b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<Alice@Example.test>\r\nDATA\r\n"
    )
    assert out.split(b"\r\n")[-4:] == [
        b"250 2.1.0 sender OK",
        b"250 2.1.5 recipient OK",
        b"354 End data with <CR><LF>.<CR><LF>",
        b"",
    ]
    out = session.send(b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n")
    assert out.startswith(b"250 2.0.0 OK delivered as ")
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.startswith(b"Return-Path: <x@remote.test>\r\nReceived: from c.test ([192.0.2.7])")
    assert b"for <Alice@Example.test>;" in stored  # the forward-path as the client gave it
    assert stored.endswith(b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n")
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


@pytest.mark.parametrize(
    ("text", "body"),
    [
        # white space first: it folded onto our Received:, whose last ";" (its date) became
        # the client's, and made it read "via authenticated submission"
        (b" (via authenticated submission); Mon, 01 Jan 2001 00:00:00 +0000\r\nSubject: x\r\n", True),
        (b"no header, just text\r\n", True),
        (b"From alice Mon Jan  1 00:00:00 2001\r\nSubject: x\r\n", True),  # an mbox line
        (b"Subject : old syntax, a field\r\n\r\nb\r\n", False),  # RFC 5322 4.5.1
        (b"\r\nbody only: an empty header, as it was\r\n", True),
    ],
)  # fmt: skip
def test_a_message_not_starting_with_a_field_is_body_below_our_trace_fields(
    session, world, text, body
):
    """RFC 5321 4.4: the trace fields are ours. Text that is no header field first gets an
    empty line before it (as Postfix's cleanup does): it is body, not a part of Received:."""
    session.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    session.send(b"DATA\r\n")
    assert session.send(text + b".\r\n").startswith(b"250 2.0.0")
    (stored,) = world.inbox_files("alice@example.test")
    first = text.lstrip(b"\r\n").split(b"\r\n")[0]
    assert (b"\r\n\r\n" + first in stored) == body, stored
    assert stored.count(b"\r\n\r\n") == text.count(b"\r\n\r\n") + body
    assert "2001" not in email.message_from_bytes(stored)["Received"]


def test_a_helo_name_with_specials_cannot_shape_our_received_field(session, world):
    """``EHLO evil(x;Mon,_1_Jan_2001``: its "(" opened a comment to the field's end and its
    ";" gave the field the client's date. Such characters show as "?"; names with "_" (a
    Windows host's) stay as sent."""
    session.send(b"EHLO evil(x;Mon,_1_Jan_2001\r\nMAIL FROM:<x@r.test>\r\n")
    session.send(b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert session.send(b"Subject: x\r\n\r\nb\r\n.\r\n").startswith(b"250 2.0.0")
    (stored,) = world.inbox_files("alice@example.test")
    assert b"Received: from evil?x?Mon?_1_Jan_2001 ([192.0.2.7])" in stored
    assert "2001" not in email.message_from_bytes(stored)["Received"].rpartition(";")[2]


def test_one_message_to_two_users_lands_in_both_inboxes(session, world):
    session.send(b"EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n")
    session.send(b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert session.send(b"Subject: two\r\n\r\nhi\r\n.\r\n").startswith(b"250 2.0.0")
    assert len(world.inbox_files("alice@example.test")) == 1
    assert len(world.inbox_files("bob@example.test")) == 1
    assert world.inbox_files("bob@example.test")[0].startswith(b"Return-Path: <>\r\n")


def test_pipelined_transaction_replies_in_order_in_one_write(session, world):
    session.send(b"EHLO c.test\r\n")
    burst = (
        b"MAIL FROM:<a@r.test>\r\nRCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    assert session.codes(burst) == ["250", "550", "250", "354"]
    assert session.codes(b"x\r\n.\r\nNOOP\r\nQUIT\r\n") == ["250", "250", "221"]
    assert session.transport.disconnecting


def test_unknown_local_user_is_rejected_550_511(session):
    session.send(b"EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n")
    assert session.send(b"RCPT TO:<nobody@example.test>\r\n") == (
        b"550 5.1.1 mailbox unavailable: no such user here\r\n"
    )


@pytest.mark.parametrize(
    "recipient",
    [
        b"<victim@elsewhere.test>",
        b"<@example.test:victim@elsewhere.test>",  # source route: the real target is elsewhere
        b"<victim%elsewhere.test@example.test>",  # percent hack
        b'<"victim@elsewhere.test"@example.test>',  # quoted local part
        b"<victim@[192.0.2.1]>",  # address literal
    ],
)
def test_relaying_is_denied_whatever_the_address_trick(session, world, recipient):
    session.send(b"EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n")
    reply = session.send(b"RCPT TO:" + recipient + b"\r\n")
    assert reply[:3] in (b"554", b"550"), reply
    assert session.send(b"DATA\r\n").startswith(b"554 5.5.1 no valid recipients")
    assert world.inbox_files("alice@example.test") == []


@pytest.mark.parametrize("recipient", [b'<"alice"@example.test>', b'<"al\\ice"@example.test>'])
def test_a_quoted_local_part_that_needs_no_quotes_is_the_same_mailbox(session, world, recipient):
    """RFC 5322 3.4.1: "alice" and alice are one local part; quoting must not hide a user."""
    session.send(b"EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n")
    assert session.send(b"RCPT TO:" + recipient + b"\r\n") == b"250 2.1.5 recipient OK\r\n"
    assert session.send(b"DATA\r\n").startswith(b"354")
    assert session.send(b"Subject: q\r\n\r\nhi\r\n.\r\n").startswith(b"250 2.0.0")
    assert len(world.inbox_files("alice@example.test")) == 1


def test_a_helo_name_longer_than_any_domain_is_refused(session):
    assert session.send(b"EHLO " + b"a" * 256 + b"\r\n").startswith(b"501 5.5.4")
    assert session.send(b"HELO " + b"a" * 255 + b"\r\n").startswith(b"250 ")


def test_relay_to_foreign_domain_is_550_571(session):
    session.send(b"EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n")
    assert session.send(b"RCPT TO:<v@elsewhere.test>\r\n") == b"550 5.7.1 relaying denied\r\n"


@pytest.mark.parametrize(
    "commands, expected",
    [
        (b"MAIL FROM:<a@r.test>\r\n", b"503 5.5.1 send HELO or EHLO first\r\n"),
        (b"EHLO c\r\nRCPT TO:<alice@example.test>\r\n", b"503 5.5.1 need MAIL before RCPT\r\n"),
        (b"EHLO c\r\nDATA\r\n", b"503 5.5.1 need MAIL before DATA\r\n"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nDATA\r\n", b"503 5.5.1 need RCPT before DATA\r\n"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nMAIL FROM:<b@r.test>\r\n", b"503 5.5.1 sender"),
        (b"EHLO\r\n", b"501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:a@r.test\r\n", b"501 5.1.7 bad sender address syntax\r\n"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> FOO=BAR\r\n", b"555 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> SIZE=x\r\n", b"501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> BODY=BINARY\r\n", b"501 5.5.4"),
        (b"HELO c\r\nMAIL FROM:<a@r.test> BODY=BINARYMIME\r\n", b"555 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> REQUIRETLS\r\n", b"555 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> RET=BODY\r\n", b"501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> ENVID=a+2\r\n", b"501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> SMTPUTF8=yes\r\n", b"501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test> SIZE=99999\r\n", b"552 5.3.4"),
        (b"EHLO c\r\nMAIL FROM:<\xc3\xa4@r.test>\r\n", b"553 5.6.7"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<b>\r\n", b"501 5.1.3"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<>\r\n", b"501 5.1.3"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<bob@example.test> FOO=1\r\n", b"555"),
        (
            b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<bob@example.test> NOTIFY=NEVER,DELAY\r\n",
            b"501",
        ),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<bob@example.test> ORCPT=rfc822\r\n", b"501"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nBDAT 3\r\nabc", b"503 5.5.1 need RCPT"),
        (b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<bob@example.test>\r\nDATA x\r\n", b"501"),
        (b"FROB\r\n", b"500 5.5.2 command not recognized\r\n"),
        (b"\xff\xfe\r\n", b"500 5.5.2 command contains invalid characters\r\n"),
        (b"NOOP\x00\r\n", b"500 5.5.2"),
        (b"VRFY alice\r\n", b"252 2.5.0"),
        (b"VRFY\r\n", b"501 5.5.4"),
        (b"EXPN list\r\n", b"502 5.5.1"),
        (b"STARTTLS\r\n", b"502 5.5.1"),
        (b"HELP\r\n", b"214-2.0.0 Commands"),
        (b"RSET\r\n", b"250 2.0.0 reset OK\r\n"),
        (b"noop\r\n", b"250 2.0.0 OK\r\n"),
    ],
)
def test_bad_or_out_of_sequence_commands_get_their_reply(session, commands, expected):
    lines = [line for line in session.send(commands).split(b"\r\n") if line]
    # The reply to the last command is the last line, or the first of a multi-line reply.
    last = (
        next(line for line in lines if line[:4] == lines[-1][:3] + b"-")
        if (lines[-1][:3] == b"214")
        else lines[-1]
    )
    assert (last + b"\r\n").startswith(expected), lines
    assert not session.transport.disconnecting


def test_helo_then_mail_with_esmtp_parameter_is_refused(session):
    session.send(b"HELO c.test\r\n")
    assert session.send(b"MAIL FROM:<a@r.test> SIZE=10\r\n").startswith(b"555 5.5.4")


def test_overlong_command_line_is_refused_and_session_continues(world):
    s = Session(make_factory(world, max_line_length=100))
    s.read()
    assert s.send(b"NOOP " + b"x" * 150) == b"500 5.5.2 line too long\r\n"
    assert s.send(b"y" * 500) == b""  # still discarding: the same line
    assert s.send(b"zz\r\nNOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert s.send(b"NOOP " + b"x" * 200 + b"\r\nNOOP\r\n") == (
        b"500 5.5.2 line too long\r\n250 2.0.0 OK\r\n"
    )


def test_too_many_errors_closes_with_421(world):
    s = Session(make_factory(world, max_errors=3))
    s.read()
    out = s.send(b"A\r\nB\r\nC\r\nD\r\nNOOP\r\n")
    assert out.endswith(b"421 4.7.0 too many errors, closing connection\r\n")
    assert out.count(b"500 ") == 3
    assert s.transport.disconnecting


def test_message_over_size_limit_is_refused_552_534_and_nothing_stored(session, world):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    for _ in range(30):
        assert session.send(b"x" * 998 + b"\r\n") == b""
    assert session.send(b".\r\n") == (
        b"552 5.3.4 message size exceeds fixed maximum message size\r\n"
    )
    assert world.inbox_files("alice@example.test") == []
    assert session.send(b"MAIL FROM:<a@r.test>\r\n").startswith(b"250")


@pytest.mark.parametrize("term", [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"])
def test_smuggling_variants_never_end_data_and_refuse_the_message(session, world, term):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    smuggled = (
        b"Subject: s\r\n\r\nx" + term + b"MAIL FROM:<evil@r.test>\r\nRCPT TO:<bob@example.test>\r\n"
        b"DATA\r\nSubject: SMUGGLED\r\n\r\nevil\r\n"
    )
    assert session.send(smuggled) == b""  # all of it is still message text
    assert session.send(b".\r\n").startswith(b"554 5.6.0")
    assert world.inbox_files("alice@example.test") == []
    assert world.inbox_files("bob@example.test") == []


def test_long_data_line_is_message_text_not_commands(session, world):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    session.send(b"Subject: long\r\n\r\n" + b"y" * 5000)
    assert session.send(b"\r\nRSET\r\nQUIT\r\n.\r\n").startswith(b"250 2.0.0 OK delivered")
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.endswith(b"y" * 5000 + b"\r\nRSET\r\nQUIT\r\n")


def test_data_split_into_single_bytes_is_reassembled(session, world):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    body = b"Subject: bytes\r\n\r\n.hidden\r\n..two\r\nend\r\n.\r\n"
    out = b"".join(session.send(bytes([b])) for b in body)
    assert out.startswith(b"250 2.0.0")
    assert world.inbox_files("alice@example.test")[0].endswith(
        b"Subject: bytes\r\n\r\nhidden\r\n.two\r\nend\r\n"
    )


def test_connection_lost_during_data_stores_nothing_and_cleans_spool(session, world):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    session.send(b"Subject: cut\r\n\r\npartial")
    session.protocol.connectionLost(None)
    assert world.inbox_files("alice@example.test") == []
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


def test_too_many_recipients_is_452_453(world):
    s = Session(make_factory(world, max_recipients=1))
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\n")
    assert s.codes(b"RCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n") == [
        "250",
        "452",
    ]


def test_rset_forgets_the_transaction(session):
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nRSET\r\n")
    assert session.send(b"DATA\r\n").startswith(b"503 5.5.1 need MAIL")


def test_rset_with_an_argument_is_501_and_keeps_the_transaction(session):
    """RFC 5321 4.1.1.5: RSET has no parameters (Postfix: ``501 5.5.4 Syntax: RSET``)."""
    session.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\n")
    assert session.send(b"RSET now\r\n") == b"501 5.5.4 RSET takes no arguments\r\n"
    assert session.send(b"DATA\r\n").startswith(b"354")


def test_idle_timeout_closes_with_421_442(world):
    factory = make_factory(world, idle_timeout=30)
    s = Session(factory)
    s.read()
    world.reactor.advance(31)
    assert s.read() == b"421 4.4.2 idle timeout, closing connection\r\n"
    assert s.transport.disconnecting


def test_session_timeout_closes_even_a_busy_client(world):
    s = Session(make_factory(world, idle_timeout=30, session_timeout=60))
    s.read()
    for _ in range(5):
        world.reactor.advance(10)
        assert s.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert not s.transport.disconnecting
    world.reactor.advance(11)
    assert b"421 4.4.2 session too long" in s.read()


def test_starttls_discards_pipelined_commands_and_resets_session(world):
    factory = make_factory(world, tls_creator=object())
    transport = TLSStringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    s = Session(factory, transport)
    s.read()
    assert b"250-STARTTLS" in s.send(b"EHLO c\r\n")
    out = s.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert out == b"220 2.0.0 ready to start TLS\r\n"
    assert transport.tls_creator is factory.tls_creator
    # The injected MAIL was not run: MAIL now needs a fresh EHLO, and STARTTLS isn't offered.
    assert s.send(b"MAIL FROM:<a@r.test>\r\n").startswith(b"503 5.5.1 send HELO")
    assert b"STARTTLS" not in s.send(b"EHLO c\r\n")
    assert s.send(b"STARTTLS\r\n").startswith(b"503 5.5.1 TLS already active")


def test_unknown_recipients_beyond_the_free_ones_are_answered_ever_slower(world):
    from txmailhost.accounts.throttle import LoginThrottle

    throttle = LoginThrottle(world.reactor, ip_limit=10**9, free_failures=2)
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store, rcpt_throttle=throttle),
        Submission(world.store, spool),
        reactor=world.reactor,
    )
    s = Session(factory)
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\n")
    assert s.send(b"RCPT TO:<n1@example.test>\r\n").startswith(b"550 5.1.1")
    assert s.send(b"RCPT TO:<n2@example.test>\r\n").startswith(b"550 5.1.1")
    waits = []
    for i in range(3, 6):
        assert s.send(b"RCPT TO:<n%d@example.test>\r\n" % i) == b""
        waited = 0.0
        while not s.transport.value():
            world.reactor.advance(0.25)
            waited += 0.25
        waits.append(waited)
        assert s.read().startswith(b"550 5.1.1")
    assert waits == [0.5, 1.0, 2.0]
    # Known users are never delayed.
    assert s.send(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")


def test_large_message_spills_to_a_spool_file_that_is_removed_after_delivery(world):
    s = Session(make_factory(world, max_message_size=2_000_000))
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    s.send(b"Subject: big\r\n\r\n")
    spool_dir = os.path.join(world.root, "queue", "tmp")
    for _ in range(400):
        s.send(b"z" * 998 + b"\r\n")
    assert len(os.listdir(spool_dir)) == 1  # past the spill size it streams to disk
    assert s.send(b".\r\n").startswith(b"250 2.0.0")
    assert os.listdir(spool_dir) == []
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.endswith(b"z" * 998 + b"\r\n") and stored.count(b"\r\n") > 400


def _sqlite_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


def _warnings_and_worse(events: list[dict]) -> list[dict]:
    return [e for e in events if e["log_level"] >= LogLevel.warn]


@pytest.mark.parametrize(
    ("error", "reply", "level"),
    [
        # RFC 3463: mail system full. A condition of the host: one warning line, no traceback.
        (OSError(errno.ENOSPC, "No space left on device"), b"452 4.3.1", LogLevel.warn),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), b"452 4.3.1", LogLevel.warn),
        (_sqlite_full(), b"452 4.3.1", LogLevel.warn),  # a mailbox's index on a full disk
        (OSError(errno.EROFS, "Read-only file system"), b"451 4.3.0", LogLevel.warn),
        (OSError(errno.EIO, "Input/output error"), b"451 4.3.0", LogLevel.critical),
    ],
)
def test_failed_delivery_answers_4xx_and_still_removes_the_spool_file(
    world, monkeypatch, error, reply, level
):
    def broken(*args):
        raise error

    monkeypatch.setattr(world.store, "_deliver_sync", broken)
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    with capturedLogs() as events:
        assert s.send(b"Subject: x\r\n\r\nbody\r\n.\r\n").startswith(reply)
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []
    assert world.inbox_files("alice@example.test") == []
    (logged,) = _warnings_and_worse(events)  # one line per message
    assert logged["log_level"] == level
    assert ("log_failure" in logged) == (level == LogLevel.critical)  # a traceback: a bug
    if level == LogLevel.warn:
        assert str(error) in formatEvent(logged)


@pytest.fixture
def disk_full(monkeypatch):
    """Spool files opened from now on write to /dev/full: ENOSPC from the first flush on,
    as on a full disk (the file itself is created, as there)."""

    def full(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes it
        if "r" not in mode or "+" in mode:
            dev_full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(dev_full, file.fileno())
            os.close(dev_full)
        return file

    monkeypatch.setattr(incoming, "open", full, raising=False)


def test_a_flood_on_a_full_disk_is_452_and_one_warning_line_per_message(world, disk_full):
    """Messages small enough to be written in one go at the end, and one large enough to
    stream to its file as it arrives (the connection is closed after that one's 452)."""
    s = Session(make_factory(world, max_message_size=2_000_000))
    s.read()
    s.send(b"EHLO c\r\n")
    envelope = b"MAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    with capturedLogs() as events:
        for _ in range(5):
            assert s.send(envelope).endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            assert s.send(b"Subject: x\r\n\r\nbody\r\n.\r\n").startswith(b"452 4.3.1")
        s.send(envelope + b"Subject: big\r\n\r\n")
        replies = b"".join(s.send(b"z" * 998 + b"\r\n") for _ in range(1000))
        assert replies.startswith(b"452 4.3.1") and s.transport.disconnecting
    logged = _warnings_and_worse(events)
    assert [e["log_level"] for e in logged] == [LogLevel.warn] * 6
    assert not any("log_failure" in e for e in logged)
    assert all("No space left on device" in formatEvent(e) for e in logged)
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


def test_spilled_message_is_removed_when_the_client_disconnects(world):
    s = Session(make_factory(world, max_message_size=2_000_000))
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    s.send(b"x" * 300_000)
    spool_dir = os.path.join(world.root, "queue", "tmp")
    assert len(os.listdir(spool_dir)) == 1
    s.protocol.connectionLost(None)
    assert os.listdir(spool_dir) == []


def test_plus_folder_delivery_uses_an_existing_folder_and_falls_back_to_inbox(world):
    from txmailhost.routing import Router

    router = Router(world.accounts, world.reactor, world.pool, plus_folders=True)
    spool = IncomingSpool(os.path.join(world.root, "queue", "tmp"), world.reactor, world.pool)
    spool.sweep()  # creates the directory, as the service does at start
    s = Session(
        SMTPFactory(
            InboundPolicy(router, world.store),
            Submission(world.store, spool),
            reactor=world.reactor,
        )
    )
    s.read()
    s.send(b"EHLO c\r\n")
    for rcpt in (b"alice+Junk@example.test", b"alice+nosuch@example.test"):
        s.send(b"MAIL FROM:<a@r.test>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
        assert s.send(b"Subject: " + rcpt + b"\r\n\r\nx\r\n.\r\n").startswith(b"250")
    assert [b"Junk@" in m for m in world.inbox_files("alice@example.test", "Junk")] == [True]
    assert [b"nosuch@" in m for m in world.inbox_files("alice@example.test")] == [True]


def test_data_still_incoming_is_acknowledged_at_once(world, monkeypatch):
    """A client that writes the body and then ``.<CRLF>`` in two sends must not wait for the
    kernel's delayed ACK (peer.quick_ack)."""
    import txmailhost.smtp.server as smtp_server

    acked: list[object] = []
    monkeypatch.setattr(smtp_server, "quick_ack", acked.append)
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert s.send(b"Subject: x\r\n\r\nbody\r\n") == b"" and len(acked) == 1
    assert s.send(b".\r\n").startswith(b"250 2.0.0")
    assert len(acked) == 1


def _tolerant_session(world) -> Session:
    """A session that may send any number of NOOPs and HELPs (``max_junk_commands``)."""
    s = Session(make_factory(world, max_junk_commands=1_000_000))
    s.read()
    return s


def test_a_client_that_stops_reading_replies_stops_being_read(world):
    """Pipelined commands from a client that never reads the replies must not pile up replies
    in memory: once the transport's buffer is full (it pauses our producer), no further command
    runs and reading stops; when the client reads, the rest are answered in order."""
    session = _tolerant_session(world)
    session.send(b"EHLO c.test\r\n")
    producer = session.transport.producer
    assert producer is not None and session.transport.streaming
    producer.pauseProducing()  # what the transport does when 64 KiB wait to be sent
    assert session.send(b"NOOP\r\n" * 3) == b""
    assert session.transport.producerState == "producing"  # a little input may wait
    session.send(b"NOOP\r\n" * 20_000)
    assert session.transport.producerState == "paused"  # a lot: reading stops
    producer.resumeProducing()  # the client read what was buffered
    assert session.read() == b"250 2.0.0 OK\r\n" * 20_003
    assert session.transport.producerState == "producing"


def test_replies_to_a_long_pipeline_are_written_in_bounded_batches(world):
    """The transport must see the replies while the pipeline is being worked through, not in
    one write at its end, or it can't tell the server to stop."""
    session = _tolerant_session(world)
    session.send(b"EHLO c.test\r\n")
    writes: list[bytes] = []
    real = session.transport.write
    session.transport.write = lambda data: writes.append(data) or real(data)
    session.send(b"HELP\r\n" * 1000)
    assert len(writes) > 1 and max(map(len, writes)) < 64 * 1024
