"""IMAP extensions on the real server (twistd txmailhost) with raw sockets and imaplib, fed
what a hostile or careless client sends: APPEND dates that leave years 0001-9999 once moved
to UTC, NOTIFY (RFC 5465) on another user's mailbox after its owner takes the right to read
it away, and a COMPRESS (RFC 4978) flood of pipelined commands."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import time
import zlib

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE, BOB = "alice@example.test", "bob@example.test"
MSG = b"From: bob@example.test\r\nSubject: shared\r\n\r\nfor the team\r\n"


class Wire:
    """One IMAP connection spoken byte by byte: what was sent, and every line back."""

    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection((H, port), timeout=10)
        self.buffer = b""
        self.line()  # greeting
        assert self.command(b"l LOGIN %s %s" % (user.encode(), PASSWORD.encode()))[-1].startswith(
            b"l OK"
        )

    def line(self, timeout: float = 10) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def command(self, line: bytes) -> list[bytes]:
        tag = line.split(b" ", 1)[0] + b" "
        self.sock.sendall(line + b"\r\n")
        lines = [self.line()]
        while not lines[-1].startswith(tag):
            lines.append(self.line())
        return lines

    def unsolicited(self, wait: float) -> list[bytes]:
        """The lines the server pushes within ``wait`` seconds while no command runs."""
        lines, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                lines.append(self.line(timeout=left))
            except TimeoutError:
                break
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def append(imap: imaplib.IMAP4, mailbox: str) -> None:
    typ, data = imap.append(mailbox, None, None, MSG)
    assert typ == "OK", data


@pytest.mark.shared_server
@pytest.mark.parametrize("date", ["31-Dec-9999 23:59:59 -2359", "01-Jan-0001 00:00:00 +0001"])
def test_append_with_a_date_past_year_9999_or_before_year_1_in_utc_is_bad(server, date):
    """Stored, it came back as INTERNALDATE "01-Jan-10000 23:58:59 +0000" (or year 0000),
    which no client's date-time parser takes; it is refused, and nothing is stored."""
    imap = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    imap.login(ALICE, PASSWORD)
    imap.create("Dated")
    before = imap.status("Dated", "(MESSAGES UIDNEXT)")[1][0]
    with pytest.raises(imaplib.IMAP4.error, match="date-time out of range"):
        imap.append("Dated", None, f'"{date}"', MSG)
    assert imap.status("Dated", "(MESSAGES UIDNEXT)")[1][0] == before
    # the last second that has a date-time in +0000 is kept, and read back by imaplib
    typ, data = imap.append("Dated", None, '"31-Dec-9999 23:59:59 +0000"', MSG)
    assert typ == "OK", data
    imap.select("Dated")
    typ, data = imap.fetch("*", "(INTERNALDATE)")
    assert typ == "OK" and b'INTERNALDATE "31-Dec-9999 23:59:59 +0000"' in data[-1]
    assert imaplib.Internaldate2tuple(data[-1]).tm_year == 9999
    imap.logout()


def test_notify_stops_telling_of_another_users_mailbox_once_its_read_right_is_taken(server):
    """alice watches bob's shared mailbox with NOTIFY; bob takes her rights away (DELETEACL). New mail
    there must no longer reach her as STATUS lines (it did: the rights were read only at
    NOTIFY SET), while her own mailboxes are still told."""
    bob = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    bob.login(BOB, PASSWORD)
    assert bob.create("Team")[0] == "OK"
    assert bob.setacl("Team", ALICE, "lr")[0] == "OK"
    shared = b'"Other Users/bob@example.test/Team"'

    alice = Wire(listening_port(server, "imap"), ALICE)
    reply = alice.command(
        b"n NOTIFY SET STATUS (subtree (INBOX " + shared + b") (MessageNew MessageExpunge))"
    )
    assert reply[-1] == b"n OK NOTIFY completed"
    assert any(line.startswith(b"* STATUS " + shared) for line in reply)

    append(bob, "Team")  # still hers to read: told
    told = alice.unsolicited(3)
    assert told and told[0].startswith(b"* STATUS " + shared + b" (MESSAGES 1 UIDNEXT 2"), told

    assert bob.deleteacl("Team", ALICE)[0] == "OK"
    append(bob, "Team")
    append(bob, "Team")
    deliverer = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    deliverer.login(ALICE, PASSWORD)
    append(deliverer, "INBOX")  # a mailbox she still may read, to know the pushes still flow
    told = alice.unsolicited(3)
    assert any(line.startswith(b'* STATUS "INBOX"') for line in told), told
    assert not any(shared in line for line in told), told
    # and the session goes on as before
    assert alice.command(b"z NOOP")[-1] == b"z OK NOOP completed"
    alice.close()
    deliverer.logout()
    bob.logout()


def test_a_compressed_flood_of_noops_leaves_other_sessions_answered_at_once(server):
    """1.2 KB of deflate is 100,000 pipelined NOOPs. The server ran every command it had
    inflated (256 KiB, 32,000 of them) before serving anyone else: another session's NOOP
    waited ~3 s a time while the flood went on. Now it waits a few commands' turn."""
    port = listening_port(server, "imap")
    other = Wire(port, ALICE)
    flooder = Wire(port, ALICE)
    assert flooder.command(b"z COMPRESS DEFLATE")[-1] == b"z OK DEFLATE active"
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = deflater.compress(b"n NOOP\r\n" * 100_000) + deflater.flush(zlib.Z_SYNC_FLUSH)
    flooder.sock.setblocking(False)
    waits = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        try:
            flooder.sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)  # the server reads no faster than it answers
        if time.monotonic() > deadline - 4:  # the flood is on: time the other session
            start = time.monotonic()
            assert other.command(b"o NOOP")[-1] == b"o OK NOOP completed"
            waits.append(time.monotonic() - start)
    flooder.close()
    assert len(waits) > 3 and max(waits) < 1.0, waits
    other.close()
