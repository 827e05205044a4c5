"""CHUNKING and BINARYMIME (RFC 3030) at the byte level: BDAT in any chunk sizes, pipelined,
refused in and out of sequence, and never a way around the bare CR/LF rule."""

from __future__ import annotations

import os

import pytest

from tests.smtp.test_server import Session, make_factory
from tests.support.fixtures import make_world
from txmailhost.smtp.datastream import LineEnds


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.add_user("alice@example.test")
    w.add_user("bob@example.test")
    return w


@pytest.fixture
def session(world):
    s = Session(make_factory(world))
    s.read()
    s.send(b"EHLO c.test\r\n")
    return s


def begin(session, to=b"alice@example.test", mail_params=b""):
    assert session.codes(
        b"MAIL FROM:<x@r.test>" + mail_params + b"\r\nRCPT TO:<" + to + b">\r\n"
    ) == [
        "250",
        "250",
    ]


def test_ehlo_offers_chunking_binarymime_smtputf8_and_dsn(world):
    s = Session(make_factory(world))
    s.read()
    lines = s.send(b"EHLO c.test\r\n").split(b"\r\n")
    for keyword in (b"CHUNKING", b"BINARYMIME", b"SMTPUTF8", b"DSN"):
        assert b"250-" + keyword in lines
    assert not any(b"REQUIRETLS" in line for line in lines)  # no TLS on this session


def test_one_last_chunk_delivers_the_message(session, world):
    begin(session)
    body = b"Subject: chunked\r\n\r\nhello\r\n.\r\n"  # a dot line is just text in BDAT
    out = session.send(b"BDAT %d LAST\r\n" % len(body) + body)
    assert out.startswith(b"250 2.0.0 OK delivered as ")
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.endswith(body)
    assert b"Received: from c.test" in stored
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


def test_chunks_of_any_size_pipelined_with_the_transaction_give_one_reply_each(session, world):
    body = b"Subject: many\r\n\r\n" + b"line of text\r\n" * 300
    sizes = [1, 0, 7, 1000, len(body)]  # the last one is cut to what is left
    pieces, pos = [], 0
    for size in sizes[:-1]:
        pieces.append(b"BDAT %d\r\n" % size + body[pos : pos + size])
        pos += size
    rest = body[pos:]
    pieces.append(b"BDAT %d LAST\r\n" % len(rest) + rest)
    burst = b"MAIL FROM:<x@r.test>\r\nRCPT TO:<bob@example.test>\r\n" + b"".join(pieces)
    # Fed a few bytes at a time: chunk boundaries and command lines split anywhere.
    out = b""
    for i in range(0, len(burst), 37):
        out += session.send(burst[i : i + 37])
    codes = [line[:3] for line in out.split(b"\r\n") if line]
    assert codes == [b"250"] * (2 + len(sizes))
    assert b"250 2.0.0 1008 octets received" in out
    (stored,) = world.inbox_files("bob@example.test")
    assert stored.endswith(body)


def test_bdat_0_last_ends_the_message(session, world):
    begin(session)
    assert session.codes(b"BDAT 6\r\nab\r\n\r\n") == ["250"]
    assert session.send(b"BDAT 0 LAST\r\n").startswith(b"250 2.0.0 OK delivered")
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.endswith(b"\r\nab\r\n\r\n")


