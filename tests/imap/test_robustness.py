"""Hostile and broken input: every line gets a tagged (or untagged) reply, nothing escapes as
a server error, and the session keeps working afterwards."""

from __future__ import annotations

import random

import pytest
from twisted.logger import LogLevel, capturedLogs

from tests.imap.support import ALICE, Session, deliver, make_factory
from tests.support.fixtures import make_world
from txmailhost.imap import server

SEEDS = [
    b"FETCH 1 (BODY[1.2.HEADER.FIELDS (From)]<0.10>)",
    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
    b"SEARCH OR (FROM a SUBJECT b) NOT UID 1:* SENTSINCE 1-Jan-2020",
    b"STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen $x)",
    b'LIST (SUBSCRIBED) "" ("*" "%") RETURN (STATUS (MESSAGES))',
    b"SELECT INBOX (QRESYNC (1 2 1:5 (1 1)))",
    b'APPEND INBOX (\\Seen) "01-Jan-2020 00:00:00 +0000" {5+}\r\nhello',
    b"UID MOVE 1:3 Trash",
    b'STATUS "INBOX" (MESSAGES UIDNEXT SIZE)',
    b'ID ("a" "b" "c" NIL)',
    b"SEARCH RETURN (MIN COUNT) CHARSET UTF-8 TEXT {3+}\r\nabc",
]
BROKEN_MIME = [
    b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\nx\r\n",
    b"Content-Type: text/plain;\r\nSubject: \xff\xfe raw 8bit \xe9\r\n\r\nbody\r\n",
    b'Content-Type: multipart/mixed; boundary="a;b"\r\n\r\n--a;b\r\n\r\none\r\n--a;b--\r\n',
    b"Content-Type: message/rfc822\r\n\r\nnot a header line\r\n",
    b'From: "unbalanced <x@y>\r\nTo: undisclosed-recipients:;\r\n\r\n',
    b"Content-Type: multipart/alternative; boundary=q\r\n\r\n" + b"--q\r\n" * 2000,
    b"no header at all",
]


def _mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.4 and data:
            del data[pos % len(data)]
        elif op < 0.8:
            data[pos:pos] = bytes([rng.choice(b'()[]{}<>"\\ *%:.,0123456789+-ABC\x00\xff')])
        else:
            data[pos:pos] = b"(" * rng.randint(1, 40)
    return bytes(data).replace(b"\r\n", b" ")


@pytest.fixture
def world(tmp_path, backend):
    w = make_world(tmp_path, backend)
    w.add_user(ALICE)
    for message in BROKEN_MIME:
        deliver(w, ALICE, message)
    return w


def test_mutated_commands_never_cause_server_errors(world):
    rng = random.Random(3501)
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    with capturedLogs() as events:
        for i in range(600):
            seed = rng.choice(SEEDS)
            line = _mutate(rng, seed) if rng.random() < 0.9 else seed
            reply = s.send(b"t%d " % i + line + b"\r\n")
            if s.transport.disconnecting:
                break
            if b"{" in line and b"+}" not in line and reply.startswith(b"+ "):
                reply += s.send(b"x" * 3 + b"\r\n")
            assert b"SERVERBUG" not in reply, (line, reply)
            if not reply.endswith(b"\r\n") and reply:
                pytest.fail(f"partial reply to {line!r}: {reply!r}")
            s.protocol._bad_commands = 0  # keep the session open for the next case
            if s.protocol.state.name == "AUTHENTICATED":
                s.cmd("s SELECT INBOX")
    failures = [e for e in events if e.get("log_level") == LogLevel.critical]
    assert failures == []
    assert s.cmd("z NOOP").endswith(b"z OK NOOP completed\r\n")


def test_every_item_of_broken_mime_messages_can_be_fetched(world):
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    reply = s.cmd("b FETCH 1:* (ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[1] BODY.PEEK[2.1.MIME])")
    assert reply.endswith(b"b OK FETCH completed\r\n")
    assert reply.count(b" FETCH (") == len(BROKEN_MIME)
    assert s.cmd("c SEARCH TEXT body").endswith(b"c OK SEARCH completed\r\n")


def test_raw_8bit_subject_is_sent_back_as_a_literal(world):
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    reply = s.cmd("b FETCH 2 ENVELOPE")
    assert b"{13}\r\n\xff\xfe raw 8bit \xe9 NIL" in reply


