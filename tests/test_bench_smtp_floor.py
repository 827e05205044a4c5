"""``bench.floor_server`` and ``bench.smtp_floor`` keep working (so the floor figure can be rerun).

Not timings: that the floor server speaks enough SMTP for smtplib and for the load generator
(lock-step and pipelined), keeps each message in a file of its own before its ``250`` whichever
the durability, and that the measurement runs end to end and reports every server it ran.
"""

from __future__ import annotations

import asyncio
import datetime
import smtplib
from pathlib import Path

import pytest

from bench import floor_server, smtp_floor, smtp_load

pytestmark = pytest.mark.slow

MESSAGE = b"From: a@client.test\r\nSubject: floor\r\n\r\n.a leading dot\r\nhello\r\n"
# The floor parses nothing: it keeps the message as it came over the wire, dot-stuffed.
STORED = MESSAGE.replace(b"\n.a", b"\n..a")


def _stored(workdir: Path) -> list[bytes]:
    """Every non-empty file the floor wrote (spare files not yet used are empty)."""
    return [p.read_bytes() for p in sorted(workdir.glob("spool*/*")) if p.stat().st_size]


@pytest.mark.parametrize("durability", floor_server.DURABILITY)
def test_floor_server_stores_each_message_smtplib_sends_before_250(tmp_path: Path, durability: str):
    with smtp_floor.floor(tmp_path, durability) as server:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
            assert client.ehlo()[0] == 250
            assert client.has_extn("pipelining")
            for n in range(3):
                client.sendmail("a@client.test", ["b@bench.test"], MESSAGE + b"%d\r\n" % n)
            assert client.rset()[0] == 250
            assert client.noop()[0] == 250
            assert client.docmd("VRFY", "b")[0] == 500
        # The 250 came after the write: the files are there once sendmail returned.
        assert sorted(_stored(tmp_path)) == [STORED + b"%d\r\n" % n for n in range(3)]


def test_floor_server_takes_the_load_generator_pipelined_from_two_processes(tmp_path: Path):
    with smtp_floor.floor(tmp_path, "spare", processes=2) as server:
        assert len(server.pids()) == 2
        load = smtp_load.SmtpLoad(
            "127.0.0.1", server.smtp_port or 0, 30, 4096, 3, 7, pipelining=True
        )
        result = asyncio.run(smtp_load.run(load))
    assert (result.accepted, result.failed) == (30, 0), result.summary()
    assert len(_stored(tmp_path)) == 30


def test_a_small_floor_run_reports_every_server_at_every_connection_count(tmp_path: Path):
    contenders = [c for c in smtp_floor.CONTENDERS if c.name in ("floor", "floor nofsync")]
    figures = smtp_floor.run_all(contenders, [1, 2], 20, 2, tmp_path, fsync_seconds=0.05)
    assert not figures.problems
    for contender in contenders:
        for connections in (1, 2):
            runs = figures.runs[contender.name, connections]
            assert len(runs) == 2
            assert all(run.rate > 0 and run.failed == 0 for run in runs)
    started = datetime.datetime.now(datetime.UTC)
    page = smtp_floor.report(figures, contenders, [1, 2], "test", 20, 2, started)
    for title in ("1 connection\n~~~", "2 connections\n~~~"):
        assert title in page
    assert page.count("floor nofsync ") == 2  # one row per table
