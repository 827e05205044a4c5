"""IMAP session behaviour at the byte level (StringTransport) over a real store and Portal:
greeting, login rules, TLS, literals and limits, bad input, state checks."""

from __future__ import annotations

import base64
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from tests.imap.support import ALICE, LOOPBACK, REMOTE, Session, deliver, make_factory
from tests.support.fixtures import PASSWORD
from tests.support.onsocket import on_real_socket
from txmailhost.peer import PlaintextAuth

CREATED = re.compile(rb"b OK \[MAILBOXID \([A-Za-z0-9_-]+\)\] CREATE completed\r\n")  # RFC 8474


@pytest.fixture
def factory(world):
    return make_factory(world)


@pytest.fixture
def session(factory):
    s = Session(factory)
    yield s
    s.close()


@pytest.fixture
def alice(session):
    assert b"a OK" in session.login()
    return session


@implementer(ITLSTransport)
class TLSCapableTransport(StringTransport):
    def startTLS(self, contextFactory):
        self.tls_started_with = contextFactory


CREATOR = object()


def test_greeting_lists_capabilities_with_auth_plain_on_loopback(session):
    assert session.greeting == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE AUTH=PLAIN]"
        b" txmailhost IMAP4rev1 ready\r\n"
    )


def test_remote_plaintext_connection_advertises_logindisabled(factory):
    s = Session(factory, peer=REMOTE)
    assert b"LOGINDISABLED" in s.greeting
    assert b"AUTH=PLAIN" not in s.greeting


def test_login_from_remote_without_tls_is_refused_privacyrequired(factory):
    s = Session(factory, peer=REMOTE)
    assert s.cmd(f"a LOGIN {ALICE} {PASSWORD}") == (
        b"a NO [PRIVACYREQUIRED] plaintext login not allowed on an unencrypted connection;"
        b" use STARTTLS first\r\n"
    )


def test_another_loopback_address_is_refused_plaintext_login(factory):
    """A local proxy makes every client 127.0.0.x: only the server's own address counts."""
    s = Session(factory, peer=IPv4Address("TCP", "127.0.0.2", 40143))
    assert b"LOGINDISABLED" in s.greeting and b"AUTH=PLAIN" not in s.greeting
    assert s.cmd(f"a LOGIN {ALICE} {PASSWORD}").startswith(b"a NO [PRIVACYREQUIRED] ")


def test_plaintext_auth_from_a_configured_network_is_allowed(world):
    factory = make_factory(world, plaintext_auth=PlaintextAuth(["10.1.0.0/16"]))
    s = Session(factory, peer=IPv4Address("TCP", "10.1.2.3", 40143))
    assert b"AUTH=PLAIN" in s.greeting
    assert s.cmd(f"a LOGIN {ALICE} {PASSWORD}").startswith(b"a OK ")


def test_login_succeeds_with_capabilities_in_the_tagged_ok(session):
    reply = session.login()
    assert reply.startswith(b"a OK [CAPABILITY IMAP4rev1 ")
    assert b"UIDPLUS" in reply and b"MOVE" in reply and b"QRESYNC" in reply
    assert reply.endswith(b"] alice@example.test authenticated\r\n")


def test_wrong_password_fails_after_a_delay(session, world):
    session.cmd(f"a LOGIN {ALICE} wrong")
    assert session.take() == b""  # nothing before the delay
    world.reactor.advance(1.0)
    assert session.take() == b"a NO [AUTHENTICATIONFAILED] authentication failed\r\n"


def test_third_failed_login_closes_the_connection(session, world):
    for tag in ("a", "b", "c"):
        session.cmd(f"{tag} LOGIN {ALICE} wrong")
        world.reactor.advance(1.0)
    assert session.transport.disconnecting


def test_authenticate_plain_with_continuation(session):
    assert session.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    assert session.cmd(token).startswith(b"a OK [CAPABILITY")


def test_authenticate_plain_with_initial_response(session):
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert session.cmd(f"a AUTHENTICATE PLAIN {token}").startswith(b"a OK [CAPABILITY")


def test_authenticate_cancelled_with_star_is_bad(session):
    session.cmd("a AUTHENTICATE PLAIN")
    assert session.cmd("*") == b"a BAD authentication cancelled\r\n"


def test_commands_before_login_are_refused_with_bad(session):
    assert session.cmd("a SELECT INBOX") == b"a BAD log in first\r\n"


def test_unknown_command_is_bad_with_the_tag(session):
    assert session.cmd("x17 FROBNICATE") == b"x17 BAD unknown command\r\n"


