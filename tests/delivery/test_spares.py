"""Spare spool files (delivery/spares.py) and how an arriving message uses one (delivery/incoming.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.spares import SpareFiles


class InlinePool:
    """``callInThread`` at once, on the test's thread."""

    def callInThread(self, f, *args):
        f(*args)


def test_start_sweeps_all_but_kept_files_and_fills_the_stock(tmp_path):
    directory = tmp_path / "spare"
    directory.mkdir()
    (directory / "junk").write_bytes(b"half a message")
    (directory / "acknowledged").write_bytes(b"keep me")
    spares = SpareFiles(
        str(directory), InlinePool(), low=2, high=5, keep=lambda p: p.endswith("acknowledged")
    )
    spares.start()
    assert len(spares) == 5
    names = sorted(os.listdir(directory))
    assert "junk" not in names and "acknowledged" in names and len(names) == 6
    path = spares.take()
    assert os.path.getsize(path) == 0 and len(spares) == 4


def test_take_refills_below_low_and_retired_names_go_with_the_next_refill(tmp_path):
    spares = SpareFiles(str(tmp_path), InlinePool(), low=3, high=4)
    spares.start()
    taken = [spares.take(), spares.take()]  # 2 left < low: refilled to 4 at once
    assert len(spares) == 4
    for path in taken:
        spares.retire(path)
    assert all(os.path.exists(p) for p in taken)  # no wake-up per retired file
    spares.take()
    spares.take()  # below low again: the refill removes the retired names too
    assert not any(os.path.exists(p) for p in taken)


def test_an_empty_stock_falls_back_to_a_file_of_its_own(tmp_path):
    spool = IncomingSpool(str(tmp_path / "tmp"), SyncReactor(), SyncThreadPool(), None)
    spool.sweep()
    message = spool.open()
    assert not message.spare and message.path.startswith(str(tmp_path / "tmp"))


def test_a_message_writes_into_a_spare_and_gives_back_an_unused_one(tmp_path):
    spares = SpareFiles(str(tmp_path / "spare"), InlinePool(), low=1, high=3)
    spares.start()
    spool = IncomingSpool(str(tmp_path / "tmp"), SyncReactor(), SyncThreadPool(), spares)
    spool.sweep()
    message = spool.open()
    assert message.spare and os.path.dirname(message.path) == str(tmp_path / "spare")
    message.write(b"Subject: x\r\n\r\nbody\r\n")
    message.commit_sync()
    assert Path(message.path).read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    message.discard()  # refused after all: the file is retired, not given out again
    assert message.path not in list(spares._ready)
    unused = spool.open()
    before = len(spares)
    unused.discard()  # never written: back in the stock
    assert len(spares) == before + 1 and os.path.getsize(unused.path) == 0


def test_discarding_a_message_whose_last_flush_fails_is_quiet(tmp_path):
    spool = IncomingSpool(str(tmp_path / "tmp"), SyncReactor(), SyncThreadPool(), None)
    spool.sweep()
    message = spool.open()
    message.write(b"x" * (message.SPILL + 10))  # spilled: a buffered file is open

    class FullDisk:
        closed = False

        def close(self):
            self.closed = True
            raise OSError(28, "No space left on device")

    message._file = FullDisk()
    message.discard()  # no exception: the message is being dropped anyway
    assert message._file.closed