@pytest.mark.parametrize(
    "section",
    ["BINARY.PEEK[12345678901]", "BODY.PEEK[00000000001]", "BODY.PEEK[4294967296]",
     "BINARY.SIZE[01]", "BODY.PEEK[1.99999999999999999999.MIME]"],
)  # fmt: skip
def test_a_part_number_that_is_no_nz_number_is_bad(world, section):
    """RFC 3501 §9: a part number is an nz-number (no leading zero, below 2^32). Cut to ten
    digits, ``BINARY.PEEK[12345678901]`` was answered as ``BINARY[1234567890]``, a label
    the client never asked for, and ``BODY[00000000001]`` as part 1."""
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    assert s.cmd(f"b FETCH 1 {section}").startswith(b"b BAD ")
    assert s.cmd("c FETCH 1 BODY.PEEK[1]").endswith(b"c OK FETCH completed\r\n")


def test_a_qresync_uidvalidity_past_32_bits_is_bad(world):
    """RFC 7162 3.2.5: QRESYNC's UIDVALIDITY is an nz-number, below 2^32; 4294967296 was
    taken (and never matched), where the largest number the mailbox can have is one less."""
    s = Session(make_factory(world))
    s.login()
    s.cmd("e ENABLE QRESYNC")
    assert s.cmd("s SELECT INBOX (QRESYNC (4294967296 1))").startswith(b"s BAD ")
    assert s.cmd("t SELECT INBOX (QRESYNC (4294967295 1))").endswith(
        b"t OK [READ-WRITE] SELECT completed\r\n"
    )


def test_a_sent_date_past_year_9999_matches_no_sent_search(world):
    """``Date: ... 99999``: SENTBEFORE/SENTON/SENTSINCE over the mailbox answered
    ``NO [SERVERBUG]`` (the calendar stops at 9999); such a message has no sent day."""
    deliver(world, ALICE, b"Date: Mon, 1 Jan 99999 10:00:00 +0000\r\nSubject: far\r\n\r\nx\r\n")
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    for key in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        reply = s.cmd(f"b SEARCH {key} 1-Jan-2000")
        assert reply.endswith(b"b OK SEARCH completed\r\n"), reply
        assert b"* SEARCH %d" % (len(BROKEN_MIME) + 1) not in reply


def test_a_subject_of_many_encoded_words_is_searched_in_bounded_work(world):
    """Decoding is quadratic in the encoded words: past ``MAX_DECODED`` characters the rest
    of the value is searched as it is, and a word decoded before the cut is still found."""
    from txmailhost.imap import search

    words = " ".join(["=?utf-8?q?caf=C3=A9?="] + ["=?utf-8?q?x?="] * 20_000)
    assert len(words) > 10 * search.MAX_DECODED
    decoded = search._decode_header(words.encode())
    assert decoded.startswith("caféxx") and len(decoded) < len(words)  # RFC 2047 6.2: no space
    deliver(world, ALICE, b"Subject: " + words.encode() + b"\r\n\r\nx\r\n")
    s = Session(make_factory(world))
    s.login()
    s.cmd("s SELECT INBOX")
    reply = s.cmd(b"b SEARCH CHARSET UTF-8 SUBJECT {5+}\r\ncaf\xc3\xa9")
    assert b"* SEARCH %d\r\n" % (len(BROKEN_MIME) + 1) in reply


def one_turn(clock) -> None:
    """What a real reactor runs of its due calls in one turn: those due when the turn began
    (``Clock.advance(0)`` runs the ones they schedule for "now" too, all in one go)."""
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.func(*call.args, **call.kw)


def test_a_pipelined_flood_of_quick_commands_gives_other_connections_a_turn(world):
    """Each NOOP is answered at once; run back to back, a 64 KiB read of them (8,000) kept the
    reactor until the last was answered, and every other session waited. After
    ``COMMANDS_A_TURN`` the rest waits for the reactor's next turn, and then goes on."""
    factory = make_factory(world)
    flooder, other = Session(factory), Session(factory)
    assert b"a OK" in flooder.login()
    assert b"a OK" in other.login()
    replies = flooder.send(b"n NOOP\r\n" * 1000)
    assert 0 < replies.count(b"n OK NOOP completed") <= server.COMMANDS_A_TURN
    # the reactor's turn: the other session is served, then the flood goes on
    assert other.cmd("o NOOP") == b"o OK NOOP completed\r\n"
    answered = replies.count(b"n OK")
    while answered < 1000:
        one_turn(world.reactor)
        more = flooder.take().count(b"n OK")
        assert 0 < more <= server.COMMANDS_A_TURN
        answered += more
    assert flooder.cmd("z NOOP") == b"z OK NOOP completed\r\n"
