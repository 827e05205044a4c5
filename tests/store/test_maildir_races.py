"""Another worker's reconcile against our own adding of a message, and MOVE by rename.

A reconcile (run by STATUS, SELECT, the quota's usage) indexes files it finds without a row
as another tool's: no keywords, the file's mtime as INTERNALDATE, a new EMAILID. So a file
we add must never be seen between its link and its row. These tests run a reconcile, as a
second worker would (a store of its own on the same directory, in another thread), at that
very moment: right after the link (or rename) of APPEND, COPY, MOVE and the spool's delivery.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.store.conftest import MSG, USER
from tests.support.syncpool import result
from txmailhost import _safeio
from txmailhost.store.index import INDEX_NAME
from txmailhost.store.interfaces import MessageSource
from txmailhost.store.maildir import MaildirStore, folder_directory, user_directory

DATE = 1_577_872_800.0  # 2020-01-01 10:00 UTC: what the client said, not the file's mtime
FLAGS = {"\\Seen", "$label"}


class RivalReconcile:
    """Right after each of our links into ``directory``: a reconcile of it by another
    worker's store, in a thread; and whether that worker could have written the index."""

    def __init__(self, root: str, directory: str) -> None:
        self.rival = MaildirStore(root)  # no pool: works inline, in its thread
        self.directory = directory
        self.threads: list[threading.Thread] = []
        self.index_writable: list[bool] = []

    def after_link(self, target: str) -> None:
        if not target.startswith(self.directory + os.sep):
            return
        self.index_writable.append(_writable(os.path.join(self.directory, INDEX_NAME)))
        thread = threading.Thread(target=self.rival._reconcile, args=(self.directory,))
        thread.start()
        # Long enough for an unhindered reconcile (milliseconds); with the lock held it waits
        # for our row, and we go on without it.
        thread.join(0.5)
        self.threads.append(thread)

    def finish(self) -> None:
        for thread in self.threads:
            thread.join()


def _writable(path: str) -> bool:
    """Could another process start a write transaction on the index now?"""
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


@pytest.fixture
def rival(store, monkeypatch) -> Iterator[RivalReconcile]:
    """Every link, hard link and rename into Work is followed by a rival reconcile of it."""
    result(store.create_mailbox(USER, "Work"))
    work = folder_directory(user_directory(store.root, USER), "Work")
    store._reconcile(work)
    watcher = RivalReconcile(store.root, work)

    def watched(real: Callable[[str, str], None]) -> Callable[[str, str], None]:
        def call(source: str, target: str) -> None:
            real(source, target)
            watcher.after_link(target)

        return call

    monkeypatch.setattr(_safeio, "link_durably", watched(_safeio.link_durably))
    monkeypatch.setattr(os, "link", watched(os.link))
    monkeypatch.setattr(os, "rename", watched(os.rename))
    yield watcher
    watcher.finish()


def _in_inbox(store: MaildirStore) -> int:
    inbox = result(store.open(USER, "INBOX"))
    _validity, uid = result(inbox.append(MessageSource.from_bytes(MSG), sorted(FLAGS), DATE))
    return uid


def _assert_kept(store: MaildirStore, uid: int, rival: RivalReconcile) -> None:
    rival.finish()
    work = result(store.open(USER, "Work"))
    (info,) = result(work.snapshot()).messages
    assert info.uid == uid
    assert info.flags == FLAGS and info.internaldate == DATE
    assert rival.index_writable and not any(rival.index_writable)


def test_append_keeps_its_flags_and_date_when_another_worker_reconciles(store, rival):
    work = result(store.open(USER, "Work"))
    _validity, uid = result(work.append(MessageSource.from_bytes(MSG), sorted(FLAGS), DATE))
    _assert_kept(store, uid, rival)


def test_append_many_keeps_flags_and_dates_when_another_worker_reconciles(store, rival):
    work = result(store.open(USER, "Work"))
    items = [(MessageSource.from_bytes(MSG), sorted(FLAGS), DATE)] * 2
    _validity, uids = result(work.append_many(items))
    rival.finish()
    infos = result(work.snapshot()).messages
    assert [i.uid for i in infos] == uids
    assert all(i.flags == FLAGS and i.internaldate == DATE for i in infos)


@pytest.mark.parametrize("operation", ["copy", "move"])
def test_copy_and_move_keep_flags_date_and_emailid_when_another_worker_reconciles(
    store, rival, operation
):
    source_uid = _in_inbox(store)
    inbox = result(store.open(USER, "INBOX"))
    (emailid,) = (o.emailid for o in result(inbox.origins([source_uid])).values())
    work = result(store.open(USER, "Work"))
    ((_source, uid),) = result(getattr(inbox, operation)([source_uid], work))
    _assert_kept(store, uid, rival)
    assert result(work.origins([uid]))[uid].emailid == emailid


