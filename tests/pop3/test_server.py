"""POP3 protocol behaviour at the byte level (StringTransport), over a real Maildir store,
a real accounts database, checker, realm and Portal. Store and checker work runs synchronously
(SyncThreadPool), and the SyncReactor doubles as the Clock for timeouts and login delays."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support.fixtures import build_store
from tests.support.onsocket import on_real_socket
from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.realm import MailRealm
from txmailhost.peer import is_loopback
from txmailhost.pop3.replies import DotStuffer, stuffed_message
from txmailhost.pop3.server import POP3Factory
from txmailhost.store.files import deliver_file

ALICE, PASSWORD = "alice@example.test", "correct horse"
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40110)
REMOTE = IPv4Address("TCP", "192.0.2.10", 40110)
SERVER = IPv4Address("TCP", "127.0.0.1", 110)  # where the server listens
CREATOR = object()  # stands in for a CertificateOptions: the fake transport only records it

MSG1 = (
    b"From: bob@example.test\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n..two dots\r\n.\r\nlast line\r\n"
)
MSG2 = b"Subject: two\r\n\r\nbody\r\n"
CAPA_LOOPBACK = (
    b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
    b"PIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION txmailhost\r\n.\r\n"
)
AUTH_FAILED = b"-ERR [AUTH] authentication failed\r\n"
PLAINTEXT_REFUSED = (
    b"-ERR [AUTH] plaintext authentication not allowed on an unencrypted connection;"
    b" use STLS first\r\n"
)


def result(d: Deferred):
    """The result of a Deferred that has already fired (everything here is synchronous)."""
    out: list = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def plain(authzid: str, authcid: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A TCP-like transport that records startTLS, TCP_NODELAY and how many writes it got."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tls_creator = None
        self.nodelay = None
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def startTLS(self, creator, normal=True) -> None:
        self.tls_creator = creator

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled


class Client:
    """One POP3 session: send bytes, get back what the server wrote in answer."""

    def __init__(self, factory: POP3Factory, transport: StringTransport) -> None:
        self.transport = transport
        self.protocol = factory.buildProtocol(transport.getPeer())
        self.protocol.makeConnection(transport)
        self.greeting = self.read()

    def read(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def pump(self) -> None:
        """Be the TCP socket that keeps asking a pull producer (a message being sent) for more;
        the streaming producer registered for the whole session (OutputPressure) is left be."""
        while self.transport.producer is not None and not self.transport.streaming:
            self.transport.producer.resumeProducing()

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        self.pump()
        return self.read()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def login(self) -> bytes:
        assert self.cmd(f"USER {ALICE}") == b"+OK send PASS\r\n"
        reply = self.cmd(f"PASS {PASSWORD}")
        assert reply.startswith(b"+OK "), reply
        return reply

    def drop(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> AccountsDB:
    # Read-only for every test (logins don't write), so one scrypt hash serves the module.
    db = AccountsDB(str(tmp_path_factory.mktemp("accounts") / "accounts.sqlite"))
    db.add_domain("example.test")
    db.add_user(ALICE, PASSWORD)
    return db


@dataclass
class World:
    root: Path
    reactor: SyncReactor
    store: Any  # an IMailStore of the backend under test
    portal: Portal

    def deliver(self, message: bytes) -> int:
        """Like SMTP: from a spool file (linked into a Maildir, read by other stores)."""
        source = self.root / f"incoming-{len(os.listdir(self.root))}"
        source.write_bytes(message)
        uids = result(deliver_file(self.store, [(ALICE, "INBOX")], str(source)))
        source.unlink()
        return uids[(ALICE, "INBOX")]

    def inbox(self) -> Any:
        return result(self.store.open(ALICE, "INBOX"))

    def files(self) -> list[bytes]:
        """The messages still stored, sorted (what survives a QUIT)."""
        inbox = self.inbox()
        uids = [info.uid for info in result(inbox.snapshot()).messages]
        return sorted(m.content for m in result(inbox.messages(uids, content=True)))

    def connect(self, peer=LOOPBACK, transport: StringTransport | None = None, **options) -> Client:
        factory = POP3Factory(
            self.portal, reactor=self.reactor, hostname="mail.example.test", **options
        )
        return Client(
            factory, transport or TLSStringTransport(hostAddress=SERVER, peerAddress=peer)
        )


@pytest.fixture
def world(tmp_path, accounts, backend) -> World:
    reactor, pool = SyncReactor(), SyncThreadPool()
    store = build_store(backend, str(tmp_path / "mail"), reactor, pool)
    result(store.provision(ALICE))
    portal = Portal(MailRealm(store), [AccountsChecker(accounts, reactor, pool)])
    return World(tmp_path, reactor, store, portal)


@pytest.fixture
def stocked(world) -> World:
    """A world whose INBOX holds MSG1 and MSG2."""
    world.deliver(MSG1)
    world.deliver(MSG2)
    return world


@pytest.fixture
def session(stocked) -> Client:
    client = stocked.connect()
    client.login()
    return client


# -- greeting and CAPA -------------------------------------------------------------------------


def test_greeting_names_the_host_and_sets_tcp_nodelay(world):
    client = world.connect()
    assert client.greeting == b"+OK txmailhost POP3 ready mail.example.test\r\n"
    assert client.transport.nodelay is True


def test_capa_on_loopback_offers_user_and_sasl_plain(world):
    assert world.connect().cmd("CAPA") == CAPA_LOOPBACK


def test_capa_from_remote_peer_hides_plaintext_auth(world):
    assert world.connect(REMOTE).cmd("CAPA") == (
        b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
        b"PIPELINING\r\nIMPLEMENTATION txmailhost\r\n.\r\n"
    )


def test_capa_offers_stls_only_with_a_tls_creator_on_a_tls_capable_transport(world):
    assert b"\r\nSTLS\r\n" in world.connect(REMOTE, tls_creator=CREATOR).cmd("CAPA")
    assert b"STLS" not in world.connect(REMOTE).cmd("CAPA")
    plain_transport = StringTransport(peerAddress=REMOTE)
    client = world.connect(transport=plain_transport, tls_creator=CREATOR)
    assert b"STLS" not in client.cmd("CAPA")


def test_capa_on_implicit_tls_offers_plaintext_auth_and_no_stls(world):
    reply = world.connect(REMOTE, tls_creator=CREATOR, implicit_tls=True).cmd("CAPA")
    assert b"\r\nUSER\r\nSASL PLAIN\r\n" in reply
    assert b"STLS" not in reply


def test_capa_after_login_lists_the_same_capabilities(session):
    assert session.cmd("CAPA") == CAPA_LOOPBACK


def test_verbs_are_case_insensitive(world):
    assert world.connect().cmd("cApA") == CAPA_LOOPBACK


# -- USER / PASS -------------------------------------------------------------------------------


def test_user_pass_logs_in_and_reports_the_maildrop(stocked):
    client = stocked.connect()
    assert client.cmd(f"USER {ALICE}") == b"+OK send PASS\r\n"
    reply = client.cmd(f"PASS {PASSWORD}")
    assert reply == b"+OK %s has 2 messages (%d octets)\r\n" % (
        ALICE.encode(),
        len(MSG1) + len(MSG2),
    )


def test_commands_ended_by_a_bare_lf_work_as_with_nc(stocked):
    """``nc`` sends LF alone; like Dovecot, a line ends at LF and a CR before it is dropped."""
    client = stocked.connect()
    reply = client.send(f"USER {ALICE}\nPASS {PASSWORD}\nSTAT\r\nNOOP\n".encode())
    assert reply.split(b"\r\n")[2:] == [b"+OK 2 %d" % (len(MSG1) + len(MSG2)), b"+OK", b""]


def test_user_pass_from_remote_peer_without_tls_is_refused(world):
    client = world.connect(REMOTE)
    assert client.cmd(f"USER {ALICE}") == PLAINTEXT_REFUSED
    assert client.cmd(f"PASS {PASSWORD}") == PLAINTEXT_REFUSED
    assert client.cmd(f"AUTH PLAIN {plain('', ALICE, PASSWORD)}") == PLAINTEXT_REFUSED
    assert client.cmd("STAT") == b"-ERR command not valid before login\r\n"


def test_ipv6_loopback_peer_may_log_in_without_tls(world):
    transport = TLSStringTransport(
        hostAddress=IPv6Address("TCP", "::1", 110), peerAddress=IPv6Address("TCP", "::1", 40110)
    )
    client = world.connect(transport=transport)
    client.login()


def test_another_loopback_address_may_not_log_in_without_tls(world):
    """A local proxy makes every client 127.0.0.x: only the server's own address counts."""
    client = world.connect(IPv4Address("TCP", "127.0.0.2", 40110))
    capabilities = client.cmd("CAPA")
    assert b"USER\r\n" not in capabilities and b"SASL PLAIN" not in capabilities
    assert client.cmd(f"USER {ALICE}").startswith(b"-ERR [AUTH] ")


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (IPv4Address("TCP", "127.0.0.1", 1), True),
        (IPv4Address("TCP", "127.8.9.10", 1), True),
        (IPv6Address("TCP", "::1", 1), True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), True),
        (IPv4Address("TCP", "192.0.2.1", 1), False),
        (IPv4Address("TCP", "10.0.0.1", 1), False),
        (IPv6Address("TCP", "2001:db8::1", 1), False),
        (IPv6Address("TCP", "::ffff:192.0.2.1", 1), False),
        (UNIXAddress("/run/pop3.sock"), False),
    ],
)
def test_only_loopback_peers_count_as_loopback(peer, expected):
    assert is_loopback(peer) is expected


