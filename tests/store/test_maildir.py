"""The Maildir++ store and its index, through the IMailStore/IMailbox interface."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3

import pytest
import twisted.mail.imap4  # noqa: F401 - imap4-utf-7 codec
from zope.interface.verify import verifyObject

from tests.store.conftest import MSG, USER, fill_up
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost._safeio import out_of_space
from txmailhost.store.index import INDEX_NAME
from txmailhost.store.interfaces import (
    IMailbox,
    IMailStore,
    InvalidMailboxName,
    MailboxExists,
    NoSuchMailbox,
    NoSuchMessage,
)
from txmailhost.store.maildir import MaildirStore, folder_directory


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "msg"
    path.write_bytes(b"Subject: test\r\n\r\nhello\r\n")
    return str(path)


def user_dir(store):
    return os.path.join(store.root, "example.test", "alice")


def test_store_and_mailbox_provide_their_interfaces(store):
    assert verifyObject(IMailStore, store)
    assert verifyObject(IMailbox, result(store.open(USER, "INBOX")))


def test_provision_creates_inbox_and_default_folders_as_maildirplusplus(store):
    root = user_dir(store)
    for sub in ("cur", "new", "tmp"):
        assert os.path.isdir(os.path.join(root, sub))
    for folder in (".Sent", ".Drafts", ".Trash", ".Junk"):
        assert os.path.isfile(os.path.join(root, folder, "maildirfolder"))
    assert result(store.list_mailboxes(USER)) == ["INBOX", "Drafts", "Junk", "Sent", "Trash"]


def test_delivery_links_into_new_and_assigns_increasing_uids(store, message):
    first = result(store.deliver_file([(USER, "INBOX")], message))
    second = result(store.deliver_file([(USER, "INBOX")], message))
    assert first == {(USER, "INBOX"): 1} and second == {(USER, "INBOX"): 2}
    names = os.listdir(os.path.join(user_dir(store), "new"))
    assert len(names) == 2 and all(",S=24" in n for n in names)
    snap = result(result(store.open(USER, "INBOX")).snapshot())
    assert [m.uid for m in snap.messages] == [1, 2] and snap.uidnext == 3
    assert all(m.size == 24 for m in snap.messages)


def test_flags_are_mirrored_into_maildir_file_names(store, message):
    result(store.deliver_file([(USER, "INBOX")], message))
    box = result(store.open(USER, "INBOX"))
    (info,) = result(box.store_flags([1], ["\\Seen", "\\Flagged", "$label"], "+"))
    assert info.flags == {"\\Seen", "\\Flagged", "$label"}
    (name,) = os.listdir(os.path.join(user_dir(store), "cur"))
    assert name.endswith(":2,FS")
    result(box.store_flags([1], ["\\Flagged"], "-"))
    assert os.listdir(os.path.join(user_dir(store), "cur"))[0].endswith(":2,S")
    assert result(box.open_message(1)).read() == b"Subject: test\r\n\r\nhello\r\n"


def test_file_renamed_by_another_tool_is_still_found(store, message):
    result(store.deliver_file([(USER, "INBOX")], message))
    root = user_dir(store)
    (name,) = os.listdir(os.path.join(root, "new"))
    os.rename(os.path.join(root, "new", name), os.path.join(root, "cur", name + ":2,RS"))
    box = result(store.open(USER, "INBOX"))
    assert result(box.open_message(1)).read().endswith(b"hello\r\n")
    (info,) = result(box.snapshot()).messages
    assert info.flags == {"\\Seen", "\\Answered"}


def test_files_dropped_in_by_other_tools_get_uids_and_vanished_ones_go(store, message):
    result(store.deliver_file([(USER, "INBOX")], message))
    root = user_dir(store)
    with open(os.path.join(root, "cur", "1700000000.X1.host:2,S"), "wb") as f:
        f.write(b"Subject: external\r\n\r\nx\r\n")
    box = result(store.open(USER, "INBOX"))
    assert [(m.uid, "\\Seen" in m.flags) for m in result(box.snapshot()).messages] == [
        (1, False),
        (2, True),
    ]
    os.unlink(os.path.join(os.path.join(root, "new"), os.listdir(os.path.join(root, "new"))[0]))
    assert [m.uid for m in result(box.snapshot()).messages] == [2]
    with pytest.raises(NoSuchMessage):
        result(box.open_message(1))


def test_expunge_removes_files_and_rows_and_uids_are_never_reused(store, message):
    for _ in range(3):
        result(store.deliver_file([(USER, "INBOX")], message))
    box = result(store.open(USER, "INBOX"))
    assert result(box.expunge([2, 99])) == [2]
    snap = result(box.snapshot())
    assert [m.uid for m in snap.messages] == [1, 3]
    assert len(os.listdir(os.path.join(user_dir(store), "new"))) == 2
    result(store.deliver_file([(USER, "INBOX")], message))
    assert [m.uid for m in result(box.snapshot()).messages] == [1, 3, 4]


def test_index_lost_is_rebuilt_from_files_with_new_uidvalidity(store, message, monkeypatch):
    result(store.deliver_file([(USER, "INBOX")], message))
    box = result(store.open(USER, "INBOX"))
    old = result(box.snapshot()).uidvalidity
    from txmailhost.store import index

    index.forget(user_dir(store))
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(user_dir(store), index.INDEX_NAME + suffix)
        if os.path.exists(path):
            os.unlink(path)
    monkeypatch.setattr("time.time", lambda: old + 100.0)
    fresh = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    snap = result(result(fresh.open(USER, "INBOX")).snapshot())
    assert [m.uid for m in snap.messages] == [1] and snap.uidvalidity != old


@pytest.mark.parametrize(
    "name",
    [
        *("../../etc", "a/../../b", "..", ".hidden", "a//b", "", "with\x00nul", "x\ny", "v1.2"),
        *("/abs", "z" * 255, "a/" * 130 + "b", "\u263a" * 100),  # too long for one file name
    ],
)
def test_mailbox_names_that_could_escape_or_not_be_stored_are_refused(store, name):
    with pytest.raises(InvalidMailboxName):
        folder_directory(user_dir(store), name)
    with pytest.raises(InvalidMailboxName):
        result(store.create_mailbox(USER, name))


@pytest.mark.parametrize("user", ["../x@example.test", "a@../../etc", "a/b@example.test", "noat"])
def test_owner_addresses_that_look_like_paths_are_refused(store, user):
    with pytest.raises(InvalidMailboxName):
        result(store.open(user, "INBOX"))


def test_create_delete_and_non_ascii_folder_names(store):
    result(store.create_mailbox(USER, "Lists/Twisted"))
    result(store.create_mailbox(USER, "Entwürfe"))
    with pytest.raises(MailboxExists):
        result(store.create_mailbox(USER, "Lists/Twisted"))
    names = result(store.list_mailboxes(USER))
    assert "Lists/Twisted" in names and "Entwürfe" in names
    assert os.path.isdir(os.path.join(user_dir(store), ".Entw&APw-rfe"))
    result(store.delete_mailbox(USER, "Lists/Twisted"))
    with pytest.raises(NoSuchMailbox):
        result(store.open(USER, "Lists/Twisted"))
    with pytest.raises(InvalidMailboxName):
        result(store.delete_mailbox(USER, "INBOX"))


def test_index_add_gives_a_name_already_indexed_its_old_uid(tmp_path):
    """A reconcile may index a delivered file before the delivery does: one UID, not two."""
    from txmailhost.store.index import MailboxIndex

    index = MailboxIndex(str(tmp_path))
    with index.write() as db:
        first = index.add([("a", "new", 0, "", 1.0, 10), ("b", "new", 0, "", 1.0, 10)], db)
    with index.write() as db:
        again = index.add([("b", "new", 0, "", 1.0, 10), ("c", "new", 0, "", 1.0, 10)], db)
    assert (first, again) == ([1, 2], [2, 3])
    meta = index.meta()
    assert (meta["uidnext"], meta["highestmodseq"]) == (4, 3)


def test_append_many_removes_what_it_linked_when_a_later_link_fails(store, monkeypatch):
    """MULTIAPPEND is all or nothing (RFC 3502): no file is left for a reconcile to adopt."""
    from txmailhost import _safeio
    from txmailhost.store.interfaces import MessageSource

    real, calls = _safeio.link_durably, []

    def flaky(source: str, target: str) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(source, target)

    monkeypatch.setattr(_safeio, "link_durably", flaky)
    box = result(store.open(USER, "INBOX"))
    message = MessageSource.from_bytes(b"Subject: x\r\n\r\nbody\r\n")
    items = [(message, [], None), (message, [], None)]
    with pytest.raises(OSError):
        result(box.append_many(items))
    monkeypatch.setattr(_safeio, "link_durably", real)
    directory = box.directory
    assert os.listdir(os.path.join(directory, "new")) == []
    assert os.listdir(os.path.join(directory, "cur")) == []
    assert result(box.status()).messages == 0


def test_store_and_expunge_find_a_file_another_tool_moved(store):
    """mutt marks a message read by renaming new/NAME to cur/NAME:2,S; the index still says
    new/. STORE and EXPUNGE find it (recording the move inside their own transaction)."""
    from txmailhost.store.interfaces import DELETED, MessageSource

    box = result(store.open(USER, "INBOX"))
    _validity, uid = result(box.append(MessageSource.from_bytes(b"Subject: m\r\n\r\nx\r\n")))
    (name,) = os.listdir(os.path.join(box.directory, "new"))
    os.rename(
        os.path.join(box.directory, "new", name), os.path.join(box.directory, "cur", name + ":2,S")
    )
    (info,) = result(box.store_flags([uid], [DELETED], "+"))
    assert DELETED in info.flags
    assert result(box.expunge([uid])) == [uid]
    assert os.listdir(os.path.join(box.directory, "cur")) == []


@pytest.mark.parametrize("many", [False, True], ids=["append", "append_many"])
def test_an_appended_message_header_is_indexed_from_memory_not_read_back(store, monkeypatch, many):
    """An APPEND literal held in memory is written to a file; the index's copy of its header
    (for FETCH of headers, ENVELOPE, SEARCH) comes from those same octets, not from
    opening and reading that file again: in CRLF form, as ``read_header`` gives it. A header
    longer than the cache limit is still read from the file."""
    from txmailhost.store import maildir
    from txmailhost.store.interfaces import MessageSource

    def no_reading(path: str, limit: int = 0) -> bytes:
        raise OSError(f"{path} read back")

    monkeypatch.setattr(maildir, "read_header", no_reading)
    box = result(store.open(USER, "INBOX"))
    lf_message = b"Subject: lf\nX-Other: 1\n\nbody\n"
    no_body = b"Subject: header only\r\n"
    sources = [MessageSource.from_bytes(m) for m in (lf_message, no_body)]
    if many:
        _validity, uids = result(box.append_many([(source, [], None) for source in sources]))
    else:
        uids = [result(box.append(source))[1] for source in sources]
    assert box._index.cached_headers(uids) == {
        uids[0]: b"Subject: lf\r\nX-Other: 1\r\n\r\n",
        uids[1]: b"Subject: header only\r\n",
    }


@pytest.mark.parametrize("many", [False, True], ids=["append", "append_many"])
def test_append_reports_the_uidvalidity_its_uid_was_given_under(store, monkeypatch, many):
    """APPENDUID (RFC 4315) pairs the new UID with the UIDVALIDITY the index had when it
    gave that UID: read in the same transaction, not afterwards, when an index made anew
    in between (set aside as damaged by another worker, say) has another."""
    from txmailhost.store.interfaces import MessageSource

    box = result(store.open(USER, "INBOX"))
    before = box._index.meta()["uidvalidity"]
    real = store._add_files

    def then_made_anew(*args, **kwargs):
        uids = real(*args, **kwargs)
        box._index.set_aside(force=True)
        return uids

    monkeypatch.setattr(store, "_add_files", then_made_anew)
    source = MessageSource.from_bytes(b"Subject: m\r\n\r\nx\r\n")
    if many:
        validity, uids = result(box.append_many([(source, [], None)]))
    else:
        validity, uid = result(box.append(source))
        uids = [uid]
    assert box._index.meta()["uidvalidity"] != before
    assert (validity, uids) == (before, [1])


# -- delivery with flags (Sieve's imap4flags) ---------------------------------------------------


def listing(store, sub: str) -> list[str]:
    return sorted(os.listdir(os.path.join(user_dir(store), sub)))


def test_a_copy_delivered_with_system_flags_goes_into_cur_with_its_info_suffix(store, message):
    flags = {(USER, "INBOX"): frozenset({"\\Seen", "\\Flagged", "$Label1"})}
    result(store.deliver_file([(USER, "INBOX")], message, flags=flags))
    assert listing(store, "new") == []
    (name,) = listing(store, "cur")
    assert name.endswith(":2,FS") and ",S=24" in name
    (info,) = result(result(store.open(USER, "INBOX")).snapshot()).messages
    assert info.flags == {"\\Seen", "\\Flagged", "$Label1"}


def test_a_copy_with_keywords_only_stays_new_for_other_maildir_readers(store, message):
    flags = {(USER, "INBOX"): frozenset({"$Label1"})}
    result(store.deliver_file([(USER, "INBOX")], message, flags=flags))
    assert listing(store, "cur") == [] and len(listing(store, "new")) == 1
    box = result(store.open(USER, "INBOX"))
    (info,) = result(box.snapshot()).messages
    assert info.flags == {"$Label1"}
    result(box.store_flags([info.uid], ["\\Seen"], "+"))  # read: moved, keyword kept
    (info,) = result(box.snapshot()).messages
    assert info.flags == {"$Label1", "\\Seen"} and listing(store, "new") == []


def test_system_flags_of_a_delivered_copy_survive_a_lost_index(store, message):
    result(store.deliver_file([(USER, "INBOX")], message, flags={(USER, "INBOX"): {"\\Seen"}}))
    from txmailhost.store import index

    index.forget(user_dir(store))
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(user_dir(store), index.INDEX_NAME + suffix)
        if os.path.exists(path):
            os.unlink(path)
    fresh = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    (info,) = result(result(fresh.open(USER, "INBOX")).snapshot()).messages
    assert info.flags == {"\\Seen"}  # read from the file name


def test_named_delivery_with_flags_links_into_cur_and_is_found_again_when_recovering(
    store, message
):
    result(store.create_mailbox(USER, "Work"))
    targets = [(USER, "INBOX"), (USER, "Work")]
    entry = (message, "1790000000.Sx", 1790000000.0, targets, {(USER, "Work"): {"\\Seen"}})
    store.deliver_named_sync([entry])
    work = folder_directory(user_dir(store), "Work")
    (seen,) = os.listdir(os.path.join(work, "cur"))
    assert seen.startswith("1790000000.SxR1.") and seen.endswith(":2,S")
    assert len(listing(store, "new")) == 1  # INBOX's copy has no flags
    store.deliver_named_sync([entry], recovering=True)  # after a crash: no second copy
    store.deliver_named_sync([entry])  # a retried batch: links exist, rows are the same
    assert os.listdir(os.path.join(work, "cur")) == [seen] and len(listing(store, "new")) == 1
    (info,) = result(result(store.open(USER, "Work")).snapshot()).messages
    assert info.flags == {"\\Seen"} and info.internaldate == 1790000000.0
    (plain,) = result(result(store.open(USER, "INBOX")).snapshot()).messages
    assert plain.flags == frozenset()


def test_object_ids_and_save_dates_survive_a_restart(tmp_path):
    """RFC 8474 / RFC 8514 values live in the index, not in the process: a new store on the
    same directory (a restarted server) reports the same."""
    from txmailhost.store.interfaces import MessageSource

    root = str(tmp_path / "mail")
    first = MaildirStore(root, SyncReactor(), SyncThreadPool())
    first.provision_sync(USER)
    box = result(first.open(USER, "INBOX"))
    _validity, uid = result(box.append(MessageSource.from_bytes(MSG), [], 1_000_000))
    ((_uid, copied),) = result(box.copy([uid], result(first.open(USER, "Trash"))))
    before = (
        result(box.origins([uid])),
        result(box.status()).mailboxid,
        result(result(first.open(USER, "Trash")).origins([copied])),
    )
    again = MaildirStore(root, SyncReactor(), SyncThreadPool())
    box = result(again.open(USER, "INBOX"))
    after = (
        result(box.origins([uid])),
        result(box.status()).mailboxid,
        result(result(again.open(USER, "Trash")).origins([copied])),
    )
    assert after == before
    assert before[0][uid].emailid == before[2][copied].emailid


def test_an_index_from_before_object_ids_gets_them_without_losing_anything(store, source):
    """An index written before the origins table and the mailboxid meta row: its messages
    report their INTERNALDATE as save date and a stable EMAILID made from UIDVALIDITY and UID,
    and the mailbox gets a MAILBOXID once."""
    import sqlite3

    from txmailhost.store import index as _index

    copies = store._deliver_sync([(USER, "INBOX")], source, 1_000_000)
    uid = copies[(USER, "INBOX")]
    directory = store._folder(USER, "INBOX")
    db = sqlite3.connect(os.path.join(directory, _index.INDEX_NAME))
    db.execute("DELETE FROM origins")
    db.execute("DELETE FROM meta WHERE key = 'mailboxid'")
    db.commit()
    db.close()
    box = result(store.open(USER, "INBOX"))
    (origin,) = result(box.origins([uid])).values()
    assert origin.savedate == 1_000_000
    assert result(box.origins([uid]))[uid] == origin  # the same every time
    mailboxid = result(box.status()).mailboxid
    assert mailboxid and result(box.select(False)).mailboxid == mailboxid
    ((_uid, copied),) = result(box.copy([uid], result(store.open(USER, "Trash"))))
    trash = result(store.open(USER, "Trash"))
    assert result(trash.origins([copied]))[copied].emailid == origin.emailid


def test_a_named_delivery_is_one_emailid_in_every_mailbox_and_again_after_recovery(store, source):
    """The spool's delivery (``deliver_named_sync``): the copies of one message share its
    EMAILID, and a recovery that adds the copies a crash left out gives them the same."""
    store.deliver_named_sync([(source, "1790000000.Qstem1", 1_790_000_000.0, [(USER, "INBOX")])])
    store.deliver_named_sync(
        [(source, "1790000000.Qstem1", 1_790_000_000.0, [(USER, "INBOX"), (USER, "Junk")])],
        recovering=True,
    )
    inbox, junk = result(store.open(USER, "INBOX")), result(store.open(USER, "Junk"))
    (first,) = result(inbox.origins([1, 2])).values()  # found again, not added twice
    (copied,) = result(junk.origins([1])).values()
    assert first.emailid == copied.emailid


def test_an_inbox_opened_while_another_worker_provisions_it_is_whole(store, monkeypatch):
    """Two sessions of an account never provisioned select INBOX at once (two workers):
    the second must see a mailbox either missing (and provision it too) or complete."""
    from txmailhost import _safeio

    real = _safeio.makedirs_durably
    opened: list[object] = []

    def racing(path: str, mode: int = 0o700) -> None:
        real(path, mode)
        if not opened:  # the other worker's SELECT, right after the first directory appears
            opened.append(None)
            opened[0] = store._open_sync("newcomer@example.test", "INBOX")._select(False)

    fresh = "newcomer@example.test"  # never provisioned, unlike the fixture's USER
    monkeypatch.setattr(_safeio, "makedirs_durably", racing)
    selected = store._open_sync(fresh, "INBOX")._select(False)
    assert opened and opened[0] is not None and selected is not None


def _subscribe_many(root: str, writer: int, count: int) -> None:
    """One process's SUBSCRIBEs (a server worker's)."""
    store = MaildirStore(root, SyncReactor(), SyncThreadPool())
    for n in range(count):
        result(store.subscribe(USER, f"w{writer}/list{n}", True))


def test_subscriptions_from_several_processes_are_all_kept(tmp_path):
    """Each SUBSCRIBE reads and rewrites the user's ``subscriptions`` file: under the user
    directory's flock, two workers subscribing at once don't drop each other's names."""
    import multiprocessing

    root = str(tmp_path / "mail")
    store = MaildirStore(root, SyncReactor(), SyncThreadPool())
    store.provision_sync(USER)
    before = result(store.subscriptions(USER))
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.starmap(_subscribe_many, [(root, writer, 25) for writer in range(4)])
    names = result(store.subscriptions(USER))
    wanted = {f"w{w}/list{n}" for w in range(4) for n in range(25)}
    assert set(names) == wanted | set(before)


