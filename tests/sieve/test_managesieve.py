"""The ManageSieve server (RFC 5804) at the byte level (StringTransport), over a real accounts
database, checker, realm and Portal and a real script directory; disk work runs synchronously
(SyncThreadPool)."""

from __future__ import annotations

import base64
import os

import pytest
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.db import AccountsDB
from txmailhost.accounts.realm import MailRealm
from txmailhost.sieve.managesieve import ManageSieveFactory
from txmailhost.sieve.scripts import ScriptStore
from txmailhost.store import backends

ALICE, PASSWORD = "alice@example.test", "correct horse"
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40190)
REMOTE = IPv4Address("TCP", "192.0.2.10", 40190)
SERVER = IPv4Address("TCP", "127.0.0.1", 4190)
CREATOR = object()
SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    def startTLS(self, creator, normal=True) -> None:
        self.tls_creator = creator

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def plain(user: str = ALICE, password: str = PASSWORD) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


class Client:
    def __init__(self, factory: ManageSieveFactory, peer=LOOPBACK) -> None:
        self.transport = TLSStringTransport(hostAddress=SERVER, peerAddress=peer)
        self.protocol = factory.buildProtocol(peer)
        self.protocol.makeConnection(self.transport)
        self.greeting = self.read()

    def read(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        return self.read()

    def login(self) -> bytes:
        reply = self.send(b'AUTHENTICATE "PLAIN" "' + plain() + b'"\r\n')
        assert reply == b'OK "Logged in"\r\n', reply
        return reply

    def put(self, name: bytes, script: bytes, plus: bytes = b"+") -> bytes:
        return self.send(b'PUTSCRIPT "%s" {%d%s}\r\n%s\r\n' % (name, len(script), plus, script))


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> AccountsDB:
    db = AccountsDB(str(tmp_path_factory.mktemp("accounts") / "accounts.sqlite"))
    db.add_domain("example.test")
    db.add_user(ALICE, PASSWORD)
    return db


@pytest.fixture
def factory(tmp_path, accounts) -> ManageSieveFactory:
    reactor, pool = SyncReactor(), SyncThreadPool()
    store = backends.build("maildir", str(tmp_path / "mail"), reactor, pool)
    portal = Portal(MailRealm(store), [AccountsChecker(accounts, reactor, pool)])
    scripts = ScriptStore(str(tmp_path / "sieve"), max_scripts=3, max_script_size=1000)
    return ManageSieveFactory(
        portal, scripts, reactor=reactor, pool=pool, tls_creator=CREATOR, max_line_length=200
    )


@pytest.fixture
def session(factory) -> Client:
    client = Client(factory)
    client.login()
    return client


def test_greeting_lists_capabilities_with_vacation_and_ends_in_ok(factory):
    greeting = Client(factory).greeting
    lines = greeting.split(b"\r\n")
    assert lines[0] == b'"IMPLEMENTATION" "txmailhost"'
    sieve = next(line for line in lines if line.startswith(b'"SIEVE"'))
    assert b"fileinto" in sieve and b"vacation" in sieve and b"variables" in sieve
    assert b"imap4flags" in sieve.split(b'"')[3].split()
    assert b'"SASL" "PLAIN LOGIN"' in lines
    assert b'"STARTTLS"' in lines
    assert b'"VERSION" "1.0"' in lines
    assert lines[-2].startswith(b"OK")


def test_remote_client_without_tls_gets_no_mechanisms_and_is_refused(factory):
    client = Client(factory, peer=REMOTE)
    assert b'"SASL" ""' in client.greeting
    reply = client.send(b'AUTHENTICATE "PLAIN" "' + plain() + b'"\r\n')
    assert reply.startswith(b"NO (ENCRYPT-NEEDED)")


def test_starttls_drops_pipelined_commands_and_repeats_capabilities(factory):
    client = Client(factory, peer=REMOTE)
    reply = client.send(b'STARTTLS\r\nAUTHENTICATE "PLAIN" "' + plain() + b'"\r\n')
    assert client.transport.tls_creator is CREATOR
    head, _, capabilities = reply.partition(b"\r\n")
    assert head == b'OK "Begin TLS negotiation now"'
    assert b'"SASL" "PLAIN LOGIN"' in capabilities  # now encrypted
    assert b'"STARTTLS"' not in capabilities
    assert capabilities.endswith(b'OK "TLS active"\r\n')
    assert b"Logged in" not in reply  # the injected AUTHENTICATE never ran
    assert client.send(b"STARTTLS\r\n").startswith(b"NO")


def test_authenticate_plain_with_a_challenge_and_cancel(factory):
    client = Client(factory)
    assert client.send(b'AUTHENTICATE "PLAIN"\r\n') == b'""\r\n'
    assert client.send(b'"*"\r\n') == b'NO "authentication cancelled"\r\n'
    assert client.send(b'AUTHENTICATE "PLAIN"\r\n') == b'""\r\n'
    assert client.send(b'"' + plain() + b'"\r\n') == b'OK "Logged in"\r\n'


def test_authenticate_login_mechanism(factory):
    client = Client(factory)
    assert client.send(b'AUTHENTICATE "LOGIN"\r\n') == b'"VXNlcm5hbWU6"\r\n'
    assert client.send(b'"' + base64.b64encode(ALICE.encode()) + b'"\r\n') == b'"UGFzc3dvcmQ6"\r\n'
    assert (
        client.send(b'"' + base64.b64encode(PASSWORD.encode()) + b'"\r\n') == b'OK "Logged in"\r\n'
    )


def test_three_failed_logins_end_the_session(factory):
    factory.auth_failure_delay = 0
    client = Client(factory)
    bad = b'AUTHENTICATE "PLAIN" "' + plain(password="wrong") + b'"\r\n'
    assert client.send(bad) == b'NO "authentication failed"\r\n'
    assert client.send(bad) == b'NO "authentication failed"\r\n'
    assert client.send(bad) == b'BYE "authentication failed"\r\n'
    assert client.transport.disconnecting


def test_script_commands_need_a_login(factory):
    client = Client(factory)
    assert client.send(b"LISTSCRIPTS\r\n") == b'NO "LISTSCRIPTS is not allowed before login"\r\n'


def test_putscript_with_both_literal_forms_and_getscript_returns_it(session):
    assert session.put(b"one", SCRIPT) == b"OK\r\n"
    assert session.put(b"two", SCRIPT, plus=b"") == b"OK\r\n"
    assert session.send(b'GETSCRIPT "one"\r\n') == b"{%d}\r\n%s\r\nOK\r\n" % (len(SCRIPT), SCRIPT)


def test_putscript_literal_split_across_packets(session):
    command = b'PUTSCRIPT "split" {%d+}\r\n%s\r\n' % (len(SCRIPT), SCRIPT)
    for i in range(0, len(command) - 1, 7):
        assert session.send(command[i : min(i + 7, len(command) - 1)]) == b""
    assert session.send(command[-1:]) == b"OK\r\n"


def test_putscript_with_a_syntax_error_is_refused_with_its_line(session):
    reply = session.put(b"bad", b'require "fileinto";\r\nfileinto "x"\r\n')
    assert reply.startswith(b'NO "line 2: expected')
    assert session.send(b"LISTSCRIPTS\r\n") == b"OK\r\n"


def test_listscripts_setactive_rename_delete(session):
    session.put(b"one", SCRIPT)
    session.put(b"two", SCRIPT)
    assert session.send(b'SETACTIVE "one"\r\n') == b"OK\r\n"
    assert session.send(b"LISTSCRIPTS\r\n") == b'"one" ACTIVE\r\n"two"\r\nOK\r\n'
    assert session.send(b'DELETESCRIPT "one"\r\n').startswith(b"NO (ACTIVE)")
    assert session.send(b'RENAMESCRIPT "one" "two"\r\n').startswith(b"NO (ALREADYEXISTS)")
    assert session.send(b'RENAMESCRIPT "one" "uno"\r\n') == b"OK\r\n"
    assert session.send(b"LISTSCRIPTS\r\n") == b'"two"\r\n"uno" ACTIVE\r\nOK\r\n'
    assert session.send(b'SETACTIVE ""\r\n') == b"OK\r\n"
    assert session.send(b'DELETESCRIPT "uno"\r\n') == b"OK\r\n"
    assert session.send(b'GETSCRIPT "uno"\r\n').startswith(b"NO (NONEXISTENT)")
    assert session.send(b'SETACTIVE "uno"\r\n').startswith(b"NO (NONEXISTENT)")


def test_quotas_on_size_and_count(session):
    assert session.send(b'HAVESPACE "x" 500\r\n') == b"OK\r\n"
    assert session.send(b'HAVESPACE "x" 5000\r\n').startswith(b"NO (QUOTA/MAXSIZE)")
    huge = b"9" * 150  # (4,400 digits, which int() refuses, was an "internal error")
    assert session.send(b'HAVESPACE "x" ' + huge + b"\r\n").startswith(b"NO (QUOTA/MAXSIZE)")
    big = b"#" * 1001 + b"\r\n"
    assert session.put(b"big", big).startswith(b"NO (QUOTA/MAXSIZE)")
    for name in (b"a", b"b", b"c"):
        assert session.put(name, b"keep;\r\n") == b"OK\r\n"
    assert session.put(b"d", b"keep;\r\n").startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert session.put(b"a", b"discard;\r\n") == b"OK\r\n"  # replacing needs no new slot


def test_a_literal_beyond_the_limit_closes_before_reading_it(session):
    reply = session.send(b'PUTSCRIPT "x" {4294967295+}\r\n')
    assert reply.startswith(b'BYE "literal larger than')
    assert session.transport.disconnecting


SMUGGLED = b'NOOP "SMUGGLED"\r\nPUTSCRIPT "smug" "keep;"\r\n'


@pytest.mark.parametrize(
    "refused",
    [
        b'PUTSCRIPT "a\x00b" {%d+}\r\n',  # a bad string before the literal
        b"PUTSCRIPT (x) {%d}\r\n",  # a character no argument starts with
        b"NOOP 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 {%d+}\r\n",  # too many arguments
    ],
)
def test_a_refused_commands_literal_is_dropped_not_run(session, refused):
    """RFC 5804 4: the octets of a literal the command announced are its string, even when
    the command is refused: a webmail's user's script was run as ManageSieve commands."""
    reply = session.send(refused % len(SMUGGLED) + SMUGGLED + b"\r\nNOOP\r\n")
    assert reply.startswith(b"NO ") and reply.endswith(b'\r\nOK "Done"\r\n'), reply
    assert reply.count(b"\r\n") == 2  # the refusal and the NOOP after the command: no more
    # split over reads, the same
    assert session.send(refused[:10]) == b""
    assert session.send(refused[10:] % len(SMUGGLED) + SMUGGLED[:7]).startswith(b"NO ")
    assert session.send(SMUGGLED[7:] + b"\r\nNOOP\r\n") == b'OK "Done"\r\n'
    assert b"smug" not in session.send(b"LISTSCRIPTS\r\n")


def test_a_refused_commands_literal_marker_split_over_reads_is_still_dropped(session):
    """Refused before its line ended, in the middle of its "{n+}": the marker's start was
    forgotten with the refused octets, and the literal then read as commands."""
    assert (
        session.send(b'PUTSCRIPT "a\x00b" {')
        == b'NO "a quoted string can\'t hold CR, LF or NUL"\r\n'
    )
    assert (
        session.send(b"%d+}\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\nNOOP\r\n") == b'OK "Done"\r\n'
    )
    assert b"smug" not in session.send(b"LISTSCRIPTS\r\n")


def test_a_refused_commands_unreadable_literal_ends_the_session(session):
    """A size too large to read through: the stream can't be followed, so it ends."""
    reply = session.send(b'PUTSCRIPT "b" {99999999999+}\r\n' + SMUGGLED)
    assert reply.startswith(b'NO "malformed literal"\r\nBYE ') and b"SMUGGLED" not in reply
    assert session.transport.disconnecting


def test_checkscript_noop_unknown_and_script_names(session):
    assert session.send(b"CHECKSCRIPT {6+}\r\nkeep;\n\r\n") == b"OK\r\n"
    assert session.send(b'CHECKSCRIPT "frob;"\r\n') == b"NO \"line 1: unknown command 'frob'\"\r\n"
    assert session.send(b'NOOP "abc"\r\n') == b'OK (TAG "abc") "Done"\r\n'
    assert session.send(b"FROB\r\n") == b'NO "unknown command FROB"\r\n'
    assert session.send(b'PUTSCRIPT "a\\\\b" "keep;"\r\n') == b"OK\r\n"
    assert session.send(b'PUTSCRIPT {3+}\r\na\x01b "keep;"\r\n').startswith(b"NO")
    assert session.send(b'PUTSCRIPT "../x" "keep;"\r\n') == b"OK\r\n"  # a name, not a path
    assert session.send(b"LISTSCRIPTS\r\n") == b'"../x"\r\n"a\\\\b"\r\nOK\r\n'


def test_unauthenticate_and_logout(session):
    assert session.send(b"UNAUTHENTICATE\r\n") == b"OK\r\n"
    assert session.send(b"LISTSCRIPTS\r\n").startswith(b"NO")
    assert session.send(b"LOGOUT\r\n") == b'OK "Logout"\r\n'
    assert session.transport.disconnecting


def test_bad_input_never_gets_a_traceback(session):
    for line in (b'"unterminated\r\n', b"{x}\r\n", b"\r\n", b'PUTSCRIPT "a\rb" "x"\r\n'):
        reply = session.send(line)
        assert reply.startswith(b"NO "), (line, reply)
    assert session.send(b"x" * 300).startswith(b'BYE "line too long"')


def test_commands_wait_while_the_client_does_not_read(session):
    session.transport.producer.pauseProducing()  # the transport's buffer is full
    assert session.send(b"NOOP\r\nNOOP\r\n") == b""  # nothing runs meanwhile
    session.transport.producer.resumeProducing()
    assert session.read() == b'OK "Done"\r\nOK "Done"\r\n'


def test_the_sieve_capability_is_the_list_in_docs_sieve_rst(factory):
    """Administrators and users read the supported extensions there (as Pigeonhole's docs)."""
    greeting = Client(factory).greeting.decode()
    (line,) = [line for line in greeting.split("\r\n") if line.startswith('"SIEVE"')]
    advertised = line.split('"')[3].split()
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "sieve.rst")
    with open(docs, encoding="utf-8") as f:
        text = f.read()
    block = text.split("The ``SIEVE`` capability (what ``require`` accepts)::\n\n", 1)[1]
    listed = block.split("\n\n", 1)[0].split()
    assert listed == advertised


def test_reading_stops_while_a_failed_login_waits_and_starts_again_after(factory):
    """What a client sends during the failure delay waits in its socket, not in our memory
    (it grew the server by 742 MiB for 300 MiB sent)."""
    client = Client(factory)
    bad = b'AUTHENTICATE "PLAIN" "' + plain(password="wrong") + b'"\r\n'
    assert client.send(bad + b"CAPABILITY\r\n") == b""
    assert client.transport.producerState == "paused"
    factory.reactor.advance(factory.auth_failure_delay + 0.1)
    answer = client.read()
    assert answer.startswith(b'NO "authentication failed"\r\n"IMPLEMENTATION"'), answer
    assert client.transport.producerState == "producing"


def test_reading_stops_while_the_client_does_not_read_its_replies(factory):
    client = Client(factory)
    client.protocol._pressure.pauseProducing()  # the transport's send buffer is full
    assert client.send(b"CAPABILITY\r\n" * 3) == b""
    assert client.transport.producerState == "paused"
    client.protocol._pressure.resumeProducing()  # the client read them
    assert client.read().count(b'"IMPLEMENTATION"') == 3
    assert client.transport.producerState == "producing"