def test_wrong_password_fails_after_a_delay_and_pipelined_commands_wait(world):
    client = world.connect()
    client.cmd(f"USER {ALICE}")
    assert client.send(b"PASS wrong password\r\nCAPA\r\n") == b""
    world.reactor.advance(0.9)
    assert client.read() == b""
    world.reactor.advance(0.1)
    assert client.read() == AUTH_FAILED + CAPA_LOOPBACK
    assert not client.closed


def test_unknown_user_fails_exactly_like_a_wrong_password(world):
    client = world.connect()
    client.cmd("USER nobody@example.test")
    client.cmd(f"PASS {PASSWORD}")
    world.reactor.advance(1)
    assert client.read() == AUTH_FAILED


def test_third_failed_login_closes_the_connection(world):
    client = world.connect()
    for attempt in range(3):
        assert not client.closed
        client.cmd(f"AUTH PLAIN {plain('', ALICE, f'wrong{attempt}')}")
        world.reactor.advance(1)
        assert client.read() == AUTH_FAILED
    assert client.closed


def test_pass_without_user_is_refused(world):
    client = world.connect()
    assert client.cmd("PASS x") == b"-ERR send USER first\r\n"
    assert client.cmd("PASS") == b"-ERR usage: PASS password\r\n"


def test_logins_are_logged_with_peer_and_sanitised_user(world):
    client = world.connect()
    with capturedLogs() as events:
        client.cmd("AUTH PLAIN " + plain("", "mallory\r\nforged: yes", "wrong"))
        world.reactor.advance(1)
        assert client.read() == AUTH_FAILED
        client.login()
    failed, succeeded = [e for e in events if "login" in e["log_format"]]
    assert failed["user"] == "mallory??forged: yes"
    assert failed["peer"] == "127.0.0.1"
    assert failed["mechanism"] == "PLAIN"
    assert succeeded["user"] == ALICE
    assert succeeded["mechanism"] == "USER"


