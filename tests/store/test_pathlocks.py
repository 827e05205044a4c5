"""The per-file lock table the folder index and the full-text index queue their writers on."""

from __future__ import annotations

import threading

from txmailhost.store import pathlocks
from txmailhost.store.pathlocks import PathLocks


def test_writers_of_one_file_share_one_lock_and_other_files_have_their_own():
    locks = PathLocks(threading.Lock)
    assert locks("/mail/a/index") is locks("/mail/a/index")
    assert locks("/mail/a/index") is not locks("/mail/b/index")


def test_a_writer_holding_a_file_keeps_another_thread_out_until_it_is_done():
    locks = PathLocks(threading.RLock)
    entered = threading.Event()
    with locks("/mail/a/index"), locks("/mail/a/index"):  # reentrant, as the index needs
        other = threading.Thread(target=lambda: (locks("/mail/a/index").acquire(), entered.set()))
        other.start()
        assert not entered.wait(0.2)
    assert entered.wait(30)
    other.join()


def test_the_table_starts_again_past_its_limit(monkeypatch):
    monkeypatch.setattr(pathlocks, "LIMIT", 3)
    locks = PathLocks(threading.Lock)
    first = locks("/mail/0")
    for n in range(1, 5):
        locks(f"/mail/{n}")
    assert locks("/mail/0") is not first  # forgotten: a bounded table, not one lock per file ever
