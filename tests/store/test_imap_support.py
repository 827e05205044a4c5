"""What the store offers IMAP: selection and status from the index, changes since a modseq
(with expunge tombstones), the header cache, copy with UID mapping, rename, subscriptions,
usage, durable append of an unsynced file, and the change bus."""

from __future__ import annotations

import os

import pytest
import twisted.mail.imap4  # noqa: F401 - imap4-utf-7 codec
from zope.interface.verify import verifyObject

from tests.store.conftest import MSG, USER
from tests.support.syncpool import result
from txmailhost.store.interfaces import (
    DELETED,
    SEEN,
    IMailbox,
    IMailStore,
    InvalidMailboxName,
    MailboxExists,
    MessageSource,
    NoSuchMailbox,
)


def deliver(store, source, mailbox="INBOX") -> int:
    return result(store.deliver_file([(USER, mailbox)], source))[(USER, mailbox)]


def test_new_methods_are_part_of_the_interfaces(store):
    assert verifyObject(IMailStore, store)
    assert verifyObject(IMailbox, result(store.open(USER, "INBOX")))


def test_select_reports_uids_unseen_and_claims_recent_once(store, source):
    deliver(store, source)
    deliver(store, source)
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.store_flags([1], [SEEN], "+"))
    first = result(inbox.select(True))
    assert list(first.uids) == [1, 2]
    assert (first.first_unseen, first.unseen, first.first_recent) == (2, 1, 1)
    second = result(inbox.select(True))
    assert second.first_recent == 3  # the first session took \Recent


def test_status_counts_messages_unseen_and_size(store, source):
    deliver(store, source)
    status = result(result(store.open(USER, "INBOX")).status())
    assert (status.messages, status.unseen, status.uidnext, status.size) == (1, 1, 2, len(MSG))


def test_changes_since_reports_new_flagged_and_expunged(store, source):
    deliver(store, source)
    deliver(store, source)
    inbox = result(store.open(USER, "INBOX"))
    start = result(inbox.select(False)).highestmodseq
    result(inbox.store_flags([1], [DELETED], "+"))
    result(inbox.expunge([1]))
    deliver(store, source)
    changes = result(inbox.changes_since(start))
    assert changes.expunged == (1,)
    assert [m.uid for m in changes.changed] == [3]
    assert changes.highestmodseq > start
    assert result(inbox.expunged_since(start)) == [1]
    assert result(inbox.changes_since(changes.highestmodseq)).changed == ()


def test_header_is_cached_at_delivery(store, source):
    deliver(store, source)
    inbox = result(store.open(USER, "INBOX"))
    for name in os.listdir(os.path.join(inbox.directory, "new")):
        os.truncate(os.path.join(inbox.directory, "new", name), 0)  # the file can't answer
    (message,) = result(inbox.messages([1], True, False))
    assert message.header == b"Subject: test\r\nFrom: a@b.test\r\n\r\n"


def test_messages_returns_content_when_asked(store, source):
    deliver(store, source)
    (message,) = result(result(store.open(USER, "INBOX")).messages([1], False, True))
    assert message.content == MSG and message.header is None


def test_copy_maps_uids_and_keeps_flags(store, source):
    deliver(store, source)
    deliver(store, source)
    inbox = result(store.open(USER, "INBOX"))
    trash = result(store.open(USER, "Trash"))
    result(inbox.store_flags([2], [SEEN, "$Work"], "+"))
    assert result(inbox.copy([2, 1], trash)) == [(1, 1), (2, 2)]
    copied = result(trash.messages([1, 2]))
    assert copied[1].flags == frozenset({SEEN, "$Work"})


def test_append_staged_stores_the_file_in_one_trip_and_removes_it(store, tmp_path):
    staging = store.staging_directory(USER)
    path = os.path.join(staging, "upload")
    with open(path, "wb") as f:
        f.write(MSG)
    inbox = result(store.open(USER, "INBOX"))
    uidvalidity, uid = result(inbox.append_staged(path, [SEEN], 1000000000.0))
    assert uid == 1 and uidvalidity == result(inbox.status()).uidvalidity
    assert not os.path.exists(path)  # the staged file is the store's to remove
    (message,) = result(inbox.messages([1]))
    assert message.flags == frozenset({SEEN}) and message.internaldate == 1000000000.0