def test_session_end_is_logged_with_retrieved_and_deleted_counts(session):
    session.cmd("RETR 1")
    session.cmd("DELE 2")
    session.cmd("QUIT")
    with capturedLogs() as events:
        session.drop()
    (end,) = [e for e in events if "session end" in e["log_format"]]
    assert (end["user"], end["retrieved"], end["deleted"]) == (ALICE, 1, 1)


# -- AUTH PLAIN (RFC 5034) ---------------------------------------------------------------------


def test_auth_plain_with_initial_response_logs_in(stocked):
    client = stocked.connect()
    reply = client.cmd(f"AUTH PLAIN {plain('', ALICE, PASSWORD)}")
    assert reply.startswith(b"+OK alice@example.test has 2 messages")


def test_auth_plain_with_continuation_logs_in(world):
    client = world.connect()
    assert client.cmd("AUTH PLAIN") == b"+ \r\n"
    assert client.cmd(plain(ALICE, ALICE, PASSWORD)).startswith(b"+OK ")
    assert client.cmd("STAT") == b"+OK 0 0\r\n"


def test_auth_plain_continuation_star_cancels(world):
    client = world.connect()
    client.cmd("AUTH PLAIN")
    assert client.cmd("*") == b"-ERR authentication cancelled\r\n"
    assert client.cmd("STAT") == b"-ERR command not valid before login\r\n"


def test_auth_plain_with_bad_base64_is_refused(world):
    client = world.connect()
    assert client.cmd("AUTH PLAIN not*base64") == b"-ERR invalid base64 in SASL response\r\n"
    client.cmd("AUTH PLAIN")
    assert client.cmd("@@@@") == b"-ERR invalid base64 in SASL response\r\n"
    missing_nul = base64.b64encode(b"alice").decode()
    assert client.cmd(f"AUTH PLAIN {missing_nul}") == (
        b"-ERR invalid PLAIN response: expected authzid NUL authcid NUL password\r\n"
    )


def test_auth_plain_for_another_identity_is_refused(world):
    reply = world.connect().cmd(f"AUTH PLAIN {plain('bob@example.test', ALICE, PASSWORD)}")
    assert (
        reply == b"-ERR [AUTH] authorization identity must be empty or equal to the user name\r\n"
    )


def test_auth_with_unknown_mechanism_is_refused(world):
    assert world.connect().cmd("AUTH CRAM-MD5") == (
        b"-ERR unsupported SASL mechanism; only PLAIN is offered\r\n"
    )


def test_auth_without_arguments_lists_the_mechanisms_allowed_here(world):
    assert world.connect().cmd("AUTH") == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"
    assert world.connect(REMOTE).cmd("AUTH") == b"+OK SASL mechanisms follow\r\n.\r\n"


# -- STLS (RFC 2595) ---------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\r\n", "\n"])
def test_stls_discards_pipelined_commands_then_allows_plaintext_auth(world, end):
    client = world.connect(REMOTE, tls_creator=CREATOR)
    reply = client.send(f"STLS{end}USER {ALICE}{end}QUIT{end}".encode())
    assert reply == b"+OK begin TLS negotiation\r\n"  # nothing for USER or QUIT
    assert client.transport.tls_creator is CREATOR
    assert not client.closed
    capa = client.cmd("CAPA")
    assert b"\r\nUSER\r\nSASL PLAIN\r\n" in capa and b"STLS" not in capa
    assert client.cmd(f"PASS {PASSWORD}") == b"-ERR send USER first\r\n"  # USER was dropped
    client.login()


def test_stls_forgets_a_user_given_before_it(world):
    client = world.connect(tls_creator=CREATOR)
    client.cmd(f"USER {ALICE}")
    client.cmd("STLS")
    assert client.cmd(f"PASS {PASSWORD}") == b"-ERR send USER first\r\n"


def test_stls_refused_when_unavailable_already_active_or_after_login(world):
    assert world.connect().cmd("STLS") == b"-ERR STLS not available\r\n"
    active = world.connect(tls_creator=CREATOR, implicit_tls=True)
    assert active.cmd("STLS") == b"-ERR TLS already active\r\n"
    again = world.connect(tls_creator=CREATOR)
    again.cmd("STLS")
    assert again.cmd("STLS") == b"-ERR TLS already active\r\n"
    after_login = world.connect(tls_creator=CREATOR)
    after_login.login()
    assert after_login.cmd("STLS") == b"-ERR command not valid after login\r\n"
    assert after_login.transport.tls_creator is None


# -- STAT / LIST / UIDL ------------------------------------------------------------------------


def test_stat_list_uidl_with_and_without_argument(session, stocked):
    snapshot = result(stocked.inbox().snapshot())
    uv, (one, two) = snapshot.uidvalidity, snapshot.messages
    assert session.cmd("STAT") == b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
    assert session.cmd("LIST") == b"+OK 2 messages (%d octets)\r\n1 %d\r\n2 %d\r\n.\r\n" % (
        len(MSG1) + len(MSG2),
        len(MSG1),
        len(MSG2),
    )
    assert session.cmd("LIST 2") == b"+OK 2 %d\r\n" % len(MSG2)
    assert session.cmd("UIDL") == (
        b"+OK unique-id listing follows\r\n1 %d.%d\r\n2 %d.%d\r\n.\r\n" % (uv, one.uid, uv, two.uid)
    )
    assert session.cmd("UIDL 1") == b"+OK 1 %d.%d\r\n" % (uv, one.uid)


