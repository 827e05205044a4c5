"""Protocol fuzzing of the IMAP session over StringTransport: random commands (every verb, UID
forms, sequence sets, fetch attributes, SEARCH keys, flags, mailbox names, nesting, literals
synchronizing or not, announced sizes up to {4294967295} and beyond), before login, logged in
and with INBOX selected. Every response is tagged, untagged or a continuation request (RFC 3501
§2.2.2, literals skipped whole), nothing is logged as a failure, and the session either answers
NOOP at the end or said BYE."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from tests.conftest import SESSION_DEADLINE
from tests.imap.support import LOOPBACK, Session, deliver
from tests.support.fixtures import PASSWORD
from tests.support.fuzzworld import ALICE, fuzz_world
from tests.support.wire import imap_responses
from txmailhost.imap.server import IMAPFactory

pytestmark = pytest.mark.fuzz

MESSAGES = [
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: one\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nhello\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\n"
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n",
    b"Subject: eight bit \xe9\r\nTo: ((((\r\n\r\n\xff\xfe body\r\n",
]


@pytest.fixture(scope="module")
def make_session(tmp_path_factory):
    world, portal = fuzz_world(tmp_path_factory.mktemp("imap-fuzz"))
    for message in MESSAGES:
        deliver(world, ALICE, message)

    def make() -> Session:
        # EXPUNGE and MOVE take messages away: keep a few to fetch, search and store on.
        if len(world.inbox_files(ALICE)) < len(MESSAGES):
            for message in MESSAGES:
                deliver(world, ALICE, message)
        factory = IMAPFactory(portal, reactor=world.reactor, max_literal_size=100_000)
        return Session(factory, LOOPBACK)

    make.reactor = world.reactor
    return make


@dataclass(frozen=True)
class Literal:
    size: int  # announced
    data: bytes  # sent (when the server asks for it)
    non_sync: bool


_VERBS = [
    "CAPABILITY", "NOOP", "LOGOUT", "ID", "STARTTLS", "LOGIN", "AUTHENTICATE", "ENABLE", "SELECT",
    "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "STATUS",
    "APPEND", "NAMESPACE", "GETQUOTAROOT", "GETQUOTA", "SETQUOTA", "IDLE", "CHECK", "CLOSE",
    "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID FETCH", "UID SEARCH",
    "UID STORE", "UID COPY", "UID MOVE", "UID EXPUNGE", "UID NOOP", "XYZZY", "",
]  # fmt: skip
_ARGS = [
    "INBOX", "inbox", "Sent", "Trash", "Fuzz", "Fuzz/Sub", '"&AGk-t&AOk-"', '"&Jjo"', '"a/../b"',
    '""', '"*"', "%", "*", "1", "2", "*", "1:*", "4:2", "1,3:*", "99999", "0", "1:4294967296",
    "FLAGS", "(FLAGS UID RFC822.SIZE INTERNALDATE)", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    "(BODYSTRUCTURE ENVELOPE)", "BODY[]", "BODY[2.1]", "BODY[2.2.1]", "BODY[TEXT]<0.5>",
    "BINARY[1]", "BODY[1.MIME]", "ALL", "FAST", "FULL", "(CHANGEDSINCE 1)", "+FLAGS", "-FLAGS",
    "FLAGS.SILENT", "(\\Seen)", "(\\Deleted $Work)", "(\\Bogus)", "(MESSAGES UIDNEXT UNSEEN)",
    "CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "RETURN (MIN MAX COUNT)", "CHARSET UTF-8",
    "CHARSET KOI8", "SUBJECT caf\xe9", "OR SEEN NOT DELETED", "HEADER To ((", "SINCE 1-Feb-2024",
    "BEFORE 31-Feb-2024", "LARGER 10", "UID 1:*", "MODSEQ 1", "TEXT inner", "NIL", "PLAIN",
    ALICE, PASSWORD, '"17-Jul-1996 02:44:25 -0700"', "(" * 40, ")" * 3, '"unterminated',
    '"a\\"b"', "\\", "{", "}", "[", "]", "9" * 4400, "NOT " * 400 + "ALL",
]  # fmt: skip
# Mostly small literals; the huge ones (the session ends at a {n+} it won't read) now and then.
_SIZES = [0, 1, 2, 5, 9, 0, 1, 5, 70_000, 200_000, 4294967295, 99999999999999999999]

literals = st.builds(
    lambda size, non_sync, payload: (
        Literal(size, payload * (size // len(payload) + 1), non_sync)
        if size <= 300_000
        else Literal(size, b"", non_sync)
    ),
    st.sampled_from(_SIZES),
    st.booleans(),
    st.sampled_from([b"x", b"\r\n", b"Subject: lit\r\n\r\nbody\r\n", b"\x00\xff"]),
).map(lambda lit: Literal(lit.size, lit.data[: lit.size], lit.non_sync))
arguments = st.sampled_from(_ARGS).map(lambda a: a.encode("utf-8"))
tokens = st.one_of(
    arguments,
    arguments,
    arguments,
    st.binary(max_size=6).map(lambda b: b.replace(b"\n", b"")),
    literals,
)
commands = st.builds(
    lambda tag, verb, args: [tag + b" " + verb.encode(), *args],
    st.sampled_from([b"a1", b"b2", b"*", b"+", b"t{1}", b""]),
    st.sampled_from(_VERBS),
    st.lists(tokens, max_size=5),
)
_LOGIN = [[b"p1 LOGIN", ALICE.encode(), PASSWORD.encode()]]
_PLAIN = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
scripts = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(
        [
            [],
            _LOGIN,
            [*_LOGIN, [b"p2 SELECT INBOX"]],
            [*_LOGIN, [b"p2 SELECT INBOX"], [b"p3 IDLE"]],
            [*_LOGIN, [b"p2 ENABLE QRESYNC"], [b"p3 SELECT INBOX (QRESYNC (1 1))"]],
            [[b"p1 AUTHENTICATE PLAIN"]],
            [[b"p1 AUTHENTICATE PLAIN", _PLAIN]],
        ]
    ),
    st.lists(commands, max_size=8),
)


class Client:
    """Sends commands the way a client does: a synchronizing literal's octets only after the
    server's ``+``; a command is abandoned when the server answers before asking."""

    def __init__(self, session: Session, reactor) -> None:
        self.session = session
        self.reactor = reactor
        self.responses = imap_responses(session.greeting)

    @property
    def closed(self) -> bool:
        return bool(self.session.transport.disconnecting)

    def _send(self, data: bytes) -> list[bytes]:
        output = self.session.send(data)
        if not output and not self.closed:
            self.reactor.advance(5)  # the pause after a failed login
            output = self.session.take()
        responses = imap_responses(output)
        self.responses += responses
        return responses

    def command(self, parts: list) -> None:
        line = b""
        for part in parts:
            if not isinstance(part, Literal):
                line += (b" " if line else b"") + part
                continue
            marker = b"{%d%s}" % (part.size, b"+" if part.non_sync else b"")
            line += (b" " if line else b"") + marker
            if part.non_sync:
                self._send(line + b"\r\n" + part.data)
            else:
                answer = self._send(line + b"\r\n")
                if not answer or not answer[-1].startswith(b"+"):
                    return  # refused (or the session is gone): the client drops the command
                self._send(part.data)
            line = b""
            if self.closed:
                return
        self._send(line + b"\r\n")


