"""The local spool hand-off (delivery/local.py): records, recovery after a crash, the delivery
thread, and the readers' wait for pending mail (store/pending.py)."""

from __future__ import annotations

import os
import threading
import time
import zlib
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, capturedLogs, formatEvent

from tests.support.syncpool import SyncReactor, result
from txmailhost.delivery.agent import DeliveryAgent
from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.delivery.local import (
    XATTR,
    LocalDelivery,
    SpooledLocal,
    records_supported,
)
from txmailhost.store.maildir import MaildirStore
from txmailhost.store.pending import PendingDeliveries

ALICE = "alice@example.test"
BOB = "bob@example.test"
MSG = b"Return-Path: <x@remote.test>\r\nSubject: spooled\r\n\r\nbody\r\n"


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(str(tmp_path / "mail"), SyncReactor(), None)
    s.provision_sync(ALICE)
    s.provision_sync(BOB)
    return s


@pytest.fixture
def spool(tmp_path):
    directory = tmp_path / "spare"
    directory.mkdir()
    if not records_supported(str(directory)):
        pytest.skip("no extended attributes on this file system")
    return directory


def spooled(
    spool, name="f1", data=MSG, targets=((ALICE, "INBOX"),), queue_id="1A2B3C4D5E", crc=None
):
    path = spool / name
    path.write_bytes(data)
    item = SpooledLocal(
        str(path), 1_790_000_000, len(data), zlib.crc32(data) if crc is None else crc,
        tuple(targets), queue_id,
    )  # fmt: skip
    os.setxattr(path, XATTR, item.record())
    return item


def files(store, user, mailbox="INBOX"):
    directory = store.mailbox_directory(user, mailbox)
    return sorted(
        os.listdir(os.path.join(directory, "new")) + os.listdir(os.path.join(directory, "cur"))
    )


def delivery(store, spool, retired=None):
    return LocalDelivery(store, str(spool), SyncReactor(), (retired or []).append)


def test_record_round_trip_and_garbage():
    item = SpooledLocal("/p", 12, 10, 99, ((ALICE, "INBOX"), (BOB, "lists")))
    assert SpooledLocal.from_record("/p", item.record()) == item
    assert (
        len(SpooledLocal("/p", 1_790_000_000, 4320, 2**32 - 1, ((ALICE, "INBOX"),)).record()) < 60
    )
    for raw in (
        b"",
        b"{}",
        b"2\n1\n1\n1\nx",
        b"1\n1\n1\n1",
        b"1\nzz\n1\n1\nx",
        b"1\n1\n1\n1\n\xff",
    ):
        with pytest.raises(ValueError):
            SpooledLocal.from_record("/p", raw)


def test_a_record_without_options_is_the_version_1_record_octet_for_octet():
    """The everyday record is what an older server wrote (and reads): no version 2 cost."""
    item = SpooledLocal("/p", 0x6AB0C180, 0x10E0, 0xDEADBEEF, ((ALICE, "INBOX"), (BOB, "lists")),
                        junk=frozenset({BOB}), dsn={ALICE: RecipientOptions()})  # fmt: skip
    assert item.record() == (
        b"1\ndeadbeef\n10e0\n6ab0c180\nalice@example.test\nbob@example.test\tlists\tj"
    )


