"""Maildir files with bare-LF line ends, as other tools write them, are served in CRLF form."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.store.conftest import USER
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store import maildir
from txmailhost.store.index import INDEX_NAME
from txmailhost.store.interfaces import MessageSource
from txmailhost.store.maildir import MaildirStore, folder_directory, user_directory

LF_MESSAGE = (
    b'From: "Carol Tanaka" <carol.tanaka@example.org>\n'
    b"Subject: lf-check\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\n"
    b"\n"
    b"line one\n"
    b"line two\n"
)
CRLF_MESSAGE = LF_MESSAGE.replace(b"\n", b"\r\n")
CRLF_HEADER = CRLF_MESSAGE[: CRLF_MESSAGE.index(b"\r\n\r\n") + 4]


def drop(store: MaildirStore, text: bytes, mailbox: str = "INBOX", name: str = "") -> str:
    """Put a file into ``cur/`` as mutt or Dovecot would; its path."""
    directory = folder_directory(user_directory(store.root, USER), mailbox)
    name = name or f"1764756000.M{len(os.listdir(os.path.join(directory, 'cur')))}P1.other:2,"
    path = os.path.join(directory, "cur", name)
    with open(path, "wb") as f:
        f.write(text)
    return path


def only_message(store: MaildirStore, mailbox: str = "INBOX"):
    box = result(store.open(USER, mailbox))
    (info,) = result(box.snapshot()).messages
    (message,) = result(box.messages([info.uid], True, True))
    return box, info, message


@pytest.mark.parametrize("mailbox", ["INBOX", "Lists/tools"])
def test_lf_file_is_served_in_crlf_form_with_its_crlf_size(store, mailbox):
    if mailbox != "INBOX":
        result(store.create_mailbox(USER, mailbox))
    drop(store, LF_MESSAGE, mailbox)
    box, info, message = only_message(store, mailbox)
    assert info.size == message.size == len(CRLF_MESSAGE)
    assert message.content == CRLF_MESSAGE
    assert message.header == CRLF_HEADER
    with result(box.open_message(info.uid)) as f:
        assert f.read() == CRLF_MESSAGE


def test_lf_file_header_is_cached_in_crlf_form_when_adopted(store):
    drop(store, LF_MESSAGE)
    box = result(store.open(USER, "INBOX"))
    (info,) = result(box.snapshot()).messages
    (message,) = result(box.messages([info.uid], True, False))
    assert message.header == CRLF_HEADER and message.content is None


def test_w_field_of_the_name_gives_the_size_without_reading(store):
    drop(store, LF_MESSAGE, name="1764756000.M9P1.other,S=143,W=999:2,S")
    box = result(store.open(USER, "INBOX"))
    (info,) = result(box.snapshot()).messages
    assert info.size == 999  # the name's word is taken: the file was not read to count


def test_mixed_line_ends_and_lone_cr(store):
    text = b"Subject: mixed\r\nX-A: 1\n\r\nfirst\r\nsecond\nlone\rcr\n"
    drop(store, text)
    box, info, message = only_message(store)
    form = b"Subject: mixed\r\nX-A: 1\r\n\r\nfirst\r\nsecond\r\nlone\rcr\r\n"
    assert message.content == form and info.size == len(form)
    assert message.header == b"Subject: mixed\r\nX-A: 1\r\n\r\n"


def test_crlf_file_dropped_in_is_served_as_it_is(store):
    drop(store, CRLF_MESSAGE)
    box, info, message = only_message(store)
    assert info.size == len(CRLF_MESSAGE) and message.content == CRLF_MESSAGE
    with result(box.open_message(info.uid)) as f:
        assert f.raw.__class__.__name__ == "FileIO"  # the file itself, no conversion


def test_large_lf_file_streams_and_seeks_in_crlf_offsets(store):
    body = b"".join(b"line %07d of a long message\n" % n for n in range(100_000))
    drop(store, b"Subject: big\n\n" + body)
    form = b"Subject: big\r\n\r\n" + body.replace(b"\n", b"\r\n")
    box = result(store.open(USER, "INBOX"))
    (info,) = result(box.snapshot()).messages
    assert info.size == len(form)
    with result(box.open_message(info.uid)) as f:
        for origin in (len(form) - 100, 5, 1_500_001, 3_000_000):
            f.seek(origin)
            assert f.read(65536) == form[origin : origin + 65536]


def test_copy_keeps_the_lf_file_and_its_name_says_both_sizes(store):
    result(store.create_mailbox(USER, "Archive"))
    drop(store, LF_MESSAGE)
    box, info, _message = only_message(store)
    target = result(store.open(USER, "Archive"))
    result(box.copy([info.uid], target))
    _box, copied, message = only_message(store, "Archive")
    assert copied.size == len(CRLF_MESSAGE) and message.content == CRLF_MESSAGE
    directory = folder_directory(user_directory(store.root, USER), "Archive")
    (name,) = os.listdir(os.path.join(directory, "new"))
    assert f",S={len(LF_MESSAGE)},W={len(CRLF_MESSAGE)}" in name
    with open(os.path.join(directory, "new", name), "rb") as f:
        assert f.read() == LF_MESSAGE


def test_append_with_bare_lf_is_served_in_crlf_form(store, tmp_path):
    box = result(store.open(USER, "INBOX"))
    _uidvalidity, uid = result(box.append(MessageSource.from_bytes(LF_MESSAGE)))
    staged = tmp_path / "staged"
    staged.write_bytes(LF_MESSAGE)
    _uidvalidity, second = result(box.append_staged(str(staged)))
    for message in result(box.messages([uid, second], True, True)):
        assert message.size == len(CRLF_MESSAGE) and message.content == CRLF_MESSAGE


def test_an_index_from_before_measures_its_lf_files_again(store, tmp_path):
    """An index written by a version that took an LF file's size on disk and its whole text
    for its header is put right once, when the mailbox is next opened."""
    drop(store, LF_MESSAGE)
    only_message(store)
    directory = user_directory(store.root, USER)
    db = sqlite3.connect(os.path.join(directory, INDEX_NAME))
    with db:
        db.execute("UPDATE messages SET size = ?", (len(LF_MESSAGE),))
        db.execute("UPDATE headers SET header = ?", (LF_MESSAGE,))
        db.execute("DELETE FROM meta WHERE key = 'line_ends'")
    db.close()
    later = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    _box, info, message = only_message(later)
    assert info.size == len(CRLF_MESSAGE) and message.header == CRLF_HEADER


def test_recovery_finds_a_delivery_named_before_names_carried_w(store, tmp_path):
    """A crash-recovered delivery must not be linked twice because its earlier copy was named
    without the ``,W=`` field now added (the upgrade between crash and recovery)."""
    source = tmp_path / "spooled"
    source.write_bytes(CRLF_MESSAGE)
    stem, size = "1790000000.Sf1", len(CRLF_MESSAGE)
    new = os.path.join(user_directory(store.root, USER), "new")
    os.link(source, os.path.join(new, f"{stem}R0.{maildir._HOST},S={size}"))
    store.deliver_named_sync([(str(source), stem, 0.0, [(USER, "INBOX")])], recovering=True)
    assert len(os.listdir(new)) == 1


def test_an_unreadable_file_dropped_in_does_not_stop_the_mailbox_opening(store, monkeypatch):
    drop(store, LF_MESSAGE)

    def unreadable(path, filename):
        raise PermissionError(13, "Permission denied", path)  # root reads anything: pretend

    monkeypatch.setattr(maildir, "_adopt", unreadable)
    box = result(store.open(USER, "INBOX"))
    assert [m.size for m in result(box.snapshot()).messages] == [len(LF_MESSAGE)]