@settings(deadline=SESSION_DEADLINE)
@given(scripts)
def test_session_responses_in_grammar_and_session_stays_usable(make_session, script):
    client = Client(make_session(), make_session.reactor)
    with capturedLogs() as events:
        for parts in script:
            client.command(parts)
            if client.closed:
                break
        for ending in (b"DONE", b"*", b"z NOOP"):  # leave IDLE or AUTHENTICATE, then ask
            if not client.closed:
                client._send(ending + b"\r\n")
    failures = [e for e in events if "log_failure" in e]
    assert not failures, failures[0]["log_failure"].getTraceback()
    ok = sum(1 for r in client.responses if re.match(rb"[^* ]+ OK", r)) - 1
    event(
        f"commands completed OK: {min(ok, 3)}{'+' if ok > 3 else ''}"
    )  # --hypothesis-show-statistics
    event(f"state at the end: {client.session.protocol.state.value}")
    if client.closed:
        assert any(r.startswith(b"* BYE") for r in client.responses), client.responses[-3:]
    else:
        assert client.responses[-1].startswith(b"z OK"), client.responses[-3:]
    client.session.close()


# -- pathological commands, end to end --------------------------------------------------------


def _selected(make_session) -> Session:
    session = make_session()
    assert session.login().startswith(b"a OK")
    assert b"s OK" in session.cmd("s SELECT INBOX")
    return session


@pytest.mark.parametrize(
    "command",
    [
        b"f FETCH 1:" + b"9" * 5000 + b" FLAGS",
        b"f UID SEARCH UID 1:" + b"9" * 5000,
        b"f SEARCH " + b"NOT " * 400 + b"ALL",
        b"f SEARCH " + b"OR " * 499 + b"ALL " * 500,
        b"f FETCH 1 " + b"(" * 10_000,
        b"f STORE 1 +FLAGS " + b"(" * 10_000,
    ],
)
def test_pathological_command_is_bad_without_a_logged_failure(make_session, command):
    session = _selected(make_session)
    with capturedLogs() as events:
        responses = imap_responses(session.cmd(command))
    assert responses[-1].startswith(b"f BAD "), responses[-1]
    assert not [e for e in events if "log_failure" in e]
    assert session.cmd("z NOOP").endswith(b"z OK NOOP completed\r\n")


@pytest.mark.parametrize(
    "marker, expected",
    [
        (b"{4294967295}", b"c NO [TOOBIG] literal too large (limit 65536 octets)\r\n"),
        (b"{99999999999999999999}", b"c NO [TOOBIG] literal too large (limit 65536 octets)\r\n"),
        (b"{999999999999999999999}", b"c BAD "),  # 21 digits: no literal marker at all
    ],
)
def test_huge_literal_announcement_is_refused_without_a_continuation(
    make_session, marker, expected
):
    session = _selected(make_session)
    reply = session.cmd(b"c CREATE " + marker)
    assert reply.startswith(expected) and b"+ " not in reply, reply
    assert session.cmd("z NOOP").endswith(b"z OK NOOP completed\r\n")


def test_command_with_an_8bit_tag_is_answered_untagged(make_session):
    session = make_session()
    assert session.cmd(b"\x80\xff NOOP") == b"* BAD missing tag\r\n"


def test_list_with_many_wildcards_answers_at_once(make_session):
    # Found by fuzzing: the pattern was a regular expression that backtracked exponentially;
    # this LIST held the reactor (every session of the server) for about 5 s, one more "%*"
    # for minutes.
    session = _selected(make_session)
    name = "Folder/with a rather long name, " + "x" * 16
    assert session.cmd(f'c CREATE "{name}"').startswith(b"c OK")
    start = time.perf_counter()
    reply = session.cmd('l LIST "" "%*%*%*%*%*a"')
    assert time.perf_counter() - start < 1.0
    assert reply.endswith(b"l OK LIST completed\r\n")
    assert session.cmd(f'd DELETE "{name}"').startswith(b"d OK")