def test_uidl_is_stable_across_sessions(stocked):
    first = stocked.connect()
    first.login()
    uidl = first.cmd("UIDL")
    first.cmd("DELE 1")
    first.cmd("QUIT")
    stocked.deliver(b"Subject: three\r\n\r\n3\r\n")
    second = stocked.connect()
    second.login()
    lines = second.cmd("UIDL").split(b"\r\n")
    assert lines[1].split()[1] == uidl.split(b"\r\n")[2].split()[1]  # message 2 keeps its id
    assert len(lines) == 5  # +OK, two messages, ".", ""


# -- RETR and TOP ------------------------------------------------------------------------------


def test_retr_dot_stuffs_lines_that_start_with_a_dot(session):
    assert session.cmd("RETR 1") == (
        b"+OK %d octets\r\nFrom: bob@example.test\r\nSubject: dots\r\n\r\n"
        b"..leading dot\r\n...two dots\r\n..\r\nlast line\r\n.\r\n" % len(MSG1)
    )


def test_retr_stuffs_a_dot_on_the_first_line(world):
    world.deliver(b".first line\r\nsecond\r\n")
    client = world.connect()
    client.login()
    assert client.cmd("RETR 1") == b"+OK 21 octets\r\n..first line\r\nsecond\r\n.\r\n"


def test_retr_of_file_without_trailing_crlf_gets_one_before_the_terminator(world):
    world.deliver(b"Subject: x\r\n\r\n.no newline")
    client = world.connect()
    client.login()
    assert client.cmd("RETR 1") == b"+OK 25 octets\r\nSubject: x\r\n\r\n..no newline\r\n.\r\n"


def test_retr_is_dot_stuffed_the_same_at_every_chunk_boundary(world):
    message = b"A: b\r\n\r\n.\r\n..x\r\n\r\n.y\r\n.\r\n.."
    expected = b"+OK %d octets\r\nA: b\r\n\r\n..\r\n...x\r\n\r\n..y\r\n..\r\n...\r\n.\r\n" % len(
        message
    )
    world.deliver(message)
    client = world.connect()
    client.login()
    for chunk_size in range(1, len(message) + 2):
        client.protocol.chunk_size = chunk_size
        assert client.cmd("RETR 1") == expected, chunk_size


def test_retr_streams_large_messages_in_chunks(world):
    body = b"".join(b"line %06d of a long message\r\n" % n for n in range(20_000))
    message = b"Subject: big\r\n\r\n" + body
    world.deliver(message)
    head = b"+OK %d octets\r\n" % len(message)
    client = world.connect()
    client.login()
    client.protocol.dataReceived(b"RETR 1\r\n")
    assert client.read() == b""  # nothing is read until the transport asks for it
    client.transport.producer.resumeProducing()
    first = client.read()
    assert first.startswith(head + b"Subject: big\r\n")
    assert 64 * 1024 <= len(first) < 64 * 1024 + 100
    client.pump()
    rest = client.read()
    assert first + rest == head + message + b".\r\n"


def test_commands_pipelined_during_retr_run_after_it_in_order(session):
    session.protocol.chunk_size = 8  # a "long" message: streamed by the producer
    session.protocol.dataReceived(b"RETR 2\r\nSTAT\r\nNOOP\r\n")
    assert session.read() == b""
    session.pump()
    assert session.read() == (
        b"+OK %d octets\r\n%s.\r\n+OK 2 %d\r\n+OK\r\n" % (len(MSG2), MSG2, len(MSG1) + len(MSG2))
    )


def test_pipelined_commands_after_a_small_retr_are_answered_in_order(session):
    session.protocol.dataReceived(b"RETR 2\r\nSTAT\r\nNOOP\r\n")
    assert session.read() == (
        b"+OK %d octets\r\n%s.\r\n+OK 2 %d\r\n+OK\r\n" % (len(MSG2), MSG2, len(MSG1) + len(MSG2))
    )


def test_pipelined_replies_and_small_messages_go_out_in_one_write(session):
    session.transport.writes = 0
    session.send(b"STAT\r\nLIST\r\nNOOP\r\n")
    assert session.transport.writes == 1
    session.transport.writes = 0
    session.send(b"NOOP\r\nRETR 2\r\n")
    assert session.transport.writes == 1


def test_replies_reach_the_socket_without_waiting_for_the_reactors_next_turn(stocked):
    """A lock-step client (RETR, wait, RETR) paid a reactor turn and two epoll_ctl calls per
    reply while Twisted's buffer waited for the socket to be reported writable. Over a real
    loopback TCP connection, every reply is on the wire when the command returns."""
    factory = POP3Factory(stocked.portal, reactor=stocked.reactor, hostname="mail.example.test")
    with on_real_socket(factory, LOOPBACK) as wire:
        answer = wire.answer
        assert answer(b"") == b"+OK txmailhost POP3 ready mail.example.test\r\n"
        assert answer(b"USER %s\r\n" % ALICE.encode()) == b"+OK send PASS\r\n"
        assert answer(b"PASS %s\r\n" % PASSWORD.encode()).startswith(b"+OK ")
        assert answer(b"RETR 2\r\n") == b"+OK %d octets\r\n%s.\r\n" % (len(MSG2), MSG2)
        assert answer(b"STAT\r\nNOOP\r\n") == b"+OK 2 %d\r\n+OK\r\n" % (len(MSG1) + len(MSG2))
        assert wire.transport not in wire.reactor.getWriters()


def test_top_sends_header_blank_line_and_n_body_lines(session):
    head = b"+OK top of message follows\r\nFrom: bob@example.test\r\nSubject: dots\r\n\r\n"
    assert session.cmd("TOP 1 0") == head + b".\r\n"
    assert session.cmd("TOP 1 2") == head + b"..leading dot\r\n...two dots\r\n.\r\n"
    assert session.cmd("TOP 1 99") == session.cmd("RETR 1").replace(
        b"+OK %d octets" % len(MSG1), b"+OK top of message follows"
    )


