"""A full disk (ENOSPC) or file-system quota (EDQUOT) while storing: ``NO [OVERQUOTA]``
(RFC 5530) and a warning, never ``SERVERBUG`` with a traceback, and the session goes on."""

from __future__ import annotations

import os
import tempfile

import pytest
from twisted.logger import LogLevel, capturedLogs

from tests.imap.support import ALICE, Session, make_factory
from txmailhost.imap.server import IN_MEMORY_LITERAL, MAX_BAD_COMMANDS

pytestmark = pytest.mark.backends("maildir")
MESSAGE = b"Subject: full\r\n\r\nno room\r\n"


@pytest.fixture
def alice(world):
    s = Session(make_factory(world))
    s.login()
    yield s
    s.close()


@pytest.fixture
def disk_full(monkeypatch):
    """Files made in the staging directory from now on write to /dev/full: ENOSPC, as a full
    disk answers, from the first flush on."""
    real = tempfile.mkstemp

    def full(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.dup2(os.open("/dev/full", os.O_WRONLY), fd)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", full)


def _errors(events):
    return [e for e in events if e["log_level"] >= LogLevel.error]


def test_append_on_a_full_disk_is_no_overquota_with_a_warning(alice, disk_full):
    with capturedLogs() as events:
        reply = alice.cmd(b"a APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE)
    assert reply == b"a NO [OVERQUOTA] not enough disk space, try again later\r\n"
    assert not _errors(events)
    assert any(e["log_level"] == LogLevel.warn for e in events)
    assert alice.cmd("b NOOP").startswith(b"b OK")


def test_a_large_literal_that_finds_the_disk_full_is_read_and_refused_overquota(
    world, alice, disk_full
):
    """Staged as it arrives (imap/server.py ``_LiteralSink``): the rest of the literal is read
    and dropped, then the command is answered, and the next command is read as one."""
    big = b"Subject: big\r\n\r\n" + b"x" * (IN_MEMORY_LITERAL * 2) + b"\r\n"
    with capturedLogs() as events:
        assert alice.cmd(b"a APPEND INBOX {%d}" % len(big)) == b"+ Ready for literal data\r\n"
        reply = alice.send(big[:100_000]) + alice.send(big[100_000:] + b"\r\n")
    assert reply == b"a NO [OVERQUOTA] not enough disk space, try again later\r\n"
    assert not _errors(events)
    assert not alice.transport.disconnecting
    assert alice.cmd("b SELECT INBOX").endswith(b"b OK [READ-WRITE] SELECT completed\r\n")
    assert os.listdir(world.store.staging_directory(ALICE)) == []


def test_large_literals_finding_the_disk_full_are_not_bad_commands(alice, disk_full):
    """A client saving drafts while the disk is full is not misbehaving: more of these than
    ``MAX_BAD_COMMANDS`` leave the session open, as APPENDs refused for the quota up front do."""
    big = b"Subject: big\r\n\r\n" + b"x" * (IN_MEMORY_LITERAL * 2) + b"\r\n"
    for n in range(MAX_BAD_COMMANDS + 2):
        assert alice.cmd(b"a%d APPEND INBOX {%d}" % (n, len(big))).startswith(b"+ ")
        assert alice.send(big + b"\r\n") == b"a%d NO [OVERQUOTA] not enough disk space, " % n + (
            b"try again later\r\n"
        )
    assert alice.cmd("b NOOP") == b"b OK NOOP completed\r\n"