def test_version_2_record_keeps_the_senders_options_and_stays_inline():
    options = MessageOptions("BINARYMIME", smtputf8=True, ret="FULL", envid="a b+c=\u00e9",
                             requiretls=True)  # fmt: skip
    dsn = {
        ALICE: RecipientOptions(("SUCCESS", "FAILURE"), "rfc822;Al ice+x@example.test"),
        BOB: RecipientOptions(("NEVER",), f"rfc822;{BOB}"),
    }
    item = SpooledLocal("/p", 12, 10, 99, ((ALICE, "INBOX"), (BOB, "lists")),
                        junk=frozenset({BOB}), options=options, dsn=dsn)  # fmt: skip
    raw = item.record()
    assert raw.startswith(b"2\n") and b" " not in raw  # every value in xtext
    assert SpooledLocal.from_record("/p", raw) == item
    assert [r.dsn for r in item.recipients] == [dsn[ALICE], dsn[BOB]]
    # A message relayed by Postfix (8-bit, ORCPT of the address itself): still inline.
    relayed = SpooledLocal("/p", 1_790_000_000, 4320, 2**32 - 1, (("alice.smith@example.test", "INBOX"),),
                           options=MessageOptions("8BITMIME"),
                           dsn={"alice.smith@example.test": RecipientOptions(
                               (), "rfc822;alice.smith@example.test")})  # fmt: skip
    assert len(relayed.record()) < 60
    assert SpooledLocal.from_record("/p", relayed.record()) == relayed
    for raw in (b"2\n1\n1\n1\nZ\nalice@x", b"2\n1\n1\n1\n\nalice@x\t\tQ",
                b"2\n1\n1\n1\n\nalice@x\t\t\tnocolon", b"2\n1\n1\n1\n"):  # fmt: skip
        with pytest.raises(ValueError):
            SpooledLocal.from_record("/p", raw)


def test_a_version_1_record_an_older_server_left_is_delivered_after_the_upgrade(store, spool):
    path = spool / "old"
    path.write_bytes(MSG)
    record = b"1\n%x\n%x\n6ab0c180\nalice@example.test\nbob@example.test\tINBOX\tj" % (
        zlib.crc32(MSG), len(MSG))  # fmt: skip
    os.setxattr(path, XATTR, record)
    assert delivery(store, spool).recover_sync() == (1, 0)
    assert len(files(store, ALICE)) == 1 and len(files(store, BOB, "Junk")) == 1
    assert not path.exists()


def test_the_senders_options_reach_a_users_script_after_a_restart(store, spool):
    """A redirect made at recovery keeps what the sender asked (REQUIRETLS, DSN, ...)."""
    options = MessageOptions("8BITMIME", smtputf8=True, ret="HDRS", envid="q1", requiretls=True)
    dsn = RecipientOptions(("FAILURE", "DELAY"), "rfc822;someone@elsewhere.test")
    path = spool / "f1"
    path.write_bytes(MSG)
    item = SpooledLocal(str(path), 1_790_000_000, len(MSG), zlib.crc32(MSG), ((ALICE, "INBOX"),),
                        options=options, dsn={ALICE: dsn})  # fmt: skip
    os.setxattr(path, XATTR, item.record())
    scripts = AskedScripts()
    local = LocalDelivery(store, str(spool), SyncReactor(), [].append,
                          agent=DeliveryAgent(store, scripts))  # fmt: skip
    assert local.recover_sync() == (1, 0)
    assert scripts.asked == [(ALICE, {"options": options, "dsn": dsn})]


class AskedScripts:
    """Stands in for ``SieveStep``: keeps what it is told of the message's options."""

    def __init__(self) -> None:
        self.asked: list = []

    def decide_sync(self, user, path, names, junk=False, **asked):
        self.asked.append((user, asked))

    def send_sync(self, outgoing):
        assert outgoing == []


def test_intact_checks_size_and_crc(spool):
    assert spooled(spool, "a").intact()
    assert not spooled(spool, "b", crc=zlib.crc32(MSG) ^ 1).intact()
    short = spooled(spool, "c")
    with open(short.path, "r+b") as f:
        f.truncate(5)
    assert not short.intact()


