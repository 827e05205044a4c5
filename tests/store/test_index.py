"""A damaged, replaced or vanished mailbox index (store/index.py): the file is set aside and
the index made anew from the message files, without losing or duplicating mail, whichever
thread or worker process meets the damage first, and no session acts on UIDs of the old one."""

from __future__ import annotations

import glob
import multiprocessing
import os
import sqlite3

import pytest

from tests.store.conftest import USER, fill_up
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost._safeio import out_of_space
from txmailhost.store import index as _index
from txmailhost.store.index import INDEX_NAME
from txmailhost.store.interfaces import SEEN, NoSuchMailbox, StoreError
from txmailhost.store.maildir import MaildirStore, folder_directory, user_directory


def inbox_directory(store: MaildirStore) -> str:
    return user_directory(store.root, USER)


def deliver(store: MaildirStore, source: str, count: int) -> None:
    for _ in range(count):
        result(store.deliver_file([(USER, "INBOX")], source))


def message_files(directory: str) -> list[str]:
    return sorted(
        name for sub in ("new", "cur") for name in os.listdir(os.path.join(directory, sub))
    )


def set_aside(directory: str) -> list[str]:
    """The indexes set aside in ``directory``, without the ``-wal`` and ``-shm`` that go with
    them: SQLite makes those when a connection opened the damaged file before it was set aside,
    which a loaded machine's timing decides."""
    names = glob.glob(os.path.join(directory, INDEX_NAME + ".broken-*"))
    return sorted(name for name in names if not name.endswith(("-wal", "-shm")))


def damage(directory: str, how: str) -> None:
    """Damage the index of ``directory`` as the audit did, with no connection left open."""
    _index.forget(directory)
    path = os.path.join(directory, INDEX_NAME)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    if how == "truncated":
        os.truncate(path, 100)
    elif how == "random":
        with open(path, "wb") as f:
            f.write(os.urandom(8192))
    else:
        os.unlink(path)
        os.mkdir(path)


@pytest.mark.parametrize("how", ["truncated", "random", "directory"])
def test_a_damaged_index_is_set_aside_and_made_anew_from_the_files(store, source, logged, how):
    deliver(store, source, 3)
    inbox = result(store.open(USER, "INBOX"))
    before = result(inbox.select(False))
    result(inbox.store_flags([2], [SEEN, "$label"], "+"))
    directory = inbox_directory(store)
    files = message_files(directory)
    damage(directory, how)

    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    inbox = result(restarted.open(USER, "INBOX"))
    selection = result(inbox.select(False))

    assert list(selection.uids) == [1, 2, 3]
    assert selection.uidvalidity != before.uidvalidity
    # flags from the file names; keywords lived in the index only
    flags = [m.flags for m in result(inbox.messages([1, 2, 3]))]
    assert flags == [frozenset(), frozenset({SEEN}), frozenset()]
    assert message_files(directory) == files
    (aside,) = set_aside(directory)
    assert os.path.isdir(aside) if how == "directory" else os.path.getsize(aside) > 0
    warnings = [e for e in logged if e.get("aside") == aside]
    assert len(warnings) == 1
    assert warnings[0]["mailbox"] == f"{USER} INBOX"
    assert warnings[0]["path"] == os.path.join(directory, INDEX_NAME)


def test_a_delivery_meeting_a_damaged_index_is_kept_after_the_old_mail(store, source):
    deliver(store, source, 2)
    directory = inbox_directory(store)
    damage(directory, "truncated")

    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    batch = [(source, "1700000000.M1P1Q1", 1700000000.0, [(USER, "INBOX")])]
    restarted.deliver_named_sync(batch)  # the spool's delivery thread, as after an SMTP 250

    inbox = result(restarted.open(USER, "INBOX"))
    assert list(result(inbox.select(False)).uids) == [1, 2, 3]
    newest = result(inbox.messages([3]))[0]
    assert newest.internaldate == 1700000000.0  # the new mail has the highest UID
    assert len(message_files(directory)) == 3