def test_retr_of_a_message_expunged_by_another_session_is_refused(session, stocked):
    inbox = stocked.inbox()
    result(inbox.expunge([result(inbox.snapshot()).messages[0].uid]))
    assert session.cmd("RETR 1") == b"-ERR message 1 is no longer available\r\n"
    assert session.cmd("NOOP") == b"+OK\r\n"


@pytest.mark.backends("maildir")
def test_a_maildrop_removed_under_the_session_ends_it_with_a_permanent_error(session, stocked):
    """``txmailhost user del --purge`` while the session is open (the server unreachable, so
    nobody kicked it): RETR once answered "[SYS/TEMP] internal error" with a traceback."""
    with capturedLogs() as events:
        result(stocked.store.remove_user(ALICE))
        reply = session.cmd("RETR 2")
    assert reply == b"-ERR [SYS/PERM] mailbox no longer exists\r\n"
    assert session.closed
    assert not [e for e in events if e.get("log_failure") is not None]


@pytest.mark.backends("maildir")
def test_quit_after_the_maildrop_was_removed_is_a_permanent_error(session, stocked):
    assert session.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    with capturedLogs() as events:
        result(stocked.store.remove_user(ALICE))
        reply = session.cmd("QUIT")
    assert reply == b"-ERR [SYS/PERM] mailbox no longer exists\r\n"
    assert session.closed
    assert not [e for e in events if e.get("log_failure") is not None]


def test_connection_lost_during_retr_stops_the_stream(world):
    world.deliver(b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n")
    client = world.connect()
    client.login()
    client.protocol.dataReceived(b"RETR 1\r\n")
    producer = client.transport.producer
    producer.resumeProducing()
    client.drop()
    client.read()
    producer.resumeProducing()
    assert client.read() == b""


# -- DELE / RSET / QUIT ------------------------------------------------------------------------


def test_deleted_message_is_hidden_and_refused(session):
    assert session.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert session.cmd("STAT") == b"+OK 1 %d\r\n" % len(MSG2)
    assert session.cmd("LIST") == b"+OK 1 messages (%d octets)\r\n2 %d\r\n.\r\n" % (
        len(MSG2),
        len(MSG2),
    )
    assert b"\r\n1 " not in session.cmd("UIDL")
    for command in ("DELE 1", "RETR 1", "TOP 1 0", "LIST 1", "UIDL 1"):
        assert session.cmd(command) == b"-ERR message 1 already deleted\r\n", command


def test_rset_unmarks_deleted_messages(session):
    session.cmd("DELE 1")
    session.cmd("DELE 2")
    assert session.cmd("RSET") == b"+OK maildrop has 2 messages (%d octets)\r\n" % (
        len(MSG1) + len(MSG2)
    )
    assert session.cmd("RETR 2").startswith(b"+OK ")


def test_dele_is_committed_only_at_quit(session, stocked):
    session.cmd("DELE 1")
    assert stocked.files() == sorted([MSG1, MSG2])
    assert session.cmd("QUIT") == b"+OK txmailhost POP3 server signing off (1 messages left)\r\n"
    assert session.closed
    assert stocked.files() == [MSG2]


def test_quit_counts_what_the_mailbox_holds_after_other_sessions(session, stocked):
    """The maildrop isn't locked: a second session that deleted meanwhile, or new mail,
    changes what is left. QUIT said the snapshot's count (1 for an empty mailbox)."""
    other = stocked.connect()
    other.login()
    other.cmd("DELE 2")
    assert other.cmd("QUIT").endswith(b"(1 messages left)\r\n")
    session.cmd("DELE 1")
    assert session.cmd("QUIT") == b"+OK txmailhost POP3 server signing off (0 messages left)\r\n"


def test_connection_drop_without_quit_deletes_nothing(session, stocked):
    session.cmd("DELE 1")
    session.cmd("DELE 2")
    session.drop()
    assert stocked.files() == sorted([MSG1, MSG2])


def test_quit_reports_sys_temp_when_the_expunge_fails(session, stocked, monkeypatch):
    def broken_expunge(self, uids):
        return fail(OSError("disk on fire"))

    monkeypatch.setattr(type(stocked.inbox()), "expunge", broken_expunge)
    session.cmd("DELE 1")
    with capturedLogs():
        reply = session.cmd("QUIT")
    assert reply == b"-ERR [SYS/TEMP] some deleted messages not removed, try again later\r\n"
    assert session.closed
    assert stocked.files() == sorted([MSG1, MSG2])


def test_quit_before_login_signs_off(world):
    client = world.connect()
    assert client.cmd("QUIT") == b"+OK txmailhost POP3 server signing off\r\n"
    assert client.closed


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("RETR 0", b"-ERR no such message, only 2 in maildrop"),
        ("RETR 3", b"-ERR no such message, only 2 in maildrop"),
        ("DELE 99999999999999999999", b"-ERR no such message, only 2 in maildrop"),
        ("RETR -1", b"-ERR invalid message number"),
        ("LIST x", b"-ERR invalid message number"),
        ("DELE 1.0", b"-ERR invalid message number"),
        ("UIDL +1", b"-ERR invalid message number"),
        ("RETR", b"-ERR usage: RETR msg"),
        ("RETR 1 2", b"-ERR usage: RETR msg"),
        ("LIST 1 2", b"-ERR usage: LIST [msg]"),
        ("STAT 1", b"-ERR usage: STAT"),
        ("TOP 1", b"-ERR usage: TOP msg lines"),
        ("TOP 1 -1", b"-ERR invalid line count: expected a non-negative number"),
        ("TOP 1 x", b"-ERR invalid line count: expected a non-negative number"),
        ("USER alice", b"-ERR command not valid after login"),
        ("AUTH PLAIN", b"-ERR command not valid after login"),
        ("XYZZY <script>\x1b[31m", b"-ERR unknown command"),
        ("", b"-ERR unknown command"),
    ],
)
def test_bad_commands_get_an_error_and_keep_the_session(session, command, reply):
    assert session.cmd(command) == reply + b"\r\n"
    assert not session.closed
    assert session.cmd("NOOP") == b"+OK\r\n"