def test_spool_delivery_keeps_flags_date_and_emailid_when_another_worker_reconciles(
    store, source, rival
):
    entry = (source, "1790000000.Qstem", DATE, [(USER, "Work")], {(USER, "Work"): FLAGS})
    store.deliver_named_sync([entry])
    store.deliver_named_sync([entry], recovering=True)  # and a recovery finds it again
    _assert_kept(store, 1, rival)
    inbox_copy = (source, "1790000000.Qstem", DATE, [(USER, "INBOX")])
    store.deliver_named_sync([inbox_copy], recovering=True)
    work, inbox = result(store.open(USER, "Work")), result(store.open(USER, "INBOX"))
    assert result(work.origins([1]))[1].emailid == result(inbox.origins([1]))[1].emailid


def _files(directory: str) -> list[str]:
    return [n for sub in ("cur", "new") for n in os.listdir(os.path.join(directory, sub))]


def test_move_renames_each_file_so_it_is_never_in_both_mailboxes(store, monkeypatch):
    """RFC 6851 §3.3: at every rename, and so after a crash at any point, each message is in
    one directory; the source's rows go once the target has indexed them."""
    result(store.create_mailbox(USER, "Work"))
    user_dir = user_directory(store.root, USER)
    work_dir = folder_directory(user_dir, "Work")
    uids = [_in_inbox(store) for _ in range(3)]
    seen: list[tuple[int, int]] = []
    real_rename = os.rename

    def counting(source: str, target: str) -> None:
        real_rename(source, target)
        seen.append((len(_files(user_dir)), len(_files(work_dir))))

    monkeypatch.setattr(os, "rename", counting)
    inbox, work = result(store.open(USER, "INBOX")), result(store.open(USER, "Work"))
    pairs = result(inbox.move(uids, work))
    assert seen == [(2, 1), (1, 2), (0, 3)]
    assert [s for s, _d in pairs] == uids
    assert result(inbox.snapshot()).messages == ()
    assert [m.uid for m in result(work.snapshot()).messages] == [d for _s, d in pairs]
    assert result(inbox.expunged_since(0)) == uids


def test_a_crash_after_the_renames_of_a_move_leaves_each_message_in_one_mailbox(store, monkeypatch):
    """Killed before either index knew: reconcile finds each file where it went."""
    assert _counts_after_a_move_killed_before_indexing(store, monkeypatch) == [0, 3]


def _counts_after_a_move_killed_before_indexing(
    store: MaildirStore, monkeypatch: pytest.MonkeyPatch, copies: bool = False
) -> list[int]:
    """Three messages moved from INBOX to Work (``copies``: across file systems), the
    process killed as the target indexes them; what a new process finds in (INBOX, Work)."""
    result(store.create_mailbox(USER, "Work"))
    uids = [_in_inbox(store) for _ in range(3)]
    inbox, work = result(store.open(USER, "INBOX")), result(store.open(USER, "Work"))
    if copies:
        _across_file_systems(monkeypatch, times=3)

    def killed(*_args: object, **_kwargs: object) -> list[int]:
        raise SystemExit("killed")

    monkeypatch.setattr(type(work._index), "add", killed)
    with pytest.raises(SystemExit):
        inbox._move(uids, work)
    monkeypatch.undo()
    restarted = MaildirStore(store.root)  # a new process: nothing known about the mtimes
    counts = [result(restarted.open(USER, name)).status() for name in ("INBOX", "Work")]
    return [result(c).messages for c in counts]


def _across_file_systems(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """The next ``times`` renames of a message file fail as between two file systems
    (EXDEV: a folder that is a mount point, or a symlink to another disk); the order of
    the directory fsyncs and the unlinks from then on, as ``fsync DIR`` / ``unlink PATH``."""
    real_rename, real_unlink, real_fsync_dir = os.rename, os.unlink, _safeio.fsync_dir
    left = [times]
    done: list[str] = []

    def rename(source: str, target: str) -> None:
        if left[0] and not os.path.basename(source).startswith("."):  # not a copy's temp
            left[0] -= 1
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), source, None, target)
        real_rename(source, target)

    def unlink(path: str) -> None:
        real_unlink(path)
        done.append(f"unlink {path}")

    def fsync_dir(path: str) -> None:
        real_fsync_dir(path)
        done.append(f"fsync {path}")

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(_safeio, "fsync_dir", fsync_dir)
    return done