def _corrupt_messages_table(path: str) -> None:
    """Overwrite the root page of the ``messages`` table: opening and the meta table still
    work, reading the messages fails."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 64)
    _index.forget(os.path.dirname(path))  # as after a restart: no page cached


def test_damage_a_query_meets_fails_that_call_and_the_next_one_works(store, source, logged):
    deliver(store, source, 200)
    directory = inbox_directory(store)
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.select(False))
    _corrupt_messages_table(os.path.join(directory, INDEX_NAME))

    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    with pytest.raises(StoreError, match="malformed"):
        result(result(restarted.open(USER, "INBOX")).select(False))
    assert len(set_aside(directory)) == 1
    assert list(result(result(restarted.open(USER, "INBOX")).select(False)).uids) == list(
        range(1, 201)
    )
    assert len([e for e in logged if "aside" in e]) == 1


def test_the_wal_and_shm_of_a_damaged_index_go_aside_with_it(store, source):
    # As another worker's connection, still open on the damaged file, leaves them: SQLite
    # deletes them itself when the last connection closes, so this calls quarantine directly.
    deliver(store, source, 2)
    directory = inbox_directory(store)
    damage(directory, "random")
    path = os.path.join(directory, INDEX_NAME)
    for suffix in ("-wal", "-shm"):
        with open(path + suffix, "wb") as f:
            f.write(b"left by the other worker " + suffix.encode())

    aside = _index.quarantine(path, os.lstat(path).st_ino)

    assert set_aside(directory) == [aside]
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(path + suffix)  # never paired with the new index
        with open(aside + suffix, "rb") as f:
            assert f.read().endswith(suffix.encode())
    assert len(result(result(store.open(USER, "INBOX")).select(False)).uids) == 2


def test_a_full_disk_is_no_damage_and_the_error_names_the_index(store, source, big):
    deliver(store, source, 1)
    directory = inbox_directory(store)
    path = os.path.join(directory, INDEX_NAME)
    fill_up(path)

    with pytest.raises(sqlite3.OperationalError) as failed:
        result(store.deliver_file([(USER, "INBOX")], big))

    assert out_of_space(failed.value)  # still IMAP's OVERQUOTA
    assert f"mailbox index {path}" in failed.value.__notes__
    assert set_aside(directory) == []
    _index.forget(directory)
    assert list(result(result(store.open(USER, "INBOX")).select(False)).uids) == [1]


def test_an_index_removed_while_running_is_filled_from_the_files_at_the_next_open(store, source):
    deliver(store, source, 3)
    inbox = result(store.open(USER, "INBOX"))
    assert len(result(inbox.select(False)).uids) == 3
    path = os.path.join(inbox_directory(store), INDEX_NAME)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)

    assert list(result(result(store.open(USER, "INBOX")).select(False)).uids) == [1, 2, 3]


def _rebuild_elsewhere(store: MaildirStore) -> str:
    """What the other worker, or ``txmailhost index rebuild --force``, does meanwhile."""
    other = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    return result(result(other.open(USER, "INBOX")).repair_index(True))


def test_a_session_holding_uids_of_the_old_index_changes_nothing(store, source):
    deliver(store, source, 3)
    session = result(store.open(USER, "INBOX"))
    result(session.select(False))
    result(session.expunge([1]))  # the session holds UIDs 2 and 3; the new index 1 and 2
    directory = inbox_directory(store)
    assert _rebuild_elsewhere(store) in set_aside(directory)
    files = message_files(directory)

    for stale in (
        lambda: session.expunge([2]),
        lambda: session.store_flags([2], [SEEN], "+"),
        lambda: session.messages([2], content=True),
        lambda: session.changes_since(0),
    ):
        with pytest.raises(NoSuchMailbox):
            result(stale())
    assert message_files(directory) == files
    assert list(result(result(store.open(USER, "INBOX")).select(False)).uids) == [1, 2]


def test_a_pop3_style_snapshot_of_a_deleted_and_recreated_folder_expunges_nothing(store, source):
    result(store.create_mailbox(USER, "Work"))
    result(store.deliver_file([(USER, "Work")], source))
    session = result(store.open(USER, "Work"))
    result(session.snapshot())
    result(store.delete_mailbox(USER, "Work"))
    result(store.create_mailbox(USER, "Work"))
    result(store.deliver_file([(USER, "Work")], source))

    with pytest.raises(NoSuchMailbox):
        result(session.expunge([1]))
    directory = folder_directory(user_directory(store.root, USER), "Work")
    assert len(message_files(directory)) == 1


def test_index_rebuild_keeps_a_sound_index_unless_forced(store, source):
    deliver(store, source, 2)
    inbox = result(store.open(USER, "INBOX"))
    before = result(inbox.select(False)).uidvalidity

    assert result(inbox.repair_index(False)) is None
    assert result(inbox.status()).uidvalidity == before
    aside = result(inbox.repair_index(True))
    assert aside is not None and os.path.isfile(aside)
    status = result(inbox.status())
    assert status.uidvalidity != before and status.messages == 2


def test_index_rebuild_sets_aside_an_index_that_opens_but_is_damaged(store, source):
    deliver(store, source, 200)
    directory = inbox_directory(store)
    result(result(store.open(USER, "INBOX")).select(False))
    _corrupt_messages_table(os.path.join(directory, INDEX_NAME))

    aside = result(result(store.open(USER, "INBOX")).repair_index(False))

    assert set_aside(directory) == [aside]
    assert result(result(store.open(USER, "INBOX")).status()).messages == 200


def _select_in_a_worker(root: str, start: multiprocessing.synchronize.Barrier) -> tuple:
    import threading

    store = MaildirStore(root, SyncReactor(), SyncThreadPool())
    seen: list = []

    def session() -> None:
        selection = result(result(store.open(USER, "INBOX")).select(False))
        seen.append((selection.uidvalidity, tuple(selection.uids)))

    start.wait()
    threads = [threading.Thread(target=session) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tuple(seen)


def test_workers_meeting_the_same_damage_set_it_aside_once(store, source):
    deliver(store, source, 5)
    directory = inbox_directory(store)
    damage(directory, "truncated")
    spawn = multiprocessing.get_context("spawn")  # fresh processes, like the server's workers
    start = spawn.Manager().Barrier(3)
    with spawn.Pool(3) as pool:
        answers = pool.starmap(_select_in_a_worker, [(store.root, start)] * 3)

    seen = {entry for answer in answers for entry in answer}
    assert len(seen) == 1, seen  # one new index, one UIDVALIDITY, every message once
    ((_uidvalidity, uids),) = seen
    assert uids == (1, 2, 3, 4, 5)
    assert len(set_aside(directory)) == 1