def test_recovery_delivers_each_acknowledged_message_once(store, spool):
    item = spooled(spool, targets=((ALICE, "INBOX"), (BOB, "INBOX")))
    spooled(spool, "other", queue_id="FFFF0000AA")
    (spool / "spare-never-used").write_bytes(b"")
    local = delivery(store, spool)
    assert local.recover_sync() == (2, 0)
    assert len(files(store, ALICE)) == 2 and len(files(store, BOB)) == 1
    stored = os.path.join(store.mailbox_directory(BOB, "INBOX"), "new", files(store, BOB)[0])
    assert Path(stored).read_bytes() == MSG
    with pytest.raises(OSError):  # the record (it names every recipient) is gone from the copy
        os.getxattr(stored, XATTR)
    assert not os.path.exists(item.path)
    assert os.path.exists(spool / "spare-never-used")  # not ours to judge: the sweep's
    assert local.recover_sync() == (0, 0)
    assert len(files(store, ALICE)) == 2


def test_recovery_after_a_crash_between_link_and_cleanup_adds_no_copy(store, spool):
    item = spooled(spool)
    store.deliver_named_sync([item.delivery(DeliveryAgent(store))])
    (name,) = files(store, ALICE)
    # A client read it (new/ -> cur/ with \Seen) before the crash.
    directory = store.mailbox_directory(ALICE, "INBOX")
    os.rename(os.path.join(directory, "new", name), os.path.join(directory, "cur", name + ":2,S"))
    assert delivery(store, spool).recover_sync() == (1, 0)
    assert files(store, ALICE) == [name + ":2,S"]


def test_recovery_removes_unacknowledged_files(store, spool):
    spooled(spool, crc=1)  # written, not fsync'd: its content doesn't match
    assert delivery(store, spool).recover_sync() == (0, 1)
    assert files(store, ALICE) == []
    assert os.listdir(spool) == []


def test_names_derive_from_the_spool_name_and_the_index_knows_them(store, spool):
    item = spooled(spool, targets=((ALICE, "INBOX"), (ALICE, "Gone")))
    # The store's own fallback, without the agent (which would make these one copy).
    store.deliver_named_sync([(item.path, item.stem, item.arrival, list(item.targets))])
    names = files(store, ALICE)  # the vanished folder's copy went to INBOX
    assert names == [
        f"1790000000.Sf1R{n}.{names[0].split('.', 2)[2].split(',')[0]},S={len(MSG)},W={len(MSG)}"
        for n in (0, 1)
    ]
    mailbox = store._open_sync(ALICE, "INBOX")
    snapshot = mailbox._snapshot()
    assert [m.size for m in snapshot.messages] == [len(MSG), len(MSG)]


def test_delivery_thread_batches_and_retires(store, spool):
    retired: list[str] = []
    local = LocalDelivery(store, str(spool), SyncReactor(), retired.append)
    local.startService()
    try:
        items = [spooled(spool, f"f{n}", queue_id=f"QID{n:04d}") for n in range(5)]
        for item in items:
            local.accept(item)
        directory = store.mailbox_directory(ALICE, "INBOX")
        assert store.pending.wait(directory)  # readers wait for announced mail (and hurry it)
        assert len(files(store, ALICE)) == 5
        deadline = time.monotonic() + 5
        while len(retired) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(retired) == sorted(i.path for i in items)
    finally:
        stopped: list[object] = []
        local.stopService().addBoth(stopped.append)
        local._thread.join(5)
    assert not local._thread.is_alive()


def test_stop_delivers_what_was_accepted_first(store, spool):
    local = LocalDelivery(store, str(spool), SyncReactor(), [].append, linger=5)
    local.startService()
    local.accept(spooled(spool, "a", queue_id="AAAA000001"))
    local.accept(spooled(spool, "b", queue_id="BBBB000001"))  # lingers: the thread waits 5 s
    local.stopService()
    local._thread.join(5)
    assert not local._thread.is_alive()
    assert len(files(store, ALICE)) == 2


