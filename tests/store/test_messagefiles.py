"""Only regular files are messages (store/messagefiles.py): a symbolic link, a directory or a
FIFO in a Maildir is neither indexed nor read, however it got there, and the rest of the
mailbox is served as usual."""

from __future__ import annotations

import os
import threading

import pytest

from tests.store.conftest import MSG, USER
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import messagefiles
from txmailhost.store.interfaces import MessageSource, NoSuchMessage
from txmailhost.store.maildir import MaildirStore, user_directory
from txmailhost.store.messagefiles import NotAMessageFile, open_message_file, read_message_file

SECRET = b"root:$6$not-for-alice\n"


@pytest.fixture
def outside(tmp_path):
    """A file outside every Maildir, that no user may read through the server."""
    path = tmp_path / "shadow"
    path.write_bytes(SECRET)
    return str(path)


def test_open_message_file_reads_only_regular_files(tmp_path, outside):
    link, directory, fifo = tmp_path / "link", tmp_path / "dir", tmp_path / "fifo"
    os.symlink(outside, link)
    directory.mkdir()
    os.mkfifo(fifo)  # opened without waiting for a writer, then refused
    for path in (link, directory, fifo):
        with pytest.raises(NotAMessageFile):
            open_message_file(str(path))
    with open_message_file(outside) as f:
        assert f.read() == SECRET
    with pytest.raises(NotAMessageFile):
        MessageSource.from_path(str(link)).read()  # migrate dovecot, import


def test_read_message_file_reads_only_regular_files(tmp_path, outside):
    link, directory, fifo = tmp_path / "link", tmp_path / "dir", tmp_path / "fifo"
    os.symlink(outside, link)
    directory.mkdir()
    os.mkfifo(fifo)
    for path in (link, directory, fifo):
        with pytest.raises(NotAMessageFile):
            read_message_file(str(path))
    assert read_message_file(outside) == SECRET
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_message_file(str(empty)) == b""
    with pytest.raises(FileNotFoundError):
        read_message_file(str(tmp_path / "gone"))


def test_read_message_file_is_one_read_of_the_whole_file(tmp_path, monkeypatch):
    """POP3 reads ahead each small message of a download with it: one read, no read to find
    the end (``open(...).read()`` made ten system calls a file, this makes four)."""
    path = tmp_path / "msg"
    path.write_bytes(MSG)
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(messagefiles.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    assert read_message_file(str(path)) == MSG
    assert reads == [len(MSG) + 1]


def test_read_message_file_reads_a_file_that_grew_since_its_fstat_to_the_end(tmp_path, monkeypatch):
    path = tmp_path / "msg"
    path.write_bytes(MSG * 10_000)
    real_fstat = os.fstat
    monkeypatch.setattr(
        messagefiles.os,
        "fstat",
        lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])),
    )
    assert read_message_file(str(path)) == MSG * 10_000


def _delivered(store, source, count=2) -> str:
    for _ in range(count):
        result(store.deliver_file([(USER, "INBOX")], source))
    return user_directory(store.root, USER)


def _contents(store) -> list[bytes]:
    inbox = result(store.open(USER, "INBOX"))
    uids = list(result(inbox.select(False)).uids)
    return [m.content for m in result(inbox.messages(uids, content=True))]


def test_a_link_dropped_into_new_is_not_indexed_nor_served(store, source, outside, logged):
    inbox = _delivered(store, source)
    os.symlink(outside, os.path.join(inbox, "new", "789.link.host"))
    os.symlink(outside, os.path.join(inbox, "cur", "790.link.host:2,S"))

    assert _contents(store) == [MSG, MSG]
    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    assert _contents(restarted) == [MSG, MSG]
    skipped = [e for e in logged if str(e.get("path", "")).endswith(".link.host")]
    assert len(skipped) == 2  # once per entry, not once per scan
    assert skipped[0]["mailbox"] == f"{USER} INBOX"


def test_a_directory_in_cur_is_no_message_and_the_others_are_served(store, source):
    inbox = _delivered(store, source)
    os.mkdir(os.path.join(inbox, "cur", "456.adir.host:2,"))

    mailbox = result(store.open(USER, "INBOX"))
    selection = result(mailbox.select(False))
    assert list(selection.uids) == [1, 2]
    assert [m.size for m in result(mailbox.messages([1, 2]))] == [len(MSG), len(MSG)]
    assert _contents(store) == [MSG, MSG]


def test_a_fifo_in_new_neither_blocks_the_store_nor_is_indexed(store, source):
    inbox = _delivered(store, source)
    fifo = os.path.join(inbox, "new", "457.fifo.host")
    os.mkfifo(fifo)
    found: list = []
    scan = threading.Thread(target=lambda: found.append(_contents(store)), daemon=True)
    scan.start()
    scan.join(10)
    if scan.is_alive():  # blocked opening the FIFO for a writer: give it one, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert found == [[MSG, MSG]]


def test_a_file_swapped_for_a_link_after_indexing_is_not_read(store, source, outside):
    inbox = _delivered(store, source, count=1)
    mailbox = result(store.open(USER, "INBOX"))
    result(mailbox.select(False))
    (name,) = os.listdir(os.path.join(inbox, "new"))
    os.unlink(os.path.join(inbox, "new", name))
    os.symlink(outside, os.path.join(inbox, "new", name))

    # no reconcile in between: the index still names the file
    assert result(mailbox.messages([1], header=True, content=True)) == []
    with pytest.raises(NoSuchMessage):
        result(mailbox.open_message(1))
    # and the next reconcile takes it out of the index
    assert list(result(result(store.open(USER, "INBOX")).select(False)).uids) == []