def test_garbage_without_a_tag_is_untagged_bad(session):
    assert session.cmd("") == b"* BAD missing tag\r\n"
    assert session.cmd("(((") == b"* BAD missing tag\r\n"


def test_select_command_in_selected_only_state_is_bad_when_authenticated(alice):
    assert alice.cmd("b FETCH 1 FLAGS") == b"b BAD command not valid in authenticated state\r\n"


def test_quoted_string_with_escaped_quote_is_one_argument(alice):
    assert CREATED.fullmatch(alice.cmd('b CREATE "a\\"b"'))
    assert b'"a\\"b"' in alice.cmd('c LIST "" *')


def test_literal_gets_a_continuation_then_is_read(alice):
    assert alice.cmd("b CREATE {6}") == b"+ Ready for literal data\r\n"
    assert CREATED.fullmatch(alice.cmd("Lists1"))


def test_non_synchronizing_literal_needs_no_continuation(alice):
    assert CREATED.fullmatch(alice.send(b"b CREATE {6+}\r\nLists2\r\n"))


def test_oversized_append_literal_is_refused_before_any_continuation(alice):
    assert alice.cmd("b APPEND INBOX {999999999}") == (
        b"b NO [TOOBIG] literal too large (limit 52428800 octets)\r\n"
    )
    assert alice.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_oversized_literal_before_login_is_refused(session):
    assert session.cmd("a LOGIN {100000}") == (
        b"a NO [TOOBIG] literal too large (limit 8192 octets)\r\n"
    )


def test_before_login_a_command_holds_few_small_literals(session):
    """64 literals of 64 KiB in one unfinished command held 4 MiB per unauthenticated
    connection; before login a literal has 8 KiB at most and a command 16 of them."""
    assert session.send(b"a LOGIN {8192}\r\n") == b"+ Ready for literal data\r\n"
    session.send(b"x" * 8192)
    for _ in range(15):  # 16 literals in all
        session.send(b" {1}\r\n")
        session.send(b"x")
    assert session.send(b" {1}\r\n").startswith(b"a NO [LIMIT]")


def test_oversized_non_synchronizing_literal_is_read_and_dropped(world):
    s = Session(make_factory(world, max_literal_size=10))
    s.login()
    assert s.send(b"b APPEND INBOX {15+}\r\n") == b""
    assert (
        s.send(b"0123456789ABCDE\r\n") == b"b NO [TOOBIG] literal too large (limit 10 octets)\r\n"
    )
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_huge_non_synchronizing_literal_closes_the_connection(alice):
    reply = alice.send(b"b APPEND INBOX {999999999+}\r\n")
    assert reply == b"b BAD literal too large\r\n* BYE literal too large\r\n"
    assert alice.transport.disconnecting


def test_over_long_line_is_bad_and_the_session_continues(world):
    s = Session(make_factory(world, max_line_length=100))
    reply = s.send(b"a1 NOOP " + b"x" * 200 + b"\r\na2 NOOP\r\n")
    assert reply == b"a1 BAD [TOOBIG] command line too long\r\na2 OK NOOP completed\r\n"


def test_over_long_line_split_over_reads_is_skipped_to_its_end(world):
    s = Session(make_factory(world, max_line_length=100))
    assert s.send(b"a1 NOOP " + b"x" * 200) == b"a1 BAD [TOOBIG] command line too long\r\n"
    assert s.send(b"y" * 500) == b""
    assert s.send(b"zz\r\na2 NOOP\r\n") == b"a2 OK NOOP completed\r\n"


# The rest of a refused command is never read as commands: a refused command's next
# non-synchronizing literal, however it is reached, is its own (RFC 7888 §4). Each of these
# ran "b CREATE Injected" (a mail body's line in a refused MULTIAPPEND, say).
INJECTED = b"b CREATE Injected\r\n"


def _no_injection(s: Session) -> None:
    assert b"Injected" not in s.cmd('c LIST "" *')


def test_a_refused_literals_next_literal_is_dropped_not_run(world):
    s = Session(make_factory(world, max_literal_size=10))
    s.login()
    reply = s.send(
        b"a APPEND INBOX {15+}\r\n0123456789ABCDE {%d+}\r\n" % len(INJECTED) + INJECTED + b"\r\n"
    )
    assert reply == b"a NO [TOOBIG] literal too large (limit 10 octets)\r\n"
    _no_injection(s)


