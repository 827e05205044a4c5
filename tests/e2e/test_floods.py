"""Clients that pipeline commands and never read the replies, against the real server: its
memory must stay flat (the session stops reading; only kernel socket buffers fill), and it
must keep serving everyone else meanwhile."""

from __future__ import annotations

import os
import smtplib
import socket
import time

import pytest

from tests.e2e.conftest import PASSWORD

H = "127.0.0.1"
SECONDS = 3.0
ALLOWED_GROWTH = 16 * 1024 * 1024  # measured without the limit: 27 to 138 MiB in 3 s; with: < 3

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc"),
    pytest.mark.shared_server,  # each flood measures its own growth
]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _flood(port: int, opening: bytes, command: bytes) -> None:
    """Send ``command`` over and over for SECONDS without reading a byte of the replies."""
    s = socket.create_connection((H, port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.recv(4096)  # the greeting
    s.sendall(opening)
    s.setblocking(False)
    chunk = command * 2000
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        try:
            s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)  # the server stopped reading: as it should
    s.close()


@pytest.mark.parametrize(
    "label, opening, command",
    [
        # EHLO, not HELP: a hundred HELPs would end the session ([smtp] max_junk_commands)
        ("smtp", b"EHLO flood.test\r\n", b"EHLO flood.test\r\n"),
        ("pop3", f"USER alice@example.test\r\nPASS {PASSWORD}\r\n".encode(), b"CAPA\r\n"),
        ("imap", f"a LOGIN alice@example.test {PASSWORD}\r\n".encode(), b"c CAPABILITY\r\n"),
    ],
)
def test_unread_replies_do_not_grow_the_server(server, label, opening, command):
    pid = server.process.pid
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as warm:  # settle the baseline
        warm.noop()
    before = _rss(pid)
    _flood(server.ports[label], opening, command)
    grown = _rss(pid) - before
    assert grown < ALLOWED_GROWTH, f"{label}: server grew {grown / 2**20:.0f} MiB"
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as other:  # others still served
        assert other.noop()[0] == 250


def test_a_session_looping_on_noop_is_closed(server):
    """NOOP after NOOP holds a connection while sending no mail: the 101st gets 421."""
    with smtplib.SMTP(H, server.ports["smtp"], timeout=10) as s:
        s.ehlo("loop.test")
        for _ in range(100):
            assert s.noop()[0] == 250
        assert s.noop() == (421, b"4.7.0 too many commands without mail, closing connection")
