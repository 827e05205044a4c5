"""The Maildir quota lock and reservations (``store/quotalock.py``), across threads and processes.

What the e2e races (tests/e2e/test_maildir_quota_races.py) rely on, one property at a time: the
lock excludes another holder (another thread's open file, another process), a reservation
counts for every process until it is stored or released, and what a killed process held — its
lock, its reservations — is neither stuck nor counted afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.store.conftest import MSG, USER
from tests.support.syncpool import result
from txmailhost.store.interfaces import INBOX, MessageSource, QuotaExceeded
from txmailhost.store.maildir import MaildirStore, user_directory
from txmailhost.store.quotalock import QUOTA_DIRECTORY

OTHER = "bob@example.test"

# A process that takes the quota lock of USER, reserves 5000 octets for them, says so on its
# standard output and waits to be killed.
_HOLDER = """
import sys, time
from txmailhost.store.maildir import MaildirStore
store = MaildirStore(sys.argv[1])
with store.quota.locked([sys.argv[2]]):
    store.quota.reserve("spool/1", sys.argv[2], 5000)
    print("reserved", flush=True)
    if sys.argv[3] == "hold-lock":
        time.sleep(60)
time.sleep(60)
"""


def _holder(store: MaildirStore, mode: str) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, store.root, USER, mode], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"reserved\n"
    return child


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


def _reservations(store: MaildirStore, user: str = USER) -> list[str]:
    directory = os.path.join(user_directory(store.root, user), QUOTA_DIRECTORY)
    return sorted(name for name in os.listdir(directory) if name.startswith("r."))


def test_the_lock_held_by_another_thread_is_waited_for(store):
    entered = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def first() -> None:
        with store.quota.locked([USER]):
            entered.set()
            leave.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)
    threading.Timer(0.2, leave.set).start()
    with store.quota.locked([USER]):
        order.append("second in")
    thread.join(10)
    assert order == ["first out", "second in"]


def test_a_reservation_of_another_process_counts_until_it_is_killed_then_goes(store):
    child = _holder(store, "hold-reservation")
    try:
        with store.quota.locked([USER]):
            assert store.quota.reserved(USER) == 5000
            assert store._counted_sync(USER) == 5000
        assert len(_reservations(store)) == 1
    finally:
        _kill(child)
    with store.quota.locked([USER]):  # its lock died with it: not stuck
        assert store.quota.reserved(USER) == 0
    assert _reservations(store) == []  # the leftover removed, not merely skipped


def test_a_lock_held_by_a_killed_process_is_free_again(store):
    child = _holder(store, "hold-lock")
    got = threading.Event()

    def take() -> None:
        with store.quota.locked([USER]):
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert not got.wait(0.3), "the lock was taken while another process held it"
    _kill(child)
    assert got.wait(10), "the lock of a killed process stayed held"
    thread.join(10)


def test_an_append_within_quota_counts_what_is_reserved_for_mail_on_its_way(store):
    box = result(store.open(USER, INBOX))
    size = len(MSG)
    result(store.reserve("spool/a", {USER: 10 * size}, 9 * size))
    failure = None
    try:
        result(box.append_within_quota([(MessageSource.from_bytes(MSG), [], None)], 9 * size))
    except QuotaExceeded as e:
        failure = e
    assert failure is not None  # 9 reserved: the 10th fits only once they are given back
    store.release("spool/a")
    result(box.append_within_quota([(MessageSource.from_bytes(MSG), [], None)], 9 * size))
    assert result(store.usage(USER)) == size


def test_a_reservation_is_refused_at_the_limit_and_given_back_by_the_delivery(store, source):
    size = os.path.getsize(source)
    result(store.reserve(source, {USER: size}, size))  # below the limit: taken
    with pytest.raises(QuotaExceeded):
        result(store.reserve("spool/next", {USER: size}, size))  # holds the limit (reserved)
    assert _reservations(store) and store.quota.reserved(USER) == size
    store.deliver_named_sync([(source, "1700000000.Mtest", time.time(), [(USER, INBOX)])])
    assert _reservations(store) == []  # stored: counted by the index, no longer reserved
    with pytest.raises(QuotaExceeded):
        result(store.reserve("spool/next", {USER: size}, size))


@pytest.mark.parametrize("path", ["named", "file"])
def test_a_check_while_a_message_is_stored_counts_it_once(store, source, monkeypatch, path):
    """A check made the moment a delivery has indexed a message and not yet given its room
    back waits for that step to end, and counts the message once: it had counted it twice
    (stored and reserved) and refused mail that fits, a 452 the e2e race met under load."""
    size = os.path.getsize(source)
    limit = 2 * size - 1  # one stored message leaves room; counted twice, none
    result(store.reserve(source, {USER: limit}, size))
    release = store.quota.release
    checks: list[BaseException | None] = []

    def check() -> None:
        try:
            store._reserve_sync("spool/next", {USER: limit}, size)
            checks.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the assertion below
            checks.append(e)

    def releasing(key: str, user: str | None = None) -> None:
        if key == source and not threads:
            racer = threading.Thread(target=check)
            racer.start()
            racer.join(0.5)  # it can't get in while the delivery holds the user's lock
            assert not checks, checks
            threads.append(racer)
        release(key, user)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(store.quota, "release", releasing)
    if path == "named":
        store.deliver_named_sync([(source, "1700000000.Mtest", time.time(), [(USER, INBOX)])])
    else:
        result(store.deliver_file([(USER, INBOX)], source))
    for racer in threads:
        racer.join(10)
    assert checks == [None]
    assert store.quota.reserved(USER) == size  # the next message's, taken


def test_a_message_for_two_users_takes_both_locks_and_reserves_for_each_or_neither(store):
    store.provision_sync(OTHER)
    result(store.reserve("spool/b", {OTHER: 100}, 100))  # bob is full (reserved)
    with pytest.raises(QuotaExceeded):
        result(store.reserve("spool/both", {USER: 1000, OTHER: 100}, 50))
    assert _reservations(store, USER) == []  # nothing held for alice either
    result(store.reserve("spool/both", {USER: 1000, OTHER: 1000}, 50))
    assert store.quota.reserved(USER) == 50 and store.quota.reserved(OTHER) == 150
    store.release("spool/both")
    store.release("spool/both")  # twice: nothing more to give back
    assert store.quota.reserved(USER) == 0 and store.quota.reserved(OTHER) == 100


def test_a_reservation_that_fails_for_one_user_holds_nothing_for_the_others(store, monkeypatch):
    store.provision_sync(OTHER)
    reserve = store.quota.reserve

    def full_disk_for_bob(key: str, user: str, octets: int) -> None:
        if user == OTHER:
            raise OSError(28, "No space left on device")
        reserve(key, user, octets)

    monkeypatch.setattr(store.quota, "reserve", full_disk_for_bob)
    with pytest.raises(OSError):
        result(store.reserve("spool/c", {USER: 1000, OTHER: 1000}, 50))
    assert _reservations(store, USER) == [] and store.quota.reserved(USER) == 0


def test_an_append_within_quota_links_a_literal_staged_in_the_owners_tmp(store):
    """A large APPEND literal is written into the owner's ``tmp/`` (imap/server.py): it is
    linked into the mailbox, not copied, counted at its CRLF size (the client sent bare
    LFs), and left for its writer to remove."""
    staged = os.path.join(store.staging_directory(USER), "literal")
    body = b"Subject: big\n\n" + b"z" * 300_000 + b"\n"
    with open(staged, "wb") as f:
        f.write(body)
    box = result(store.open(USER, INBOX))
    source = MessageSource.from_path(staged, len(body))
    crlf = len(body) + body.count(b"\n")
    with pytest.raises(QuotaExceeded):
        result(box.append_within_quota([(source, [], None)], crlf - 1))
    _validity, (uid,) = result(box.append_within_quota([(source, [], None)], crlf))
    assert result(store.usage(USER)) == crlf
    (stored,) = result(box.messages([uid], header=False, content=True))
    assert stored.size == crlf
    assert os.path.exists(staged) and os.stat(staged).st_nlink == 2  # linked, and still ours