def test_a_move_across_file_systems_copies_and_removes_the_original_once_the_copy_is_durable(
    store, monkeypatch
):
    """The first message is copied (EXDEV), the second renamed: both arrive with their flags,
    date and EMAILID, leave INBOX, and the copied one's original goes only after the
    target's directories were fsync'd."""
    result(store.create_mailbox(USER, "Work"))
    user_dir = user_directory(store.root, USER)
    work_dir = folder_directory(user_dir, "Work")
    uids = [_in_inbox(store) for _ in range(2)]
    inbox, work = result(store.open(USER, "INBOX")), result(store.open(USER, "Work"))
    emailids = [o.emailid for o in result(inbox.origins(uids)).values()]
    originals = {f"unlink {user_dir}/cur/{name}" for name in _files(user_dir)}
    done = _across_file_systems(monkeypatch, times=1)

    pairs = result(inbox.move(uids, work))

    assert [s for s, _d in pairs] == uids
    assert result(inbox.snapshot()).messages == () and _files(user_dir) == []
    infos = result(work.snapshot()).messages
    assert [i.uid for i in infos] == [d for _s, d in pairs]
    assert all(i.flags == FLAGS and i.internaldate == DATE for i in infos)
    assert [o.emailid for o in result(work.origins([i.uid for i in infos])).values()] == emailids
    assert len(_files(work_dir)) == 2  # and no copy's temporary file left behind
    assert sorted(os.listdir(os.path.join(work_dir, "cur"))) == sorted(_files(work_dir))
    (removed,) = (i for i, step in enumerate(done) if step.startswith("unlink "))
    assert done[removed] in originals  # the copied one's original, once
    synced = [done.index(f"fsync {work_dir}/{sub}") for sub in ("cur", "new")]
    assert max(synced) < removed < done.index(f"fsync {user_dir}/cur")


def test_a_full_disk_part_way_through_a_move_across_file_systems_leaves_each_message_once(
    store, monkeypatch
):
    """The second copy finds the disk full: the first copy is removed again, both messages
    stay in INBOX only (reconciled afresh, as after a restart), and MOVE fails with ENOSPC."""
    result(store.create_mailbox(USER, "Work"))
    work_dir = folder_directory(user_directory(store.root, USER), "Work")
    uids = [_in_inbox(store) for _ in range(2)]
    inbox, work = result(store.open(USER, "INBOX")), result(store.open(USER, "Work"))
    _across_file_systems(monkeypatch, times=2)
    real_fsync, fsyncs = _safeio.fsync, []

    def full(fd: int) -> None:
        fsyncs.append(fd)
        if len(fsyncs) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(_safeio, "fsync", full)
    with pytest.raises(OSError) as raised:
        result(inbox.move(uids, work))
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert [os.listdir(os.path.join(work_dir, sub)) for sub in ("cur", "new")] == [[], []]
    restarted = MaildirStore(store.root)
    counts = [result(restarted.open(USER, name)).status() for name in ("INBOX", "Work")]
    assert [result(c).messages for c in counts] == [2, 0]
    assert [
        i.uid for i in result(result(restarted.open(USER, "INBOX")).snapshot()).messages
    ] == uids


def test_a_crash_after_the_copies_of_a_move_across_file_systems_leaves_each_message_once(
    store, monkeypatch
):
    """Killed before either index knew, as for renames: the originals were removed once the
    copies were durable, and reconcile finds each message in the target only."""
    assert _counts_after_a_move_killed_before_indexing(store, monkeypatch, copies=True) == [0, 3]


def test_a_move_across_file_systems_removes_an_original_another_session_renamed_meanwhile(
    store, monkeypatch
):
    """A STORE (or another Maildir tool) renames the original between its copy and its
    removal: it is found by name and removed all the same, not left in INBOX too."""
    result(store.create_mailbox(USER, "Work"))
    user_dir = user_directory(store.root, USER)
    uid = _in_inbox(store)
    inbox, work = result(store.open(USER, "INBOX")), result(store.open(USER, "Work"))
    _across_file_systems(monkeypatch, times=1)
    real_copy = _safeio._copy_durably

    def copy_then_flag(source: str, target: str) -> None:
        real_copy(source, target)
        os.link(source, source + "F")  # as a rename to new flags, without os.rename
        os.unlink(source)

    monkeypatch.setattr(_safeio, "_copy_durably", copy_then_flag)
    assert [s for s, _d in result(inbox.move([uid], work))] == [uid]
    assert _files(user_dir) == []
    assert len(_files(folder_directory(user_dir, "Work"))) == 1