@pytest.mark.parametrize(
    "before, expected",
    [
        (b"", b"503 5.5.1 need MAIL before BDAT"),
        (b"MAIL FROM:<x@r.test>\r\n", b"503 5.5.1 need RCPT before BDAT"),
        (b"MAIL FROM:<x@r.test>\r\nRCPT TO:<nobody@example.test>\r\n", b"554 5.5.1"),
    ],
)
def test_bdat_out_of_sequence_is_refused_and_its_chunk_is_never_run_as_commands(
    session, world, before, expected
):
    chunk = b"QUIT\r\nRSET\r\n"
    out = session.send(before + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    lines = [line for line in out.split(b"\r\n") if line]
    assert lines[-2].startswith(expected)
    assert lines[-1] == b"250 2.0.0 OK"  # the NOOP: in step, the chunk's QUIT never ran
    assert not session.transport.disconnecting
    assert world.inbox_files("alice@example.test") == []


def test_bdat_after_helo_is_refused_503_and_its_chunk_is_read_not_run(world):
    """HELO offers no extension (RFC 5321 4.1.1.1), so no CHUNKING: a BDAT there was taken
    and the message delivered. Its octets are still read, so the NOOP after them is the
    next command, and the transaction fails: a DATA then has no recipients."""
    s = Session(make_factory(world))
    s.read()
    s.send(b"HELO c.test\r\n")
    begin(s)
    chunk = b"Subject: x\r\n\r\nQUIT\r\n"
    out = s.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\nDATA\r\n")
    lines = [line for line in out.split(b"\r\n") if line]
    assert lines == [
        b"503 5.5.1 BDAT needs EHLO: CHUNKING is not offered after HELO (RFC 3030 2)",
        b"250 2.0.0 OK",
        b"503 5.5.1 need MAIL before DATA",
    ]
    assert not s.transport.disconnecting
    assert world.inbox_files("alice@example.test") == []


def test_data_after_bdat_is_refused_and_rset_starts_over(session, world):
    begin(session)
    session.send(b"BDAT 4\r\nab\r\n")
    assert session.send(b"DATA\r\n").startswith(b"503 5.5.1 DATA not allowed")
    assert session.send(b"MAIL FROM:<y@r.test>\r\n").startswith(b"503 5.5.1")
    assert session.codes(b"RSET\r\n") == ["250"]
    begin(session)
    assert session.send(b"BDAT 8 LAST\r\nS: x\r\n\r\n").startswith(b"250 2.0.0 OK delivered")
    (stored,) = world.inbox_files("alice@example.test")
    assert stored.endswith(b"\r\nS: x\r\n\r\n")  # nothing of the first attempt


@pytest.mark.parametrize("arg", [b"", b"x", b"-1", b"5 LASTX", b"5 LAST extra", b"1" * 21])
def test_a_bdat_size_that_does_not_parse_closes_the_session(session, arg):
    out = session.send(b"BDAT " + arg + b"\r\nMAIL FROM:<a@b.test>\r\n")
    assert (
        out
        == b"421 4.5.4 BDAT needs a chunk size (and LAST); the stream can't be followed, closing\r\n"
    )
    assert session.transport.disconnecting


def test_chunk_over_the_size_limit_is_read_and_refused_and_later_chunks_too(session, world):
    begin(session)  # the factory's limit is 10,000 octets
    big = b"x" * 6000
    out = session.send(b"BDAT 6000\r\n" + big + b"BDAT 6000\r\n" + big + b"BDAT 1 LAST\r\nx")
    codes = [line[:9] for line in out.split(b"\r\n") if line]
    assert codes == [b"250 2.0.0", b"552 5.3.4", b"503 5.5.1"]
    assert session.codes(b"NOOP\r\n") == ["250"]
    assert world.inbox_files("alice@example.test") == []
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


@pytest.mark.parametrize(
    "chunks",
    [
        [b"Subject: x\r\n\r\nsmuggled\n.\nMAIL"],
        [b"Subject: x\r\n\r\na\r", b"b\r\n"],  # a CR at a chunk's end, no LF after it
        [b"Subject: x\r\n\r\nab\r"],  # a CR that ends the message
        [b"Subject: x\r\n\r\na\rb\r\n"],
    ],
)
def test_bare_cr_or_lf_in_chunks_refuses_the_message(session, world, chunks):
    begin(session)
    out = b""
    for i, chunk in enumerate(chunks):
        last = b" LAST" if i == len(chunks) - 1 else b""
        out += session.send(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    assert out.split(b"\r\n")[-2].startswith(b"554 5.6.0 message refused: bare CR or LF")
    assert world.inbox_files("alice@example.test") == []
    assert session.codes(b"NOOP\r\n") == ["250"]


def test_crlf_split_across_two_chunks_is_a_line_end(session, world):
    begin(session)
    session.send(b"BDAT 13\r\nSubject: x\r\n\r")
    assert session.send(b"BDAT 3 LAST\r\n\nhi").startswith(b"250 2.0.0 OK delivered")
    assert world.inbox_files("alice@example.test")[0].endswith(b"Subject: x\r\n\r\nhi")


def test_binarymime_takes_any_octets_by_bdat_and_refuses_data(session, world):
    begin(session, mail_params=b" BODY=BINARYMIME")
    assert session.send(b"DATA\r\n").startswith(b"503 5.5.1 BODY=BINARYMIME")
    body = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xff\n\r.\n"
    assert session.send(b"BDAT %d LAST\r\n" % len(body) + body).startswith(b"250 2.0.0")
    assert world.inbox_files("alice@example.test")[0].endswith(body)


def test_a_client_that_drops_mid_chunk_leaves_nothing(session, world):
    begin(session)
    session.send(b"BDAT 100 LAST\r\nSubject: half")
    session.protocol.connectionLost(None)
    assert world.inbox_files("alice@example.test") == []
    assert os.listdir(os.path.join(world.root, "queue", "tmp")) == []


@pytest.mark.parametrize(
    "chunks, bare",
    [
        ([b"a\r\nb"], False),
        ([b"a\r", b"\nb"], False),
        ([b"a\r", b"b"], True),
        ([b"a\n"], True),
        ([b"\r"], True),
        ([b"", b"\r\n"], False),
    ],
)
def test_line_ends_watch_spans_chunks(chunks, bare):
    watch = LineEnds()
    for chunk in chunks:
        watch.feed(chunk)
    watch.end()
    assert watch.bare is bare
