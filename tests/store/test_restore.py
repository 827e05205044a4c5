"""store/restore.py: an empty Maildir mailbox filled with the UIDs, UIDVALIDITY and modseqs it
had; a mailbox holding mail is left alone (the caller appends)."""

from __future__ import annotations

import errno
import os

import pytest

from tests.store.conftest import MSG, USER
from txmailhost import _safeio
from txmailhost.store.interfaces import MessageSource
from txmailhost.store.maildir import MaildirStore
from txmailhost.store.memory import MemoryStore
from txmailhost.store.restore import IMailboxRestore, RestoredMessage, restore_mailbox_sync


def now(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def message(uid: int, flags=(), modseq: int = 50) -> RestoredMessage:
    body = MSG.replace(b"hello", b"hello %d" % uid)
    return RestoredMessage(uid, frozenset(flags), 1_700_000_000.0 + uid, modseq,
                           MessageSource.from_bytes(body))  # fmt: skip


def test_uids_uidvalidity_flags_and_modseqs_come_back(store: MaildirStore) -> None:
    done = IMailboxRestore(store).restore_sync(
        USER, "Archive", 1234567, 40,
        [message(7, ["\\Seen", "$Work"], 60), message(9, [], 61), message(30, ["\\Flagged"], 62)],
    )  # fmt: skip
    assert done is not None and done.kept_uids and done.uidvalidity == 1234567
    mailbox = now(store.open(USER, "Archive"))
    snapshot = now(mailbox.snapshot())
    assert (snapshot.uidvalidity, snapshot.uidnext, snapshot.highestmodseq) == (1234567, 40, 62)
    assert [(m.uid, sorted(m.flags), m.modseq, m.internaldate) for m in snapshot.messages] == [
        (7, ["$Work", "\\Seen"], 60, 1_700_000_007.0),
        (9, [], 61, 1_700_000_009.0),
        (30, ["\\Flagged"], 62, 1_700_000_030.0),
    ]
    assert now(mailbox.open_message(9)).read() == MSG.replace(b"hello", b"hello 9")
    assert now(mailbox.append(MessageSource.from_bytes(MSG), [], None))[1] == 40
    # Files are where a fresh store (another process) finds them, under the same UIDs.
    again = MaildirStore(store.root)
    assert [m.uid for m in now(now(again.open(USER, "Archive")).snapshot()).messages] == [
        7, 9, 30, 40,
    ]  # fmt: skip


def test_modseqs_at_or_below_the_mailbox_highest_are_replaced_by_a_new_one(store) -> None:
    inbox = now(store.open(USER, "INBOX"))
    uid = now(inbox.append(MessageSource.from_bytes(MSG), [], None))[1]
    now(inbox.store_flags([uid], ["\\Seen"], "+"))
    now(inbox.expunge([uid]))
    highest = now(inbox.snapshot()).highestmodseq
    done = IMailboxRestore(store).restore_sync(USER, "INBOX", 99, 5, [message(3, [], 1)])
    assert done is not None and done.kept_uids
    snapshot = now(inbox.snapshot())
    assert [(m.uid, m.modseq) for m in snapshot.messages] == [(3, highest + 1)]
    assert snapshot.highestmodseq == highest + 1 and snapshot.uidnext == 5


def test_a_mailbox_holding_mail_is_not_touched(store) -> None:
    inbox = now(store.open(USER, "INBOX"))
    now(inbox.append(MessageSource.from_bytes(MSG), [], None))
    before = now(inbox.snapshot())
    assert IMailboxRestore(store).restore_sync(USER, "INBOX", 5, 10, [message(2)]) is None
    assert now(inbox.snapshot()) == before
    done = restore_mailbox_sync(store, USER, "INBOX", 5, 10, [message(2, ["\\Seen"])], now)
    assert not done.kept_uids and done.uidvalidity == before.uidvalidity
    after = now(inbox.snapshot())
    assert len(after.messages) == 2 and after.messages[1].flags == frozenset({"\\Seen"})


def test_a_store_without_restore_gets_appends() -> None:
    store = MemoryStore()
    now(store.provision(USER))
    assert IMailboxRestore(store, None) is None
    done = restore_mailbox_sync(store, USER, "Lists", 77, 9, [message(4), message(8)], now)
    assert not done.kept_uids and done.messages == 2
    assert len(now(now(store.open(USER, "Lists")).snapshot()).messages) == 2


def test_emailids_save_dates_and_the_mailboxid_come_back_when_given(store) -> None:
    """RFC 8474 / RFC 8514 values an export kept: restored with the UIDs; an id that isn't
    an ``objectid`` (a damaged or crafted file) is not served: the message gets the id made
    from UIDVALIDITY and UID instead."""
    kept = RestoredMessage(4, frozenset(), 1_700_000_004.0, 50, MessageSource.from_bytes(MSG),
                           emailid="Mkept4", savedate=1_750_000_000.0)  # fmt: skip
    dated = RestoredMessage(5, frozenset(), 1_700_000_005.0, 50, MessageSource.from_bytes(MSG),
                            emailid="Mkept5")  # fmt: skip
    bad = RestoredMessage(6, frozenset(), 1_700_000_006.0, 50, MessageSource.from_bytes(MSG),
                          emailid="M) BYE\r\n")  # fmt: skip
    done = restore_mailbox_sync(
        store, USER, "Archive", 4242, 10, [kept, dated, bad, message(7)], now, "Fkept"
    )
    assert done.kept_uids
    mailbox = now(store.open(USER, "Archive"))
    origins = now(mailbox.origins([4, 5, 6, 7]))
    assert (origins[4].emailid, origins[4].savedate) == ("Mkept4", 1_750_000_000.0)
    assert (origins[5].emailid, origins[5].savedate) == ("Mkept5", 1_700_000_005.0)
    assert origins[6].emailid.startswith("M") and "BYE" not in origins[6].emailid
    assert origins[6].savedate == 1_700_000_006.0 and origins[7].emailid != origins[6].emailid
    assert now(mailbox.status()).mailboxid == "Fkept"


def test_the_postgres_restore_takes_the_same_ids(tmp_path) -> None:
    """``restore_mailbox_sync`` hands every restorer the MAILBOXID: the PostgreSQL one takes
    it, and the EMAILIDs and save dates, as the Maildir one does."""
    import pytest

    from tests.support.postgres import available

    if (why := available()) is not None:
        pytest.skip(why)
    import txmailhost.store.postgres_restore  # noqa: F401 - registers the adapter
    from tests.support.fixtures import build_store
    from tests.support.syncpool import SyncReactor, SyncThreadPool

    store = build_store("postgres", str(tmp_path / "mail"), SyncReactor(), SyncThreadPool())
    kept = RestoredMessage(4, frozenset(), 1_700_000_004.0, 50, MessageSource.from_bytes(MSG),
                           emailid="Mkept4", savedate=1_750_000_000.0)  # fmt: skip
    bad = RestoredMessage(6, frozenset(), 1_700_000_006.0, 50, MessageSource.from_bytes(MSG),
                          emailid="M) BYE\r\n")  # fmt: skip
    done = restore_mailbox_sync(store, USER, "Archive", 4242, 10, [kept, bad], now, "Fkept")
    assert done.kept_uids and done.uidvalidity == 4242
    mailbox = now(store.open(USER, "Archive"))
    origins = now(mailbox.origins([4, 6]))
    assert (origins[4].emailid, origins[4].savedate) == ("Mkept4", 1_750_000_000.0)
    assert "BYE" not in origins[6].emailid
    assert now(mailbox.status()).mailboxid == "Fkept"
    store.close()


@pytest.mark.parametrize(
    ("uidvalidity", "uidnext", "uids", "problem"),
    [
        (-5, 10, [2], r"UIDVALIDITY -5 is not a number from 1 to 4294967295"),
        (0, 10, [2], r"UIDVALIDITY 0 is not"),
        (5, 4294967299, [2], r"UIDNEXT 4294967299 is not a number from 1 to 4294967295"),
        ("5", 10, [2], r"UIDVALIDITY '5' is not"),
        (5, 10, [2, 2], r"UID 2 is given twice"),
        (5, 10, [10], r"UID 10 is not a number from 1 to UIDNEXT-1 \(10\)"),
        (5, 10, [0], r"UID 0 is not"),
    ],
)
def test_numbers_imap_cant_serve_are_refused_before_anything_is_written(
    store: MaildirStore, uidvalidity, uidnext, uids, problem
) -> None:
    """A UIDNEXT of 4294967299 was restored (the next delivery got that UID and SELECT
    failed), a UID given twice left its files in the mailbox under fresh UIDs."""
    with pytest.raises(ValueError, match=problem):
        restore_mailbox_sync(store, USER, "INBOX", uidvalidity, uidnext,
                             [message(uid) for uid in uids], now)  # fmt: skip
    store._seen_mtimes.clear()  # as another process would: a reconcile reads the directory
    inbox = now(store.open(USER, "INBOX"))
    assert not now(inbox.snapshot()).messages
    assert now(inbox.append(MessageSource.from_bytes(MSG), [], None))[1] == 1


def test_a_modseq_beyond_63_bits_is_refused(store: MaildirStore) -> None:
    with pytest.raises(ValueError, match=r"UID 2: modseq 9223372036854775808 is out of range"):
        restore_mailbox_sync(store, USER, "INBOX", 5, 10, [message(2, modseq=2**63)], now)


def test_restoring_again_adds_only_what_the_mailbox_lacks(store: MaildirStore) -> None:
    """A second run (or one after a run cut short) finds the mailbox holding the UIDVALIDITY
    it restores: the messages there under their UIDs stay as they are, and those the source
    gained since come in above them, with their own UIDs."""
    first = restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3), message(5)], now)
    assert (first.messages, first.present, first.kept_uids) == (2, 0, True)
    mailbox = now(store.open(USER, "Archive"))
    before = now(mailbox.snapshot())
    again = restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3), message(5)], now)
    assert (again.messages, again.present, again.uidvalidity) == (0, 2, 4242)
    assert now(mailbox.snapshot()) == before
    more = [message(3), message(5), message(10, ["\\Seen"]), message(12)]
    grown = restore_mailbox_sync(store, USER, "Archive", 4242, 13, more, now)
    assert (grown.messages, grown.present, grown.kept_uids) == (2, 2, True)
    snapshot = now(mailbox.snapshot())
    assert [(m.uid, sorted(m.flags)) for m in snapshot.messages] == [
        (3, []), (5, []), (10, ["\\Seen"]), (12, []),
    ]  # fmt: skip
    assert snapshot.uidvalidity == 4242 and snapshot.uidnext == 13
    assert now(mailbox.open_message(12)).read() == MSG.replace(b"hello", b"hello 12")