def test_a_refused_commands_literals_split_over_reads_are_all_dropped(world):
    s = Session(make_factory(world, max_literal_size=10))
    s.login()
    s.send(b"a APPEND INBOX {15+}\r\n0123456789")
    assert s.send(b"ABCDE {3+}") == b"a NO [TOOBIG] literal too large (limit 10 octets)\r\n"
    for part in (b"\r", b"\nxy", b"z {%d+}\r\n" % len(INJECTED), INJECTED[:5], INJECTED[5:]):
        assert s.send(part) == b""
    assert s.send(b"\r\nd NOOP\r\n") == b"d OK NOOP completed\r\n"
    _no_injection(s)


def test_an_over_long_lines_own_literal_is_dropped_not_run(world):
    s = Session(make_factory(world, max_line_length=100))
    s.login()
    line = b"a SEARCH TEXT " + b"x" * 200 + b" TEXT {%d+}\r\n" % len(INJECTED)
    assert s.send(line + INJECTED + b"\r\n") == b"a BAD [TOOBIG] command line too long\r\n"
    _no_injection(s)
    s.send(b"a SEARCH TEXT " + b"x" * 200)  # the line's end, and its literal, come later
    assert s.send(b" TEXT {%d+}\r\n" % len(INJECTED) + INJECTED + b"\r\n") == b""
    _no_injection(s)


def test_too_many_literals_before_login_drops_the_rest_of_the_command(session):
    command = b"a ID (" + b"{1+}\r\nx " * 17 + b"{%d+}\r\n" % len(INJECTED) + INJECTED + b")\r\n"
    assert session.send(command).startswith(b"a NO [LIMIT]")
    assert session.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_a_refused_commands_huge_next_literal_ends_the_session(world):
    s = Session(make_factory(world, max_literal_size=10))
    s.login()
    s.send(b"a APPEND INBOX {15+}\r\n0123456789ABCDE {999999999+}\r\n")
    assert s.transport.disconnecting


def test_lines_ended_by_a_bare_lf_work_as_with_nc(world):
    """``nc`` sends LF alone; like Dovecot, a line ends at LF and a CR before it is dropped,
    literals included (the octet count covers the literal only)."""
    s = Session(make_factory(world))
    s.take()
    assert s.send(f"a1 LOGIN {ALICE} {PASSWORD}\n".encode()).startswith(b"a1 OK")
    reply = s.send(b"a2 APPEND INBOX {5+}\nhello\na3 SELECT INBOX\na4 FETCH 1 BODY[]\n")
    assert reply.startswith(b"a2 OK [APPENDUID ")
    assert b"* 1 FETCH (BODY[] {5}\r\nhello FLAGS (\\Recent \\Seen))\r\na4 OK" in reply


def test_deep_parentheses_are_bad_not_a_crash(alice):
    alice.cmd("s SELECT INBOX")
    reply = alice.cmd("b SEARCH " + "(" * 100 + "ALL" + ")" * 100)
    assert reply == b"b BAD too deeply nested\r\n"


def test_too_many_bad_commands_close_the_connection(session):
    for i in range(20):
        session.cmd(f"t{i} BOGUS")
    assert session.transport.disconnecting


def test_pipelined_commands_are_answered_in_order(alice):
    reply = alice.send(b"b NOOP\r\nc CAPABILITY\r\nd NOOP\r\n")
    assert reply.startswith(b"b OK NOOP completed\r\n* CAPABILITY ")
    assert reply.endswith(b"c OK CAPABILITY completed\r\nd OK NOOP completed\r\n")