def test_a_failing_delivery_stays_spooled_and_is_retried(store, spool, monkeypatch):
    reactor = SyncReactor()
    retired: list[str] = []
    local = LocalDelivery(store, str(spool), reactor, retired.append)
    good = spooled(spool, "good", queue_id="GOOD000001")
    bad = spooled(spool, "bad", queue_id="BAD0000001")
    real = store.deliver_named_sync

    def flaky(batch, recovering=False):
        if any(path == bad.path for path, *_ in batch):
            raise OSError(5, "Input/output error")
        return real(batch, recovering)

    monkeypatch.setattr(store, "deliver_named_sync", flaky)
    local.accept(good)
    local.accept(bad)
    local._queue.clear()
    # The batch fails; one by one, the good message goes through and the bad one stays.
    assert local._deliver_sync([good, bad]) == [bad]
    assert retired == [good.path] and os.getxattr(bad.path, XATTR)
    assert store.pending.wait(store.mailbox_directory(ALICE, "INBOX"))  # settled: no hang
    local._defer([bad])
    monkeypatch.setattr(store, "deliver_named_sync", real)
    reactor.advance(local.retry_after)
    assert list(local._queue) == [bad]  # queued again, with its record intact


@pytest.mark.parametrize(
    ("error", "traceback"),
    [
        (OSError(28, "No space left on device"), False),
        (OSError(30, "Read-only file system"), False),
        (OSError(5, "Input/output error"), True),
    ],
)
def test_a_full_disk_is_one_warning_per_retry_not_a_traceback(store, spool, monkeypatch,
                                                               error, traceback):  # fmt: skip
    """The spool retries a stuck message every 30 s: on a full disk, each retry logged a
    critical event with its traceback."""
    local = LocalDelivery(store, str(spool), SyncReactor(), lambda path: None)
    item = spooled(spool, "stuck", queue_id="FULL000001")

    def full(batch, recovering=False):
        raise error

    monkeypatch.setattr(store, "deliver_named_sync", full)
    with capturedLogs() as events:
        assert local._deliver_sync([item]) == [item]
    [event] = [e for e in events if "FULL000001" in formatEvent(e)]
    assert ("log_failure" in event) is traceback
    assert event["log_level"] is (LogLevel.critical if traceback else LogLevel.warn)
    if not traceback:
        assert error.strerror in formatEvent(event)


def test_pending_wait_blocks_until_settled_and_hurries():
    pending = PendingDeliveries(timeout=5)
    hurried: list[bool] = []
    pending.hurry = lambda: hurried.append(True)
    assert pending.wait("/m") and hurried == []
    pending.announce(["/m", "/m"])
    done: list[bool] = []
    waiter = threading.Thread(target=lambda: done.append(pending.wait("/m")))
    waiter.start()
    deadline = time.monotonic() + 5
    while not hurried and time.monotonic() < deadline:  # a loaded CI may start it late
        time.sleep(0.01)
    assert done == [] and hurried == [True]
    pending.settle(["/m"])
    time.sleep(0.05)
    assert done == []  # one of two still pending
    pending.settle(["/m"])
    waiter.join(5)
    assert done == [True]
    pending.timeout = 0.01
    pending.announce(["/x"])
    assert pending.wait("/x") is False


def test_stop_service_waits_for_the_queue_to_drain(store, spool):
    reactor = SyncReactor()
    local = LocalDelivery(store, str(spool), reactor, [].append, linger=0)
    fired: list[object] = []
    d = local.stopService()
    assert isinstance(d, Deferred)
    d.addBoth(fired.append)
    assert fired == [None]


def test_the_record_keeps_the_folder_asked_for_and_the_agent_picks_it_after_the_250(store, spool):
    """``alice+lists@`` was accepted while alice had no folder of that name; she made one
    (``Lists``) before the copy was made: it goes there, the case of the address ignored."""
    item = spooled(spool, targets=((ALICE, "lists"),))
    store._create_sync(ALICE, "Lists")
    assert delivery(store, spool).recover_sync() == (1, 0)
    assert len(files(store, ALICE, "Lists")) == 1 and files(store, ALICE) == []
    assert SpooledLocal.from_record(item.path, item.record()).targets == ((ALICE, "lists"),)


