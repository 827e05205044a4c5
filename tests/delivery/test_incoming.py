"""``IncomingSpool``: the files arriving messages stream into."""

from __future__ import annotations

import os
import tracemalloc
import zlib

from tests.smtp.test_server import Session
from tests.support.fixtures import make_world
from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.smtp.policy import InboundPolicy
from txmailhost.smtp.server import SMTPFactory


def test_data_is_accepted_into_a_spool_directory_that_did_not_exist(tmp_path):
    """An embedding application constructs the spool and serves: no ``sweep()`` needed first
    (before, DATA got 451 4.3.0 with FileNotFoundError)."""
    world = make_world(tmp_path)
    world.add_user("alice@example.test")
    directory = os.path.join(world.root, "not", "yet", "there")
    spool = IncomingSpool(directory, world.reactor, world.pool)
    factory = SMTPFactory(
        InboundPolicy(world.router, world.store),
        Submission(world.store, spool),
        reactor=world.reactor,
    )
    session = Session(factory)
    session.send(b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    session.send(b"DATA\r\n")
    reply = session.send(b"Subject: hi\r\n\r\n" + b"x" * (300 * 1024) + b"\r\n.\r\n")
    assert reply.startswith(b"250 2.0.0"), reply
    assert len(world.inbox_files("alice@example.test")) == 1
    assert os.stat(directory).st_mode & 0o777 == 0o700


def test_a_spilled_body_is_copied_behind_the_header_block_in_small_pieces(tmp_path):
    """A filter's header fields go on top of a large message by copying its body from the
    side file behind them (``seal``). That copy read a new 1 MiB ``bytes`` at a time: 2 MiB
    more at the peak of every large message, kept afterwards by glibc in the arena of each
    pool thread that did a copy (docs/benchmarks-smtp.rst). Now one 64 KiB buffer: what
    the copy costs doesn't depend on the message, and the stored file and its CRC are whole."""
    reactor, pool = SyncReactor(), SyncThreadPool()
    message = IncomingSpool(str(tmp_path / "spool"), reactor, pool).open()
    message.hold_headers()
    message.write_trace(b"Return-Path: <x@remote.test>\r\n")
    line = b"y" * 998 + b"\r\n"
    message.write(b"Subject: big\r\n\r\n")
    for _ in range(8 * 1024):  # 8 MiB, in the pieces a client's writes come in
        message.write(line)
    message.prepend(b"X-Spam-Score: 0.0\r\n")
    tracemalloc.start()
    try:
        sealed = message.seal()
        copying = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sealed.called
    message.commit_sync()
    with open(message.path, "rb") as f:
        stored = f.read()
    assert stored == (
        b"Return-Path: <x@remote.test>\r\nX-Spam-Score: 0.0\r\nSubject: big\r\n\r\n"
        + line * 8 * 1024
    )
    assert (message.size, message.crc) == (len(stored), zlib.crc32(stored))
    assert copying < 256 * 1024