@pytest.mark.parametrize("end", ["\r\n", "\n"])
def test_starttls_discards_pipelined_commands(world, factory, end):
    factory.tls_creator = CREATOR
    s = Session.__new__(Session)
    s.factory = factory
    s.transport = TLSCapableTransport(peerAddress=REMOTE)
    s.protocol = factory.buildProtocol(REMOTE)
    s.protocol.makeConnection(s.transport)
    greeting = s.take()
    assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting
    reply = s.send(f"a STARTTLS{end}b LOGIN {ALICE} {PASSWORD}{end}".encode())
    assert reply == b"a OK begin TLS negotiation now\r\n"
    assert s.transport.tls_started_with is CREATOR
    caps = s.cmd("c CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps
    assert s.cmd(f"d LOGIN {ALICE} {PASSWORD}").startswith(b"d OK")


def test_replies_reach_the_socket_without_waiting_for_the_reactors_next_turn(factory):
    """A client in lock-step (an APPEND: the command, "+", the literal, the tagged OK) paid a
    reactor turn and two epoll_ctl calls per reply while Twisted's buffer waited for the
    socket to be reported writable. Over a real loopback TCP connection, each reply is on
    the wire when the line that asked for it has been handled (``sendnow.write_now``)."""
    message = b"Subject: now\r\n\r\nat once\r\n"
    with on_real_socket(factory, LOOPBACK) as wire:
        answer = wire.answer
        assert answer(b"").startswith(b"* OK [CAPABILITY ")
        assert answer(f"a LOGIN {ALICE} {PASSWORD}\r\n".encode()).startswith(b"a OK ")
        assert answer(b"b APPEND INBOX {%d}\r\n" % len(message)) == b"+ Ready for literal data\r\n"
        assert re.fullmatch(
            rb"b OK \[APPENDUID \d+ 1\] APPEND completed\r\n", answer(message + b"\r\n")
        )
        assert answer(b"c NOOP\r\n") == b"c OK NOOP completed\r\n"
        assert wire.transport not in wire.reactor.getWriters()


def test_logout_says_bye_and_closes(alice):
    assert alice.cmd("z LOGOUT") == (
        b"* BYE txmailhost IMAP server signing off\r\nz OK LOGOUT completed\r\n"
    )
    assert alice.transport.disconnecting


def test_idle_timeout_says_bye(alice, world):
    world.reactor.advance(1799)
    assert not alice.transport.disconnecting  # RFC 9051 5.4: at least 30 minutes logged in
    world.reactor.advance(1)
    assert alice.take() == b"* BYE autologout; idle for too long\r\n"
    assert alice.transport.disconnecting


def test_before_login_an_idle_session_goes_after_three_minutes(session, world):
    """As Dovecot's login processes: an unauthenticated session only holds a connection."""
    world.reactor.advance(179)
    assert not session.transport.disconnecting
    world.reactor.advance(1)
    assert session.take() == b"* BYE autologout; idle for too long\r\n"
    assert session.transport.disconnecting


def test_id_answers_with_the_server_name(session):
    assert session.cmd('a ID ("name" "test")') == (
        b'* ID ("name" "txmailhost" "vendor" "txmailhost")\r\na OK ID completed\r\n'
    )


def test_enable_condstore_and_qresync(alice):
    assert alice.cmd("b ENABLE QRESYNC") == b"* ENABLED QRESYNC\r\nb OK ENABLE completed\r\n"


def test_namespace_is_personal_plus_other_users_and_shared_over_an_acl_store(alice, world):
    from txmailhost.store.interfaces import IAclStore

    if IAclStore.providedBy(world.store):  # RFC 4314 sharing: imap/acl.py
        expected = b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))\r\n'
    else:
        expected = b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert alice.cmd("b NAMESPACE") == expected + b"b OK NAMESPACE completed\r\n"


def test_quota_reports_usage_in_kib(alice, world):
    deliver(world, ALICE, b"Subject: q\r\n\r\n" + b"x" * 3000 + b"\r\n")
    assert alice.cmd("b GETQUOTAROOT INBOX") == (
        b'* QUOTAROOT "INBOX" ""\r\n* QUOTA "" (STORAGE 3 1099511627776)\r\n'
        b"b OK GETQUOTAROOT completed\r\n"
    )


def test_uid_prefix_on_a_command_without_uid_form_is_bad(alice):
    assert alice.cmd("b UID LIST") == b"b BAD unknown command\r\n"


def test_idle_command_times_out_with_bye(alice, world):
    alice.cmd("s SELECT INBOX")
    assert alice.cmd("b IDLE") == b"+ idling\r\n"
    world.reactor.advance(1800)
    assert alice.take() == b"* BYE autologout; idle for too long\r\n"
    assert alice.transport.disconnecting


def test_quota_reports_the_accounts_limit_when_known(world):
    from twisted.internet.defer import succeed

    s = Session(make_factory(world, quota_of=lambda user: succeed(10 * 1024 * 1024)))
    s.login()
    assert s.cmd('b GETQUOTA ""') == (
        b'* QUOTA "" (STORAGE 0 10240)\r\nb OK GETQUOTA completed\r\n'
    )


def test_append_over_the_quota_fails_with_overquota_and_stores_nothing(world):
    from twisted.internet.defer import succeed

    s = Session(make_factory(world, quota_of=lambda user: succeed(100)))
    s.login()
    assert s.cmd("a APPEND INBOX {10+}\r\nSubject: x").startswith(b"a OK [APPENDUID")
    reply = s.cmd("b APPEND INBOX {200+}\r\n" + "y" * 200)
    assert reply == b"b NO [OVERQUOTA] mailbox quota exceeded\r\n"
    assert s.cmd("c STATUS INBOX (MESSAGES)").startswith(b'* STATUS "INBOX" (MESSAGES 1)')


