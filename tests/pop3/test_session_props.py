"""Protocol fuzzing of the POP3 session over StringTransport: random command lines (every verb,
numbers in and out of range, SASL PLAIN, 8-bit, bare LF, over-long lines), logged in or not.
Each reply is one ``+OK``/``-ERR`` status line (RFC 1939 §3), a multi-line one ends with a lone
``.`` and is dot-stuffed, a SASL challenge is ``+ ``; nothing is logged as a failure; the
session either answers CAPA at the end or closed after an ``-ERR`` or QUIT's ``+OK``."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from tests.conftest import SESSION_DEADLINE
from tests.imap.support import deliver
from tests.pop3.test_server import LOOPBACK, SERVER, Client, TLSStringTransport
from tests.support.fixtures import PASSWORD
from tests.support.fuzzworld import ALICE, fuzz_world
from tests.support.wire import pop3_status
from txmailhost.pop3.server import POP3Factory

pytestmark = pytest.mark.fuzz

MESSAGES = [
    b"From: bob@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast\r\n",
    b"Subject: two\r\n\r\nbody without final newline",
]


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    world, portal = fuzz_world(tmp_path_factory.mktemp("pop3-fuzz"))

    def make() -> POP3Factory:
        # Sessions commit DELE at QUIT: keep a couple of messages to list, fetch and delete.
        while len(world.inbox_files(ALICE)) < len(MESSAGES):
            for message in MESSAGES:
                deliver(world, ALICE, message)
        return POP3Factory(portal, reactor=world.reactor, hostname="mail.example.test")

    make.reactor = world.reactor
    return make


_VERBS = [
    b"CAPA", b"USER", b"PASS", b"AUTH", b"STLS", b"QUIT", b"STAT", b"LIST", b"UIDL", b"TOP",
    b"RETR", b"DELE", b"RSET", b"NOOP", b"APOP", b"list", b"", b"+", b".",
]  # fmt: skip
_ARGS = [
    b"1", b"2", b"3", b"0", b"-1", b"999999999999", b"1 2", b"PLAIN", b"LOGIN", b"*", b"=",
    ALICE.encode(), PASSWORD.encode(), base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()),
    b"\x00", b"\xff\xfe",
]  # fmt: skip
lines = st.one_of(
    st.builds(
        lambda verb, args: b" ".join([verb, *args]),
        st.sampled_from(_VERBS),
        st.lists(st.one_of(st.sampled_from(_ARGS), st.binary(max_size=6)), max_size=3),
    ),
    st.binary(max_size=40),
    st.just(b"x" * 300),  # beyond RFC 2449's 255-octet line
).map(lambda line: line.replace(b"\n", b""))
_LOGIN = [b"USER " + ALICE.encode(), b"PASS " + PASSWORD.encode()]
scripts = st.builds(
    lambda prefix, rest: [(line, b"\r\n") for line in prefix] + rest,
    st.sampled_from([[], _LOGIN, [b"AUTH PLAIN"], [*_LOGIN, b"DELE 1"]]),
    st.lists(st.tuples(lines, st.sampled_from([b"\r\n", b"\n"])), max_size=12),
)


def check_response(output: bytes) -> bytes:
    """The status line of the one response in ``output``, after checking its framing."""
    assert output.endswith(b"\r\n"), output[-100:]
    status, _, body = output.partition(b"\r\n")
    if status == b"+ " or status.startswith(b"+ "):  # RFC 5034 §4: a SASL challenge
        assert not body
        return status
    assert pop3_status(status), status
    if body:
        assert status.startswith(b"+OK"), output[:200]
        assert body == b".\r\n" or body.endswith(b"\r\n.\r\n"), body[-100:]
        for line in body[:-3].split(b"\r\n")[:-1]:
            assert not line.startswith(b".") or line.startswith(b".."), line
    return status


def _answer(client: Client, reactor, data: bytes) -> bytes:
    """What the server says to ``data``, once the pause after a failed login has passed."""
    output = client.send(data)
    if not output and not client.closed:
        reactor.advance(10)
        client.pump()
        output = client.read()
    return output


@settings(deadline=SESSION_DEADLINE)
@given(scripts)
def test_session_replies_in_grammar_and_stays_usable(factory, script):
    client = Client(factory(), TLSStringTransport(hostAddress=SERVER, peerAddress=LOOPBACK))
    statuses = [check_response(client.greeting)]
    with capturedLogs() as events:
        for line, ending in script:
            statuses.append(check_response(_answer(client, factory.reactor, line + ending)))
            if client.closed:
                break
        if not client.closed:
            _answer(client, factory.reactor, b"*\r\n")  # ends a SASL exchange or is unknown
        if not client.closed:
            statuses.append(check_response(_answer(client, factory.reactor, b"CAPA\r\n")))
    failures = [e for e in events if "log_failure" in e]
    assert not failures, failures[0]["log_failure"].getTraceback()
    if client.closed:
        assert statuses[-1].startswith((b"-ERR", b"+OK")), statuses[-3:]
    else:
        assert statuses[-1] == b"+OK capability list follows", statuses[-3:]
    client.drop()