def test_transaction_commands_before_login_are_refused(world):
    client = world.connect()
    for command in ("STAT", "LIST", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP"):
        assert client.cmd(command) == b"-ERR command not valid before login\r\n", command


def test_long_line_is_refused_and_skipped_to_the_next_crlf(world):
    client = world.connect()
    assert client.send(b"X" * 2000 + b"\r\nQUIT\r\n") == (
        b"-ERR line too long\r\n+OK txmailhost POP3 server signing off\r\n"
    )


def test_long_line_without_crlf_is_discarded_across_reads(world):
    client = world.connect()
    assert client.send(b"A" * 1100) == b"-ERR line too long\r\n"
    assert client.send(b"STAT\r" * 100) == b""  # still inside the long line
    assert client.send(b"\nNOOP-IS-DISCARDED\r") == b""  # CR|LF split across reads ended it
    assert client.send(b"\nCAPA\r\n") == b"-ERR unknown command\r\n" + CAPA_LOOPBACK


def test_max_line_length_is_configurable(world):
    client = world.connect(max_line_length=10)
    assert client.cmd("USER " + "x" * 10) == b"-ERR line too long\r\n"


def test_too_many_bad_commands_close_the_session(world):
    client = world.connect()
    replies = client.send(b"GET / HTTP/1.1\r\n" * 12)
    assert replies == b"-ERR unknown command\r\n" * 9 + (
        b"-ERR too many bad commands, closing connection\r\n"
    )
    assert client.closed


# -- timeouts ----------------------------------------------------------------------------------


def test_idle_timeout_closes_the_session_without_deleting(session, stocked):
    session.cmd("DELE 1")
    stocked.reactor.advance(599)
    assert not session.closed
    with capturedLogs() as events:
        stocked.reactor.advance(1)
    assert session.closed
    assert session.read() == b""
    assert any("idle timeout" in e["log_format"] for e in events)
    session.drop()
    assert stocked.files() == sorted([MSG1, MSG2])


def test_each_command_restarts_the_idle_timer(world):
    client = world.connect(idle_timeout=60)
    world.reactor.advance(50)
    client.cmd("CAPA")
    world.reactor.advance(50)
    assert not client.closed
    world.reactor.advance(10)
    assert client.closed


def test_session_timeout_closes_even_a_busy_session(world):
    client = world.connect(idle_timeout=60, session_timeout=200)
    for _ in range(4):
        world.reactor.advance(45)
        client.cmd("CAPA")
    assert not client.closed
    world.reactor.advance(21)
    assert client.closed


# -- dot-stuffing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "stuffed"),
    [
        (b"", b".\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),
        (b"a\n.b\n", b"a\r\n..b\r\n.\r\n"),  # bare LF from a foreign Maildir tool
        (b"a\r\n.", b"a\r\n..\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"x.y\r\n", b"x.y\r\n.\r\n"),
    ],
)
def test_dot_stuffer_is_independent_of_chunking(message, stuffed):
    for size in range(1, len(message) + 2):
        stuffer = DotStuffer()
        chunks = [message[i : i + size] for i in range(0, len(message), size)]
        assert b"".join(map(stuffer.stuff, chunks)) + stuffer.finish() == stuffed, size


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b".",
        b".\r\n",
        b"a\r\n.\r\n",
        b"a\r\n.",
        b"a\r",
        b"x.y\r\n",
        b"a\rb\r\n.\r",
        b"\r\n\r\n.",
    ],
)
def test_stuffed_message_frames_crlf_content_as_the_dot_stuffer_does(message):
    stuffer = DotStuffer()
    assert stuffed_message(message) == stuffer.stuff(message) + stuffer.finish()


@pytest.mark.backends("maildir")  # removes a file behind the store's back
def test_a_message_made_ready_is_kept_when_the_client_goes_back_first(world):
    """After RETR 2 the response to RETR 3 is ready; a RETR 1 in between (the client went
    back) must not throw it away: RETR 3 is still answered from it, file gone or not."""
    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n) for n in range(4)]
    for body in bodies:
        world.deliver(body)
    client = world.connect()
    client.login()
    assert client.cmd("RETR 1").startswith(b"+OK")
    assert client.cmd("RETR 2").startswith(b"+OK")
    maildir = world.root / "mail" / "example.test" / "alice"
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            if path.read_bytes() == bodies[2]:
                path.unlink()
    assert client.cmd("RETR 1") == b"+OK %d octets\r\n%s.\r\n" % (len(bodies[0]), bodies[0])
    assert client.cmd("RETR 3") == b"+OK %d octets\r\n%s.\r\n" % (len(bodies[2]), bodies[2])