def test_mail_arriving_now_gets_a_whole_second_internaldate_as_spooled_mail_does(
    store, message, monkeypatch
):
    """Spooled local mail takes its INTERNALDATE from the spool record, in whole seconds;
    mail delivered straight got a fraction: the first message of a second, delivered
    straight, then sorted after the two spooled behind it (THREAD, SORT ARRIVAL)."""
    import time

    monkeypatch.setattr(time, "time", lambda: 1790000000.75)
    result(store.deliver_file([(USER, "INBOX")], message))
    spooled = [(message, "1790000000.Sfile", 1790000000.0, [(USER, "INBOX")])]
    store.deliver_named_sync(spooled)  # as the spool's delivery thread does
    snap = result(result(store.open(USER, "INBOX")).snapshot())
    assert [m.internaldate for m in snap.messages] == [1790000000.0, 1790000000.0]


def message_files(directory: str) -> list[str]:
    return [name for sub in ("new", "cur") for name in os.listdir(os.path.join(directory, sub))]


def test_a_delivery_the_full_index_refuses_says_so_and_leaves_no_file(store, big):
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.select(False))
    fill_up(os.path.join(inbox.directory, INDEX_NAME))

    with pytest.raises(sqlite3.OperationalError) as failed:
        result(store.deliver_file([(USER, "INBOX")], big))

    assert out_of_space(failed.value)  # IMAP's OVERQUOTA, not "cannot rollback"
    assert message_files(inbox.directory) == []  # a retried delivery adds it once
    assert list(result(result(store.open(USER, "INBOX")).select(False)).uids) == []


