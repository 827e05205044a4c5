"""Protocol fuzzing of the ESMTP session over StringTransport: random command lines (verbs,
paths, parameters, SASL, 8-bit, NUL, bare LF, over-long lines) on the inbound and submission
policies. Every reply line is ``NNN-...`` / ``NNN ...`` (RFC 5321 4.2), nothing is logged as a
failure, and the session either stays usable (RSET answers 250) or said goodbye (221 or 421)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from tests.conftest import SESSION_DEADLINE
from tests.smtp.test_auth import LOOPBACK, SERVER, submission_factory
from tests.smtp.test_server import Session, TLSStringTransport, make_factory
from tests.support.fixtures import PASSWORD, make_world
from tests.support.wire import smtp_replies

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("smtp-fuzz"))
    w.add_user("alice@example.test")
    return w


_PLAIN = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode())
_VERBS = [
    b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP", b"VRFY",
    b"EXPN", b"HELP", b"STARTTLS", b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH CRAM-MD5", b"QUIT",
    b"mail from:", b"rcpt to:", b"", b"*", b"=",
]  # fmt: skip
_ARGS = [
    b"client.example", b"<>", b"<alice@example.test>", b"<a@remote.example>", b"<Postmaster>",
    b'<"a b"@example.test>', b"<a@[192.0.2.1]>", b"<@r.example:alice@example.test>",
    b"SIZE=100", b"SIZE=99999999999999999999999", b"BODY=8BITMIME", b"BODY=BINARYMIME",
    b"SMTPUTF8", b"<j\xc3\xb6rg@example.test>", b"\x00", b"\xff", b"=", _PLAIN, b"*",
    b"0", b"7", b"3 LAST", b"LAST", b"RET=FULL", b"ENVID=x+2B", b"NOTIFY=SUCCESS,DELAY",
    b"ORCPT=rfc822;a@b.example", b"REQUIRETLS",
]  # fmt: skip

lines = st.one_of(
    st.builds(
        lambda verb, args: b" ".join([verb, *args]) if args else verb,
        st.sampled_from(_VERBS),
        st.lists(st.one_of(st.sampled_from(_ARGS), st.binary(max_size=8)), max_size=3),
    ).map(lambda line: line.replace(b":" + b" ", b":")),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.just(b"x" * 70_000),  # beyond the line limit
)
endings = st.sampled_from([b"\r\n", b"\n"])
# A well-formed start, so the random lines also land inside a transaction, DATA and AUTH.
_PREFIXES = [
    [],
    [b"EHLO c.example"],
    [b"EHLO c.example", b"MAIL FROM:<a@remote.example>"],
    [b"EHLO c.example", b"MAIL FROM:<a@remote.example>", b"RCPT TO:<alice@example.test>"],
    [b"EHLO c.example", b"MAIL FROM:<>", b"RCPT TO:<alice@example.test>", b"DATA"],
    [b"EHLO c.example", b"MAIL FROM:<>", b"RCPT TO:<alice@example.test>", b"BDAT 2", b"x"],
    [b"EHLO c.example", b"AUTH PLAIN"],
    [b"EHLO c.example", b"AUTH LOGIN"],
]
scripts = st.builds(
    lambda prefix, rest: [(line, b"\r\n") for line in prefix] + rest,
    st.sampled_from(_PREFIXES),
    st.lists(st.tuples(lines, endings), max_size=12),
)


def _check_session(factory, script) -> None:
    s = Session(factory, TLSStringTransport(hostAddress=SERVER, peerAddress=LOOPBACK))
    finals = smtp_replies(s.read())
    with capturedLogs() as events:
        for line, ending in script:
            finals += smtp_replies(s.send(line + ending))
            if s.transport.disconnecting:
                break
        # Whatever state the script left (DATA, a SASL exchange), end it and ask again. A BDAT
        # chunk still being read is owed its octets first (RFC 3030: they are never commands).
        chunk = getattr(s.protocol, "_chunk", None)
        if chunk is not None and not s.transport.disconnecting:
            if chunk.remaining > 65536:  # a huge announced chunk: the session rightly waits
                s.protocol.connectionLost(None)
                assert not [e for e in events if "log_failure" in e]
                return
            finals += smtp_replies(s.send(b"x" * chunk.remaining))
        if not s.transport.disconnecting:
            finals += smtp_replies(s.send(b"\r\n.\r\n"))
        if not s.transport.disconnecting:
            finals += smtp_replies(s.send(b"*\r\nRSET\r\n"))
    failures = [e for e in events if "log_failure" in e]
    assert not failures, failures[0]["log_failure"].getTraceback()
    if s.transport.disconnecting:
        assert finals[-1][:3] in (b"221", b"421"), finals[-3:]
    else:
        assert finals[-1].startswith(b"250 "), finals[-3:]
    s.protocol.connectionLost(None)


@settings(deadline=SESSION_DEADLINE)
@given(scripts)
def test_inbound_session_replies_in_grammar_and_stays_usable(world, script):
    _check_session(make_factory(world), script)


@settings(deadline=SESSION_DEADLINE)
@given(scripts)
def test_submission_session_replies_in_grammar_and_stays_usable(world, script):
    _check_session(submission_factory(world), script)


@settings(deadline=SESSION_DEADLINE)
@given(scripts)
def test_pipelined_commands_reply_in_grammar(world, script):
    """The same lines in one write (RFC 2920 PIPELINING)."""
    s = Session(make_factory(world), TLSStringTransport(hostAddress=SERVER, peerAddress=LOOPBACK))
    with capturedLogs() as events:
        smtp_replies(s.read() + s.send(b"".join(line + ending for line, ending in script)))
    assert not [e for e in events if "log_failure" in e]
    s.protocol.connectionLost(None)