def test_a_read_ahead_message_is_not_scanned_for_bare_lfs_again(session, monkeypatch):
    """The store served it in its CRLF form and of the listed size: the stuffing skips the
    bare-LF counts (a seventh of the instructions of a 4 KiB RETR)."""
    from txmailhost.pop3 import replies

    scanned: list[bytes] = []
    real = replies._normalise
    monkeypatch.setattr(replies, "_normalise", lambda chunk: scanned.append(chunk) or real(chunk))
    assert session.cmd("RETR 1").startswith(b"+OK")  # opened for it; message 2 is read ahead
    assert session.cmd("RETR 2") == b"+OK %d octets\r\n%s.\r\n" % (len(MSG2), MSG2)
    assert scanned == [MSG1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r\n", b".", b"\r", b"a", b"..", b"\r\n.\r\n"]), max_size=30))
def test_stuffed_message_equals_the_dot_stuffer_for_any_crlf_form_content(pieces):
    """The read-ahead's shortcut (no bare-LF scan) must not change a byte of a reply for the
    content the store hands out: its CRLF form, where every LF follows a CR."""
    message = b"".join(pieces)
    assert message.count(b"\n") == message.count(b"\r\n")
    stuffer = DotStuffer()
    assert stuffed_message(message) == stuffer.stuff(message) + stuffer.finish()


@pytest.mark.backends("maildir")  # removes the file behind the store's back
def test_the_next_small_messages_are_read_ahead_while_one_is_retrieved(session, stocked):
    assert session.cmd("RETR 1").startswith(b"+OK")
    maildir = stocked.root / "mail" / "example.test" / "alice"
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            if path.read_bytes() == MSG2:
                path.unlink()  # gone from disk: only the read-ahead copy can answer now
    assert session.cmd("RETR 2") == b"+OK %d octets\r\n%s.\r\n" % (len(MSG2), MSG2)


def test_read_ahead_goes_to_the_store_once_per_batch_not_once_per_retr(world, monkeypatch):
    from txmailhost.pop3 import server as pop3_server

    Mailbox = type(world.inbox())  # noqa: N806 - the class under test

    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n) for n in range(40)]
    for body in bodies:
        world.deliver(body)
    trips: list[list[int]] = []
    real = Mailbox.messages

    def counting(self, uids, header, content):
        trips.append(list(uids))
        return real(self, uids, header, content)

    monkeypatch.setattr(Mailbox, "messages", counting)
    client = world.connect()
    client.login()
    for n, body in enumerate(bodies, 1):
        assert client.cmd(f"RETR {n}") == b"+OK %d octets\r\n%s.\r\n" % (len(body), body)
    assert len(trips) <= len(bodies) // (pop3_server.READ_AHEAD - pop3_server.READ_AHEAD_LOW) + 1
    assert all(len(uids) <= pop3_server.READ_AHEAD for uids in trips)
    # A client that jumps ahead doesn't make the session hoard what it skipped.
    assert client.cmd("RETR 1").startswith(b"+OK")
    assert client.cmd("RETR 30").startswith(b"+OK")
    protocol = client.protocol
    assert all(uid > 20 for uid in protocol._prefetched)


# Messages whose framing is easy to get wrong, with the RETR body each must produce (RFC 1939
# §3: a line starting with "." gets another; a missing last CRLF is added before the ".").
TRICKY = [
    (b".first\r\nsecond\r\n", b"..first\r\nsecond\r\n.\r\n"),
    (b"A: b\r\n\r\n.\r\n..x\r\n", b"A: b\r\n\r\n..\r\n...x\r\n.\r\n"),
    (b"A: b\r\n\r\nno line end", b"A: b\r\n\r\nno line end\r\n.\r\n"),
    (b"A: b\r\n\r\n.", b"A: b\r\n\r\n..\r\n.\r\n"),
    (b"A: b\r\n\r\nends in CR\r", b"A: b\r\n\r\nends in CR\r\n.\r\n"),
    (b"A: b\r\n\r\n\r\n.\r\n", b"A: b\r\n\r\n\r\n..\r\n.\r\n"),
]


def test_messages_read_ahead_are_framed_like_messages_read_on_demand(world):
    """Message 1 is opened for its RETR; the others come from the read-ahead, stuffed when
    their batch arrived. Both ways, in order, again from the start and backwards, every
    reply is the same bytes."""
    for message, _ in TRICKY:
        world.deliver(message)
    client = world.connect()
    client.login()
    expected = {
        n: b"+OK %d octets\r\n%s" % (len(message), body)
        for n, (message, body) in enumerate(TRICKY, 1)
    }
    order = list(expected) + list(expected) + list(reversed(expected))
    assert [client.cmd(f"RETR {n}") for n in order] == [expected[n] for n in order]


def test_a_message_read_ahead_is_stuffed_after_the_reply_before_it_is_written(world, monkeypatch):
    """The stuffing of a read-ahead message is done once the reply before it has gone out,
    while the client reads that reply: its own RETR is then a look-up and one write. Not all
    at once when the batch arrives either (a RETR arriving then would wait for a dozen)."""
    from txmailhost.pop3 import server as pop3_server

    bodies = [b"Subject: m%d\r\n\r\n.body %d\r\n" % (n, n) for n in range(6)]
    for body in bodies:
        world.deliver(body)
    Mailbox = type(world.inbox())  # noqa: N806 - the class under test
    real = Mailbox.messages
    held: list[tuple[Deferred, Deferred]] = []

    def slow(self, uids, header, content):
        answer: Deferred = Deferred()
        held.append((real(self, uids, header, content), answer))
        return answer

    events: list[bytes] = []
    real_response = pop3_server._retr_response

    def response(info, content):
        events.append(b"stuff " + content.split(b"\r\n")[0])
        return real_response(info, content)

    monkeypatch.setattr(Mailbox, "messages", slow)
    monkeypatch.setattr(pop3_server, "_retr_response", response)
    client = world.connect()
    client.login()
    real_write = client.transport.write

    def write(data):
        events.append(b"write " + data.split(b"\r\n")[1])
        real_write(data)

    client.transport.write = write
    assert client.cmd("RETR 1").startswith(b"+OK")
    batch, answer = held.pop()
    events.clear()
    batch.addCallback(answer.callback)  # messages 2 to 6 arrive
    assert events == []
    for n in range(2, 7):
        body = bodies[n - 1]
        stuffed_body = body.replace(b"\n.", b"\n..")
        events.append(b"RETR %d" % n)
        assert client.cmd(f"RETR {n}") == b"+OK %d octets\r\n%s.\r\n" % (len(body), stuffed_body)
    assert events == [
        b"RETR 2",
        b"stuff Subject: m1",  # the batch came after RETR 1 was answered: stuffed at its RETR
        b"write Subject: m1",
        b"stuff Subject: m2",  # message 3, once message 2 went out
        b"RETR 3",
        b"write Subject: m2",
        b"stuff Subject: m3",
        b"RETR 4",
        b"write Subject: m3",
        b"stuff Subject: m4",
        b"RETR 5",
        b"write Subject: m4",
        b"stuff Subject: m5",
        b"RETR 6",
        b"write Subject: m5",
    ]


