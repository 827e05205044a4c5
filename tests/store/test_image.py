"""The shared in-memory image of a mailbox index: it must always answer what the index says,
whoever changed the index (this store, another store object as another process would, a
Maildir tool renaming files) and whatever happened to the mailbox (expunge, delete and
re-create), and stay within its memory budget."""

from __future__ import annotations

import os
from array import array

from tests.store.conftest import USER
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.store.image import ImageCache, MailboxImage, columns_of
from txmailhost.store.index import MailboxIndex
from txmailhost.store.interfaces import DELETED, FLAGGED, SEEN
from txmailhost.store.maildir import MaildirStore, bits_to_flags


def deliver(store, source, n=1, mailbox="INBOX") -> list[int]:
    return [
        result(store.deliver_file([(USER, mailbox)], source))[(USER, mailbox)] for _ in range(n)
    ]


def from_index(inbox) -> dict[int, tuple[frozenset[str], int]]:
    """What the index itself says: uid -> (flags, modseq)."""
    _meta, rows = MailboxIndex(inbox.directory).rows()
    return {r[0]: (bits_to_flags(r[3], r[4]), r[7]) for r in rows}


def from_columns(inbox) -> dict[int, tuple[frozenset[str], int]]:
    snap = MailboxIndex(inbox.directory).rows()[1]
    columns = result(inbox.columns([r[0] for r in snap]))
    return {
        uid: (flags, modseq)
        for uid, flags, modseq in zip(columns.uids, columns.flags, columns.modseqs, strict=True)
    }


def test_columns_follow_deliveries_flags_keywords_and_expunges(store, source):
    inbox = result(store.open(USER, "INBOX"))
    deliver(store, source, 5)
    assert from_columns(inbox) == from_index(inbox)  # loads the image
    deliver(store, source, 2)
    result(inbox.store_flags([2, 4], [SEEN, "$Label1"], "+"))
    result(inbox.store_flags([4], ["$Label1"], "-"))
    result(inbox.store_flags([6], [DELETED], "+"))
    result(inbox.expunge([6, 1]))
    assert from_columns(inbox) == from_index(inbox)
    assert from_columns(inbox)[2][0] == {SEEN, "$Label1"}
    assert sorted(from_columns(inbox)) == [2, 3, 4, 5, 7]


def test_changes_by_another_store_object_are_seen(store, source, tmp_path):
    """A second server or the CLI writes the same index: the image catches up by modseq."""
    inbox = result(store.open(USER, "INBOX"))
    deliver(store, source, 3)
    result(inbox.select(True))
    other = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    other_inbox = result(other.open(USER, "INBOX"))
    result(other_inbox.store_flags([2], [FLAGGED], "+"))
    result(other_inbox.expunge([3]))
    result(other.deliver_file([(USER, "INBOX")], source))
    selection = result(inbox.select(False))
    assert list(selection.uids) == [1, 2, 4]
    assert from_columns(inbox) == from_index(inbox)
    assert from_columns(inbox)[2][0] == {FLAGGED}


def test_files_renamed_by_a_maildir_tool_are_seen(store, source):
    inbox = result(store.open(USER, "INBOX"))
    deliver(store, source, 2)
    assert result(inbox.select(False)).unseen == 2
    new = os.path.join(inbox.directory, "new")
    name = MailboxIndex(inbox.directory).row(1)[1]  # not a sort of the names: M<usec> is unpadded
    os.rename(os.path.join(new, name), os.path.join(inbox.directory, "cur", name + ":2,S"))
    selection = result(inbox.select(False))
    assert (selection.unseen, selection.first_unseen) == (1, 2)


def test_a_recreated_mailbox_is_reloaded_not_patched(store, source):
    result(store.create_mailbox(USER, "Work"))
    deliver(store, source, 3, "Work")
    work = result(store.open(USER, "Work"))
    assert list(result(work.select(False)).uids) == [1, 2, 3]
    result(store.delete_mailbox(USER, "Work"))
    result(store.create_mailbox(USER, "Work"))
    deliver(store, source, 1, "Work")
    again = result(store.open(USER, "Work"))
    assert list(result(again.select(False)).uids) == [1]
    # An image left behind (another process deleted the folder) is reloaded too.
    image = store.images.get(again.directory)
    image.inode = -1
    assert list(result(again.select(False)).uids) == [1]


def test_select_counts_unseen_and_keywords(store, source):
    inbox = result(store.open(USER, "INBOX"))
    deliver(store, source, 4)
    result(inbox.store_flags([1, 2], [SEEN], "+"))
    result(inbox.store_flags([3], ["Work", "$Important"], "+"))
    selection = result(inbox.select(False))
    assert (selection.first_unseen, selection.unseen) == (3, 2)
    assert selection.keywords == {"Work", "$Important"}


def test_positions_of_a_sparse_request(tmp_path):
    image = MailboxImage()
    image._load([(uid, 8 if uid % 2 else 0, "", 0.0, 10, uid) for uid in range(1, 101)])
    assert image.positions(array("I", range(10, 20))) == slice(9, 19)
    assert image.positions(array("I", [3, 50, 101, 200])) == [2, 49]
    found, flags, sizes, _dates, modseqs = columns_of(image, array("I", [3, 4, 999]), bits_to_flags)
    assert list(found) == [3, 4] and flags == [{SEEN}, frozenset()]
    assert list(sizes) == [10, 10] and list(modseqs) == [3, 4]


def test_cache_keeps_within_its_budget_but_never_evicts_the_last_image():
    cache = ImageCache(budget=150)
    first = cache.get("/a")
    first._load([(uid, 0, "", 0.0, 1, 1) for uid in range(1, 101)])
    second = cache.get("/b")
    second._load([(uid, 0, "", 0.0, 1, 1) for uid in range(1, 101)])
    cache.get("/b")  # 200 messages > 150: the least recently used image goes
    assert cache.get("/a") is not first
    big = cache.get("/c")
    big._load([(uid, 0, "", 0.0, 1, 1) for uid in range(1, 1001)])
    assert cache.get("/c") is big


def test_a_lookup_among_thousands_of_images_counts_only_the_recent_ones(monkeypatch):
    from txmailhost.store import image as image_module

    cache = ImageCache(budget=10**9)
    for n in range(5000):
        cache.get(f"/user{n}/INBOX")._load([(1, 0, "", 0.0, 1, 1)])
    counted: list[int] = []
    real_len = MailboxImage.__len__
    monkeypatch.setattr(MailboxImage, "__len__", lambda self: counted.append(1) or real_len(self))
    cache.get("/user7/INBOX")
    assert 0 < len(counted) <= image_module.RECOUNT + 1  # not the 5,000 a sum would count
    monkeypatch.undo()
    assert cache._total == sum(len(i) for i in cache._images.values()) == 5000


def test_the_kept_total_follows_growth_eviction_and_forget():
    cache = ImageCache(budget=250)
    for name in ("/a", "/b", "/c"):
        cache.get(name)._load([(uid, 0, "", 0.0, 1, 1) for uid in range(1, 101)])
    cache.get("/c")  # 300 > 250: /a, the least recently used, goes
    assert sorted(cache._images) == ["/b", "/c"] and cache._total == 200
    cache.forget("/b")
    assert cache._total == 100
