"""POP3 LIST, RETR and TOP of a Maildir file with LF line ends another tool put into the INBOX:
sizes and lines of its CRLF form (RFC 1939 §3: lines end in CRLF; LIST counts those octets)."""

from __future__ import annotations

import pytest

from tests.pop3.test_server import ALICE, accounts, world  # noqa: F401 - the fixtures
from txmailhost.store.maildir import user_directory

LF = b"Subject: lf\n\n.dot line\nsecond\n"
CRLF = LF.replace(b"\n", b"\r\n")

pytestmark = pytest.mark.backends("maildir")  # files another tool put into a Maildir


def dropped(world):  # noqa: F811 - the fixture's value
    path = f"{user_directory(world.store.root, ALICE)}/cur/1764756000.M1P1.x:2,"
    with open(path, "wb") as f:
        f.write(LF)
    client = world.connect()
    client.login()
    return client


def test_list_and_stat_report_the_crlf_size_of_an_lf_file(world):  # noqa: F811
    client = dropped(world)
    assert client.cmd("LIST 1") == b"+OK 1 %d\r\n" % len(CRLF)
    assert client.cmd("STAT") == b"+OK 1 %d\r\n" % len(CRLF)


def test_retr_and_top_of_an_lf_file_send_crlf_lines(world):  # noqa: F811
    client = dropped(world)
    assert client.cmd("RETR 1") == (
        b"+OK %d octets\r\nSubject: lf\r\n\r\n..dot line\r\nsecond\r\n.\r\n" % len(CRLF)
    )
    assert client.cmd("TOP 1 1") == (
        b"+OK top of message follows\r\nSubject: lf\r\n\r\n..dot line\r\n.\r\n"
    )


def test_lf_files_read_ahead_are_sent_with_crlf_lines(world):  # noqa: F811
    """Message 2 comes from the read-ahead batch, not from a file opened for its RETR."""
    maildir = user_directory(world.store.root, ALICE)
    for n in (1, 2):
        with open(f"{maildir}/cur/176475600{n}.M1P1.x:2,", "wb") as f:
            f.write(LF)
    client = world.connect()
    client.login()
    expected = b"+OK %d octets\r\nSubject: lf\r\n\r\n..dot line\r\nsecond\r\n.\r\n" % len(CRLF)
    assert client.cmd("RETR 1") == expected
    assert client.cmd("RETR 2") == expected
