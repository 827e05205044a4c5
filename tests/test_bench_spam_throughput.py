"""``bench.spam_throughput``'s two servers really differ: filters on, and filters off.

The bench once gave both the "off" config (a module-level config swapped and restored late),
and reported a cost for filtering that never ran. Not a timing: the configs, and that a
message through the "on" server is scored and one through the "off" server is not.
"""

from __future__ import annotations

import contextlib
import shutil
import smtplib
import time
from pathlib import Path

import pytest

from bench import spam_throughput

pytestmark = pytest.mark.slow


def _delivered(workdir: Path) -> bytes:
    maildir = workdir / "data" / "mail" / "bench.test" / "u1"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [p for sub in ("new", "cur") for p in (maildir / sub).glob("*") if p.is_file()]
        if found:
            return found[0].read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"nothing delivered into {maildir}")


def test_the_on_server_filters_and_the_off_server_does_not(tmp_path: Path):
    with contextlib.ExitStack() as stack:
        servers = {
            on: stack.enter_context(spam_throughput._server(tmp_path / str(on), on))
            for on in (False, True)  # the bench's order: "off" first
        }
        for on, server in servers.items():
            config = (tmp_path / str(on) / "data" / "txmailhost.toml").read_text()
            assert ("chain = []" in config) is not on
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
                client.sendmail(
                    "loadgen@client.test",
                    [spam_throughput.RECIPIENT],
                    b"From: loadgen@client.test\r\nSubject: hello\r\n\r\nhello\r\n",
                )
        for on in (False, True):
            scored = b"X-Spam-Status:" in _delivered(tmp_path / str(on))
            assert scored is on


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_the_instruction_bench_counts_the_load_and_not_the_start(tmp_path: Path):
    """``bench.spam_instructions``: a count of the messages' work, not zero (instrumentation
    never turned on) and not Python's start-up (hundreds of millions of instructions)."""
    from bench import spam_instructions

    per_message = spam_instructions.measure(False, 20, 2, 0, tmp_path / "cache")
    assert 1e6 < per_message < 50e6


def test_corpus_mail_goes_out_dot_stuffed_and_bare_crs_are_left_out():
    """``--corpus`` sends real mail as DATA carries it; a message the server would refuse
    (bare CR) would make the run fail, so it is left out."""
    assert spam_throughput.wire_form(b".a\r\nb\r\n.c\r\n..d") == b"..a\r\nb\r\n..c\r\n...d\r\n"
    assert spam_throughput.wire_form(b"Subject: x\r\n\r\nbare\rCR\r\n") is None


def test_the_load_sends_the_bodies_it_is_given(tmp_path: Path):
    import asyncio

    from bench import smtp_load

    bodies = (b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n..second\r\n")
    with spam_throughput._server(tmp_path, False) as server:
        load = smtp_load.SmtpLoad(
            "127.0.0.1", server.smtp_port, 4, connections=1, recipient=spam_throughput.RECIPIENT,
            bodies=bodies,
        )  # fmt: skip
        result = asyncio.run(smtp_load.run(load))
        assert result.accepted == 4 and not result.failed
        maildir = tmp_path / "data" / "mail" / "bench.test" / "u1"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = [p.read_bytes() for s in ("new", "cur") for p in (maildir / s).glob("*")]
            if len(found) == 4:
                break
            time.sleep(0.1)
        assert sum(b"\r\n.second\r\n" in m for m in found) == 2
        assert sum(b"Subject: one" in m for m in found) == 2