def test_append_and_getquota_while_the_accounts_database_is_down_are_unavailable(world):
    """The limit can't be read (the accounts' database restarting, locked): a temporary
    ``NO [UNAVAILABLE]`` the client retries, not ``[SERVERBUG]``, and nothing is stored."""
    import sqlite3

    from twisted.internet.defer import fail

    def down(user):
        return fail(sqlite3.OperationalError("database is locked"))

    s = Session(make_factory(world, quota_of=down))
    s.login()
    reply = s.cmd("a APPEND INBOX {10+}\r\nSubject: x")
    assert reply == b"a NO [UNAVAILABLE] quota unavailable, try again later\r\n"
    assert s.cmd('b GETQUOTA ""') == b"b NO [UNAVAILABLE] quota unavailable, try again later\r\n"
    assert s.cmd("c STATUS INBOX (MESSAGES)").startswith(b'* STATUS "INBOX" (MESSAGES 0)')


def test_login_while_the_accounts_database_is_down_is_unavailable_and_not_counted(
    world, monkeypatch
):
    """The password can't be checked (the accounts' database restarting or locked): ``NO
    [UNAVAILABLE]``, which a client retries, not ``[SERVERBUG]``; nothing counts as a failed
    login, and the same login works once the database answers."""
    import sqlite3

    def down(address):
        raise sqlite3.OperationalError("database is locked")

    s = Session(make_factory(world))
    with monkeypatch.context() as patch:
        patch.setattr(world.accounts, "password_hash", down)
        for tag in ("a", "b", "c", "d"):
            reply = s.cmd(f"{tag} LOGIN {ALICE} {PASSWORD}")
            assert (
                reply
                == f"{tag} NO [UNAVAILABLE] authentication unavailable, try again later\r\n".encode()
            )
    assert s.login().startswith(b"a OK")


def test_a_client_that_stops_reading_replies_stops_being_read(alice):
    """Pipelined commands from a client that never reads the replies must not pile up replies
    in memory: while the transport's buffer is full (it pauses the session's producer), no
    further command runs and reading stays paused; when the client reads, the rest run (64 a
    turn of the reactor)."""
    pressure = alice.transport.producer
    assert pressure is not None and alice.transport.streaming
    pressure.pauseProducing()  # what the transport does when 64 KiB wait to be sent
    reply = alice.send(b"".join(b"n%d NOOP\r\n" % i for i in range(300)))
    assert reply == b"n0 OK NOOP completed\r\n"  # the command at hand, no more
    assert alice.transport.producerState == "paused"
    pressure.resumeProducing()  # the client read it
    answered = alice.take().count(b" OK NOOP completed\r\n")
    for _turn in range(10):  # 64 commands a turn of the reactor (server.COMMANDS_A_TURN)
        alice.factory.reactor.advance(0)
        answered += alice.take().count(b" OK NOOP completed\r\n")
    assert answered == 299
    assert alice.transport.producerState == "producing"


def test_idle_still_reads_done_once_the_client_catches_up(alice):
    alice.cmd("s SELECT INBOX")
    pressure = alice.transport.producer
    pressure.pauseProducing()
    assert alice.cmd("i IDLE") == b"+ idling\r\n"
    assert alice.cmd("DONE") == b""  # not read while the client isn't reading
    pressure.resumeProducing()  # the client read what piled up
    assert alice.take() == b"i OK IDLE terminated\r\n"


def test_idle_with_done_in_the_same_write_ends_at_once(alice):
    """``IDLE\r\nDONE\r\n`` in one packet: the DONE, already read, was handed over before
    the command waited for it, which then waited on nothing: ``NO [SERVERBUG]``."""
    alice.cmd("s SELECT INBOX")
    assert alice.send(b"i IDLE\r\nDONE\r\nn NOOP\r\n") == (
        b"+ idling\r\ni OK IDLE terminated\r\nn OK NOOP completed\r\n"
    )
    # as over a socket, where IDLE asks for its line after the store answered: the line is
    # already in the buffer and handed over as reading resumes
    protocol = alice.protocol
    protocol._pause()
    protocol.dataReceived(b"DONE\r\n")
    result = Deferred.fromCoroutine(protocol.read_line())
    assert result.called and result.result == b"DONE"