def test_a_message_expunged_before_its_batch_was_read_is_refused(session, stocked):
    inbox = stocked.inbox()
    result(inbox.expunge([result(inbox.snapshot()).messages[1].uid]))
    assert session.cmd("RETR 1").startswith(b"+OK")  # reads message 2 ahead: gone
    assert session.cmd("RETR 2") == b"-ERR message 2 is no longer available\r\n"
    assert session.cmd("NOOP") == b"+OK\r\n"


def test_read_ahead_starts_again_when_the_client_goes_back(world, monkeypatch):
    """A client that downloads the maildrop a second time in one session (or goes back) is
    read ahead for again, not left to one file open per RETR."""
    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n) for n in range(40)]
    for body in bodies:
        world.deliver(body)
    Mailbox = type(world.inbox())  # noqa: N806 - the class under test
    opened: list[int] = []
    real_open = Mailbox.open_message
    monkeypatch.setattr(
        Mailbox, "open_message", lambda self, uid: opened.append(uid) or real_open(self, uid)
    )
    client = world.connect()
    client.login()
    for _ in range(2):
        for n, body in enumerate(bodies, 1):
            assert client.cmd(f"RETR {n}") == b"+OK %d octets\r\n%s.\r\n" % (len(body), body)
    assert len(opened) == 2  # message 1, once a pass; the rest were read ahead


def test_a_retr_that_catches_up_with_the_read_ahead_waits_for_it(world, monkeypatch):
    """A fast client can ask for a message whose batch is still being read: the RETR waits for
    that batch instead of reading the file a second time."""
    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n) for n in range(6)]
    for body in bodies:
        world.deliver(body)
    held: list[tuple[Deferred, Deferred]] = []
    Mailbox = type(world.inbox())  # noqa: N806 - the class under test
    real = Mailbox.messages

    def slow(self, uids, header, content):
        answer: Deferred = Deferred()
        held.append((real(self, uids, header, content), answer))
        return answer

    opened: list[int] = []
    real_open = Mailbox.open_message
    monkeypatch.setattr(Mailbox, "messages", slow)
    monkeypatch.setattr(
        Mailbox, "open_message", lambda self, uid: opened.append(uid) or real_open(self, uid)
    )
    client = world.connect()
    client.login()
    assert client.cmd("RETR 1").startswith(b"+OK")  # starts reading 2..6 ahead
    assert len(held) == 1 and opened == [1]
    assert client.cmd("RETR 2") == b""  # waits for the batch
    result, answer = held.pop()
    result.addCallback(answer.callback)
    client.pump()
    assert client.read() == b"+OK %d octets\r\n%s.\r\n" % (len(bodies[1]), bodies[1])
    assert opened == [1]  # message 2 came from the batch, not from a second read


def test_a_client_that_stops_reading_replies_stops_being_read(stocked):
    """Pipelined commands from a client that never reads the replies must not pile up replies
    in memory: once the transport's buffer is full (it pauses the session's producer), no
    further command runs and reading stops; when the client reads, the rest are answered."""
    client = stocked.connect()
    client.login()
    pressure = client.transport.producer
    assert pressure is not None and client.transport.streaming
    pressure.pauseProducing()  # what the transport does when 64 KiB wait to be sent
    assert client.send(b"NOOP\r\n" * 300) == b"+OK\r\n"  # the command at hand, no more
    assert client.transport.producerState == "paused"  # and reading stopped
    pressure.resumeProducing()  # the client read it
    assert client.read() == b"+OK\r\n" * 299
    assert client.transport.producerState == "producing"
    # A long message is sent by its own producer; the session's comes back after it.
    assert client.cmd("RETR 1").startswith(b"+OK")
    assert client.transport.producer is pressure


def test_replies_to_a_long_pipeline_are_written_in_bounded_batches(stocked):
    client = stocked.connect()
    client.login()
    client.transport.writes = 0
    assert client.send(b"CAPA\r\n" * 1000).count(b"+OK capability list follows") == 1000
    assert client.transport.writes > 1  # the transport saw them as they came


def test_pressure_comes_back_after_a_message_sent_by_its_own_producer(world):
    world.deliver(b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n")
    client = world.connect()
    client.login()
    pressure = client.transport.producer
    reply = client.cmd("RETR 1")
    assert reply.startswith(b"+OK") and reply.endswith(b"\r\n.\r\n") and len(reply) > 200_000
    assert client.transport.producer is pressure and client.transport.streaming
    assert client.cmd("NOOP") == b"+OK\r\n"


def test_a_batch_of_replies_is_bounded_in_octets_too(stocked, monkeypatch):
    """64 replies of a pipeline were held for one write however large: ten sessions sending
    ``UIDL`` x 100 over 20,000 messages (458 KB a reply) and never reading grew the server by
    110 MiB. A batch is written once it holds ``_MAX_BATCHED_BYTES``, so that the client's
    not reading is seen before the next command runs."""
    from txmailhost.pop3 import server

    client = stocked.connect()
    client.login()
    one = len(client.cmd("LIST"))
    monkeypatch.setattr(server, "_MAX_BATCHED_BYTES", 2 * one)
    client.transport.writes = 0
    assert client.send(b"LIST\r\n" * 10).count(b"+OK") == 10
    assert client.transport.writes == 5  # two replies a write, not one write for the ten