def test_a_copy_a_filter_judged_spam_goes_to_junk_and_the_others_to_their_inbox(store, spool):
    item = spooled(spool, targets=((ALICE, "INBOX"), (BOB, "INBOX")))
    item = SpooledLocal(item.path, item.arrival, item.size, item.crc, item.targets,
                        junk=frozenset({ALICE}))  # fmt: skip
    os.setxattr(item.path, XATTR, item.record())
    assert SpooledLocal.from_record(item.path, item.record()).junk == {ALICE}
    assert delivery(store, spool).recover_sync() == (1, 0)
    assert len(files(store, ALICE, "Junk")) == 1 and files(store, ALICE) == []
    assert len(files(store, BOB)) == 1 and files(store, BOB, "Junk") == []


class FlaggingScripts:
    """Stands in for ``SieveStep``: alice's script files a \\Seen copy into Work and keeps one
    with $Label1 (what ``imap4flags`` decides; the interpreter is tested in tests/sieve)."""

    def decide_sync(self, user, path, names, junk=False, **asked):
        from txmailhost.sieve.delivery import Decision

        if user != ALICE:
            return None
        return Decision(
            ["INBOX", "Work"], flags={"Work": frozenset({"\\Seen"}), "INBOX": {"$Label1"}}
        )

    def send_sync(self, outgoing):
        assert outgoing == []


def test_flags_a_script_gives_copies_reach_the_store_through_the_spool(store, spool):
    result(store.create_mailbox(ALICE, "Work"))
    spooled(spool, targets=((ALICE, "INBOX"), (BOB, "INBOX")))
    local = LocalDelivery(
        store, str(spool), SyncReactor(), [].append, agent=DeliveryAgent(store, FlaggingScripts())
    )
    assert local.recover_sync() == (1, 0)
    (seen,) = files(store, ALICE, "Work")
    assert seen.endswith(":2,S")
    for user, mailbox, flags in (
        (ALICE, "Work", {"\\Seen"}),
        (ALICE, "INBOX", {"$Label1"}),
        (BOB, "INBOX", set()),
    ):
        box = result(store.open(user, mailbox))
        assert [m.flags for m in result(box.snapshot()).messages] == [flags]


class RefilingScripts:
    """Stands in for ``SieveStep``: alice's script discards the message, bob's files it into
    Work."""

    def decide_sync(self, user, path, names, junk=False, **asked):
        from txmailhost.sieve.delivery import Decision

        return Decision([] if user == ALICE else ["Work"])

    def send_sync(self, outgoing):
        assert outgoing == []


@pytest.mark.parametrize("recovering", [False, True])
def test_the_log_names_the_mailboxes_the_scripts_chose_not_the_ones_asked_for(
    store, spool, recovering
):
    """The spool's thread logged the record's wishes: a copy alice's script discarded and
    one bob's filed into Work were both logged as delivered to INBOX."""
    result(store.create_mailbox(BOB, "Work"))
    item = spooled(spool, targets=((ALICE, "INBOX"), (BOB, "INBOX")), queue_id="SIEVE00001")
    local = LocalDelivery(
        store, str(spool), SyncReactor(), [].append, agent=DeliveryAgent(store, RefilingScripts())
    )
    with capturedLogs() as events:
        if recovering:
            assert local.recover_sync() == (1, 0)
        else:
            assert local._deliver_sync([item]) == []
    mark = "after a restart" if recovering else "SIEVE00001"  # a record names no queue id
    [line] = [formatEvent(e) for e in events if mark in formatEvent(e)]
    assert f"to {BOB}/Work" in line and "INBOX" not in line and ALICE not in line
    assert files(store, ALICE) == [] and len(files(store, BOB, "Work")) == 1
    alone = spooled(spool, "f2", targets=((ALICE, "INBOX"),), queue_id="SIEVE00002")
    with capturedLogs() as events:
        assert local._deliver_sync([alone]) == []
    [line] = [formatEvent(e) for e in events if "SIEVE00002" in formatEvent(e)]
    assert line.endswith("to no mailbox (discarded by Sieve)")