def test_append_of_bytes_stores_them_in_one_trip_and_leaves_no_staging_file(store):
    inbox = result(store.open(USER, "INBOX"))
    uidvalidity, uid = result(inbox.append(MessageSource.from_bytes(MSG), ["$Work"], 1000000000.0))
    assert uid == 1 and uidvalidity == result(inbox.status()).uidvalidity
    (message,) = result(inbox.messages([1], content=True))
    assert message.content == MSG and message.flags == frozenset({"$Work"})
    assert message.internaldate == 1000000000.0
    staging = store.staging_directory(USER)
    assert [n for n in os.listdir(staging) if n.startswith(".append.")] == []
    assert result(inbox.append(MessageSource.from_bytes(MSG), [], None))[1] == 2


def test_rename_moves_a_mailbox_and_its_children(store, source):
    result(store.create_mailbox(USER, "A"))
    result(store.create_mailbox(USER, "A/B"))
    deliver(store, source, "A/B")
    result(store.rename_mailbox(USER, "A", "Z"))
    names = result(store.list_mailboxes(USER))
    assert "Z" in names and "Z/B" in names and "A" not in names
    assert result(result(store.open(USER, "Z/B")).status()).messages == 1


def test_rename_onto_an_existing_mailbox_fails(store):
    with pytest.raises(MailboxExists):
        result(store.rename_mailbox(USER, "Sent", "Trash"))


def test_rename_of_a_missing_mailbox_fails(store):
    with pytest.raises(NoSuchMailbox):
        result(store.rename_mailbox(USER, "Nope", "Other"))


def test_recreated_mailbox_gets_a_fresh_index(store, source):
    result(store.create_mailbox(USER, "Temp"))
    deliver(store, source, "Temp")
    result(store.rename_mailbox(USER, "Temp", "Kept"))
    result(store.create_mailbox(USER, "Temp"))
    assert result(result(store.open(USER, "Temp")).status()).messages == 0
    assert result(result(store.open(USER, "Kept")).status()).messages == 1


def test_subscriptions_are_kept_in_the_maildir(store):
    result(store.subscribe(USER, "Lists", True))
    assert "Lists" in result(store.subscriptions(USER))
    result(store.subscribe(USER, "Lists", False))
    assert "Lists" not in result(store.subscriptions(USER))
    with pytest.raises(InvalidMailboxName):
        result(store.subscribe(USER, "../x", True))


def test_usage_sums_every_mailbox(store, source):
    deliver(store, source)
    deliver(store, source, "Sent")
    assert result(store.usage(USER)) == 2 * len(MSG)


def test_watchers_hear_of_deliveries_and_flag_changes(store, source):
    inbox = result(store.open(USER, "INBOX"))
    calls = []
    stop = inbox.watch(lambda: calls.append(1))
    deliver(store, source)
    result(inbox.store_flags([1], [SEEN], "+"))
    assert len(calls) == 2
    stop()
    deliver(store, source)
    assert len(calls) == 2


def test_own_delivery_does_not_force_a_rescan(store, source, monkeypatch):
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.select(False))
    deliver(store, source)
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listed.append(p) or real(p))
    assert list(result(inbox.select(False)).uids) == [1]
    assert not [p for p in listed if p.endswith(("new", "cur"))]


def test_file_added_by_another_tool_is_indexed(store, source):
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.select(False))
    with open(os.path.join(inbox.directory, "new", "1.foreign.host"), "wb") as f:
        f.write(MSG)
    os.utime(os.path.join(inbox.directory, "new"), ns=(1, 1))
    assert list(result(inbox.select(False)).uids) == [1]


def test_open_selected_is_open_then_select_in_one_step(store, source):
    deliver(store, source)
    mailbox, selection = result(store.open_selected(USER, "inbox", True))
    assert mailbox.name == "INBOX"
    assert (list(selection.uids), selection.first_recent, selection.unseen) == ([1], 1, 1)
    with pytest.raises(NoSuchMailbox):
        result(store.open_selected(USER, "Nowhere", False))