def test_a_fetch_stops_when_the_client_goes(alice, world):
    """A client that asks for every body and goes away while the replies wait to be read
    leaves the rest unread: the FETCH stops at the batch it was writing (the messages it
    never sent stay unseen) instead of rendering the mailbox for nobody."""
    from tests.imap.support import deliver
    from txmailhost.imap.messages import CONTENT_BATCH

    for i in range(CONTENT_BATCH * 2 + 10):
        deliver(world, ALICE, b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
    assert b"s OK" in alice.cmd("s SELECT INBOX")
    alice.transport.producer.pauseProducing()  # the client isn't reading
    reply = alice.cmd("f FETCH 1:* (BODY[])")
    assert reply.count(b"* ") == CONTENT_BATCH and b"f OK" not in reply
    alice.close()  # it went
    other = Session(make_factory(world))
    other.login()
    other.cmd("s SELECT INBOX")
    seen = other.cmd("t SEARCH SEEN").split(b"\r\n")[0].split()[2:]
    assert len(seen) == CONTENT_BATCH
    other.close()


def test_oversized_literal_announcements_end_the_session_as_bad_commands_do(session):
    """Each ``NO [TOOBIG]`` counts: a client announcing literals it may not send, again and
    again, is let go after MAX_BAD_COMMANDS instead of being answered for ever."""
    from txmailhost.imap.server import MAX_BAD_COMMANDS

    out = session.send(b"a LOGIN {100000}\r\n" * (MAX_BAD_COMMANDS + 5))
    assert out.count(b"NO [TOOBIG]") == MAX_BAD_COMMANDS
    assert out.endswith(b"* BYE too many invalid commands\r\n")
    assert session.transport.disconnecting


def test_refusals_stop_reading_while_the_client_does_not_read_them(session):
    """A refusal (no command runs) stops reading when the replies pile up, as a command's end
    does: 112 MiB of refused announcements, never read, grew the server by 635 MiB."""
    session.protocol._pressure.pauseProducing()  # the transport's send buffer is full
    out = session.send(b"a LOGIN {100000}\r\n" + b"b NOOP\r\n")
    assert out.count(b"NO [TOOBIG]") == 1 and b"b OK" not in out
    assert session.transport.producerState == "paused"
    session.protocol._pressure.resumeProducing()  # the client read them
    assert b"b OK NOOP" in session.take()


def test_an_over_long_line_during_idle_ends_it_with_bad(world):
    """During IDLE the next line is IDLE's own (DONE). An over-long one was answered with a
    tagged BAD whose "tag" was the junk itself (up to a whole line echoed back), and IDLE
    went on."""
    s = Session(make_factory(world, max_line_length=100))
    s.login()
    s.cmd("s SELECT INBOX")
    assert s.cmd("b IDLE") == b"+ idling\r\n"
    assert s.send(b"x" * 300 + b"\r\nc NOOP\r\n") == (
        b"b BAD [TOOBIG] command line too long\r\nc OK NOOP completed\r\n"
    )


def test_an_over_long_lines_long_tag_is_not_echoed(world):
    s = Session(make_factory(world, max_line_length=1000))
    s.login()
    assert s.send(b"t" * 600 + b" NOOP " + b"x" * 600 + b"\r\n") == (
        b"* BAD [TOOBIG] command line too long\r\n"
    )
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"


def test_copy_over_the_quota_fails_with_overquota_and_copies_nothing(world):
    """RFC 9208 4.3: COPY counts as APPEND does (it was never checked: a user at their quota
    could double their mail with one COPY); a MOVE among one's own mailboxes adds nothing."""
    from twisted.internet.defer import succeed

    deliver(world, ALICE, b"Subject: big\r\n\r\n" + b"x" * 300 + b"\r\n")
    s = Session(make_factory(world, quota_of=lambda user: succeed(500)))
    s.login()
    s.cmd("a CREATE Archive")
    s.cmd("b SELECT INBOX")
    assert s.cmd("c COPY 1 Archive") == b"c NO [OVERQUOTA] mailbox quota exceeded\r\n"
    assert s.cmd("d STATUS Archive (MESSAGES)").startswith(b'* STATUS "Archive" (MESSAGES 0)')
    assert s.cmd("e MOVE 1 Archive").endswith(b"e OK MOVE completed\r\n")
    assert s.cmd("f STATUS Archive (MESSAGES)").startswith(b'* STATUS "Archive" (MESSAGES 1)')