def test_a_copy_the_full_target_index_refuses_leaves_no_copies(store, big):
    result(store.deliver_file([(USER, "INBOX")], big))
    inbox = result(store.open(USER, "INBOX"))
    result(inbox.select(False))
    trash = result(store.open(USER, "Trash"))
    result(trash.status())
    fill_up(os.path.join(trash.directory, INDEX_NAME))

    with pytest.raises(sqlite3.OperationalError) as failed:
        result(inbox.copy([1], trash))

    assert out_of_space(failed.value)
    assert message_files(trash.directory) == []  # a retried COPY adds it once
    assert result(result(store.open(USER, "Trash")).status()).messages == 0


class Killed(BaseException):
    """The process died (kill -9) at this point."""


def _killed_during_removal(monkeypatch, fraction: float) -> None:
    """``shutil.rmtree`` removes ``fraction`` of a folder's messages, then the process dies."""

    def dying(path, *args, **kwargs):
        names = sorted(os.listdir(os.path.join(path, "new")))
        for name in names[: int(len(names) * fraction)]:
            os.unlink(os.path.join(path, "new", name))
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", dying)


def tombstones(store) -> list[str]:
    return [n for n in os.listdir(user_dir(store)) if n.startswith("txmailhost-deleted.")]


def test_a_delete_killed_while_removing_files_leaves_no_part_of_the_folder(
    store, message, monkeypatch
):
    result(store.create_mailbox(USER, "Big"))
    for _ in range(30):
        result(store.deliver_file([(USER, "Big")], message))
    before = result(result(store.open(USER, "Big")).status())
    _killed_during_removal(monkeypatch, 1 / 3)
    with contextlib.suppress(Killed):
        result(store.delete_mailbox(USER, "Big"))
    monkeypatch.undo()

    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    assert "Big" not in result(restarted.list_mailboxes(USER))
    restarted.sweep_staging_sync()  # at start
    assert tombstones(restarted) == []
    result(restarted.create_mailbox(USER, "Big"))
    after = result(result(restarted.open(USER, "Big")).status())
    assert after.messages == 0 and after.uidvalidity != before.uidvalidity


def test_a_deleted_folders_tombstone_is_no_folder_and_goes_at_the_next_login(store, monkeypatch):
    result(store.create_mailbox(USER, "Big"))
    result(store.create_mailbox(USER, "Big/Sub"))
    _killed_during_removal(monkeypatch, 0)
    with contextlib.suppress(Killed):
        result(store.delete_mailbox(USER, "Big"))
    monkeypatch.undo()
    assert len(tombstones(store)) == 1

    names = result(store.list_mailboxes(USER))
    assert "Big" not in names and "Big/Sub" in names  # children stay, as they did
    result(store.rename_mailbox(USER, "Big/Sub", "Big"))
    result(store.create_mailbox(USER, "Big/Sub"))
    restarted = MaildirStore(store.root, SyncReactor(), SyncThreadPool())
    result(restarted.open(USER, "INBOX"))
    assert tombstones(restarted) == []
    assert {"Big", "Big/Sub"} <= set(result(restarted.list_mailboxes(USER)))