def test_source_mail_whose_uid_went_to_mail_delivered_here_is_added_not_lost(store) -> None:
    """After a first run the server gets mail (UID 10), and so does the old server: its
    message 10 is another one (another INTERNALDATE), so it is added under a new UID."""
    restore_mailbox_sync(store, USER, "INBOX", 4242, 10, [message(3)], now)
    inbox = now(store.open(USER, "INBOX"))
    assert now(inbox.append(MessageSource.from_bytes(MSG), [], 1_800_000_000.0))[1] == 10
    done = restore_mailbox_sync(store, USER, "INBOX", 4242, 11, [message(3), message(10)], now)
    assert (done.messages, done.present, done.kept_uids) == (1, 1, False)
    snapshot = now(inbox.snapshot())
    assert [m.uid for m in snapshot.messages] == [3, 10, 11]
    assert now(inbox.open_message(11)).read() == MSG.replace(b"hello", b"hello 10")


def test_a_mailbox_of_another_source_with_the_same_uidvalidity_is_not_taken_for_it(store):
    """Two mailboxes made in the same second share a UIDVALIDITY: the MAILBOXID restored
    with them tells one export's from another's."""
    restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3)], now, "Fone")
    done = restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3)], now, "Ftwo")
    assert (done.messages, done.present, done.kept_uids) == (1, 0, False)
    mailbox = now(store.open(USER, "Archive"))
    assert [m.uid for m in now(mailbox.snapshot()).messages] == [3, 10]
    assert now(mailbox.status()).mailboxid == "Fone"


def test_a_link_that_fails_leaves_nothing_for_a_reconcile_to_take_for_mail(
    store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files linked before the failure stayed in the mailbox, and the next look at it
    gave them fresh UIDs beside the restore's."""
    links = []

    def fail_second(source: str, target: str) -> None:
        if links:
            raise OSError(errno.ENOSPC, "No space left on device", target)
        links.append(target)
        real(source, target)

    real = _safeio.link_durably
    monkeypatch.setattr(_safeio, "link_durably", fail_second)
    with pytest.raises(OSError, match="No space left"):
        restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3), message(5)], now)
    monkeypatch.setattr(_safeio, "link_durably", real)
    directory = store._folder(USER, "Archive")
    assert os.listdir(os.path.join(directory, "new")) == []
    assert not os.path.exists(os.path.join(directory, "txmailhost-restoring.json"))
    done = restore_mailbox_sync(store, USER, "Archive", 4242, 10, [message(3), message(5)], now)
    assert (done.messages, done.kept_uids) == (2, True)
    assert [m.uid for m in now(now(store.open(USER, "Archive")).snapshot()).messages] == [3, 5]
