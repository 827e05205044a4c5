"""COMPRESS=DEFLATE (RFC 4978) at the byte level: the switch after the tagged OK, both streams,
one activation per session, bad input, and the memory bound against a decompression bomb."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from tests.imap.support import ALICE, Session, deliver, make_factory

MSG = b"From: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


class Client:
    """The client's half of the two deflate streams."""

    def __init__(self) -> None:
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

    def pack(self, data: bytes) -> bytes:
        return self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)

    def unpack(self, data: bytes) -> bytes:
        return self.inflater.decompress(data)


@pytest.fixture
def compressed(world):
    s = Session(make_factory(world))
    assert b"a OK" in s.login()
    assert s.cmd("z COMPRESS DEFLATE") == b"z OK DEFLATE active\r\n"
    client = Client()
    yield s, client
    s.close()


def talk(session: Session, client: Client, line: bytes) -> bytes:
    return client.unpack(session.send(client.pack(line + b"\r\n")))


def test_compress_deflate_is_offered_after_login_only(world):
    s = Session(make_factory(world))
    assert b"COMPRESS=DEFLATE" not in s.greeting
    assert b"COMPRESS=DEFLATE" in s.login()
    s.close()


def test_compress_before_login_is_refused(world):
    s = Session(make_factory(world))
    assert s.cmd("a COMPRESS DEFLATE") == b"a BAD log in first\r\n"
    s.close()


def test_both_directions_are_raw_deflate_after_the_ok(world, compressed):
    s, client = compressed
    deliver(world, ALICE, MSG)
    raw = s.send(client.pack(b"b SELECT INBOX\r\n"))
    assert not raw.startswith(b"* ")  # not plaintext
    reply = client.unpack(raw)
    assert b"* 1 EXISTS\r\n" in reply
    assert reply.endswith(b"b OK [READ-WRITE] SELECT completed\r\n")
    fetched = talk(s, client, b"c FETCH 1 BODY[]")
    assert b"* 1 FETCH (BODY[] {%d}\r\n%s FLAGS" % (len(MSG), MSG) in fetched
    assert fetched.endswith(b"c OK FETCH completed\r\n")


def test_a_second_compress_is_no_compressionactive(compressed):
    s, client = compressed
    assert talk(s, client, b"b COMPRESS DEFLATE") == (
        b"b NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS\r\n"
    )
    assert talk(s, client, b"c NOOP") == b"c OK NOOP completed\r\n"


@pytest.mark.parametrize("args", ["", " GZIP", " DEFLATE X"])
def test_unknown_or_malformed_mechanism_is_bad_and_nothing_changes(world, args):
    s = Session(make_factory(world))
    s.login()
    assert s.cmd(f"b COMPRESS{args}").startswith(b"b BAD ")
    assert s.cmd("c NOOP") == b"c OK NOOP completed\r\n"  # still plaintext
    s.close()


def test_commands_pipelined_after_compress_are_read_compressed(world):
    s = Session(make_factory(world))
    s.login()
    client = Client()
    out = s.send(b"z COMPRESS DEFLATE\r\n" + client.pack(b"b NOOP\r\n"))
    head, sep, rest = out.partition(b"\r\n")
    assert head + sep == b"z OK DEFLATE active\r\n"
    assert client.unpack(rest) == b"b OK NOOP completed\r\n"
    s.close()


def test_append_literal_through_the_stream(compressed):
    s, client = compressed
    assert talk(s, client, b"b APPEND INBOX {%d}" % len(MSG)).startswith(b"+ ")
    assert b"b OK [APPENDUID" in talk(s, client, MSG)


def test_a_stream_split_anywhere_is_read_alike(compressed):
    s, client = compressed
    packed = client.pack(b"b NOOP\r\nc CAPABILITY\r\n")
    out = b"".join(s.send(packed[i : i + 1]) for i in range(len(packed)))
    reply = client.unpack(out)
    assert reply.startswith(b"b OK NOOP completed\r\n* CAPABILITY ")
    assert reply.endswith(b"c OK CAPABILITY completed\r\n")


def test_invalid_deflate_data_ends_the_session_with_bye(compressed):
    s, client = compressed
    out = s.send(b"\xff\xff\xff\xff garbage")
    assert client.unpack(out) == b"* BYE invalid compressed data\r\n"
    assert s.transport.disconnecting or s.protocol._closing


def test_a_decompression_bomb_meets_the_line_limit_in_bounded_memory(compressed):
    """64 MiB of one line, about 64 KiB compressed: BAD (line too long) and the session goes on;
    the inflated data never sits in memory as a whole."""
    s, client = compressed
    bomb = client.deflater.compress(b"b NOOP ")
    for _ in range(64):
        bomb += client.deflater.compress(b"x" * (1 << 20))
    bomb += client.pack(b"\r\nc NOOP\r\n")
    assert len(bomb) < 128 * 1024
    reactor = s.protocol.factory.reactor
    tracemalloc.start()
    try:
        first = client.unpack(s.send(bomb))
        # 256 KiB are inflated, then the reactor serves the others before the rest
        assert first == b"b BAD [TOOBIG] command line too long\r\n"
        assert reactor.getDelayedCalls()
        reactor.advance(0)  # (a fake clock runs the calls made meanwhile too)
        rest = client.unpack(s.take())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert rest == b"c OK NOOP completed\r\n"


def test_a_bomb_waits_compressed_while_a_command_runs(compressed):
    """Reading pauses while a command runs: the input after it is not inflated meanwhile."""
    s, client = compressed
    s.protocol.pauseProducing()
    s.protocol.dataReceived(client.pack(b"b NOOP\r\n" + b"y" * (8 << 20)))
    assert len(s.protocol._buffer) == 0
    s.protocol.resumeProducing()
    assert client.unpack(s.take()).startswith(b"b OK NOOP completed\r\n")
