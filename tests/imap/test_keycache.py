"""Sort keys kept between sessions (``imap/keycache.py``): found by MAILBOXID and UIDVALIDITY,
bounded, pruned of expunged messages (a later session's SORT and THREAD: test_sort.py); and
THREAD's trees taken apart once rendered."""

from __future__ import annotations

import gc
from array import array

import pytest

from txmailhost.imap import thread, threadcache
from txmailhost.imap.headerkeys import derive
from txmailhost.imap.keycache import PRUNE_SLACK, SortCaches, SortKeyCache
from txmailhost.imap.session import SelectedMailbox


def view(mailboxid: str | None, uids: list[int], uidvalidity: int = 7) -> SelectedMailbox:
    return SelectedMailbox(
        None, "INBOX", False, array("I", uids), uidvalidity, max(uids, default=0) + 1, 1,
        mailboxid=mailboxid,
    )  # fmt: skip


def fill(caches: SortCaches, uids: range) -> None:
    for uid in uids:
        caches.sent[uid] = float(uid)


def test_the_same_mailbox_gets_the_same_caches_and_another_its_own():
    cache = SortKeyCache()
    first = cache.of(view("Fa", [1, 2]))
    assert cache.of(view("Fa", [1, 2])) is first
    assert cache.of(view("Fb", [1, 2])) is not first
    # UIDVALIDITY changed (the UIDs name other messages now): other caches
    assert cache.of(view("Fa", [1, 2], uidvalidity=8)) is not first


@pytest.mark.parametrize(("mailboxid", "limit"), [(None, 100), ("", 100), ("Fa", 0)])
def test_without_a_mailboxid_or_with_keeping_off_every_session_has_its_own(mailboxid, limit):
    cache = SortKeyCache(limit)
    first = cache.of(view(mailboxid, [1]))
    fill(first, range(1, 2))
    first.loaded()
    assert cache.of(view(mailboxid, [1])) is not first
    assert cache.used == 0


def test_the_least_recently_sorted_mailbox_goes_first_past_the_limit():
    cache = SortKeyCache(limit=250)
    boxes = {name: view(name, list(range(1, 101))) for name in ("Fa", "Fb", "Fc")}
    kept = {}
    for name in ("Fa", "Fb"):
        kept[name] = cache.of(boxes[name])
        fill(kept[name], range(1, 101))
        kept[name].loaded()
    assert cache.used == 200
    assert cache.of(boxes["Fa"]) is kept["Fa"]  # Fa used again: Fb is now the oldest
    kept["Fc"] = cache.of(boxes["Fc"])
    fill(kept["Fc"], range(1, 101))
    kept["Fc"].loaded()
    assert cache.used == 200
    assert cache.of(boxes["Fa"]) is kept["Fa"]
    assert cache.of(boxes["Fc"]) is kept["Fc"]
    assert cache.of(boxes["Fb"]) is not kept["Fb"]
    # a session still sorting with Fb's evicted keys loads more: counted nowhere
    fill(kept["Fb"], range(101, 151))
    kept["Fb"].loaded()
    assert cache.used == 200


def test_a_mailbox_larger_than_the_limit_is_not_kept():
    cache = SortKeyCache(limit=50)
    big = view("Fa", list(range(1, 101)))
    caches = cache.of(big)
    fill(caches, range(1, 101))
    caches.loaded()
    assert cache.used == 0
    assert cache.of(big) is not caches


def test_expunged_messages_keys_are_dropped_once_they_outnumber_twice_the_mailbox():
    cache = SortKeyCache()
    uids = list(range(1, PRUNE_SLACK + 1))
    caches = cache.of(view("Fa", uids))
    fill(caches, range(1, PRUNE_SLACK + 1))
    caches.keys[1] = derive(b"Subject: one\r\n\r\n")
    caches.loaded()
    assert cache.of(view("Fa", [1, 2])) is caches  # 1,001 kept for 2 messages: not yet
    assert caches.size == PRUNE_SLACK + 1
    fill(caches, range(PRUNE_SLACK + 1, PRUNE_SLACK + 10))
    caches.loaded()
    assert cache.of(view("Fa", [1, 2])) is caches
    assert set(caches.sent) == {1, 2}
    assert set(caches.keys) == {1}
    assert cache.used == 3


def test_thread_trees_hold_no_cycles():
    """Parent and child referred to each other: without parent links, the nodes are freed
    without the cyclic collector (which otherwise walked 10,000 of them for every THREAD of
    a large mailbox)."""
    messages = []
    for n in range(1, 301):
        refs = f"References: <{n - 1}@x>\r\n" if n % 3 else ""
        keys = derive(f"Message-ID: <{n}@x>\r\n{refs}Subject: s{n % 7}\r\n\r\n".encode())
        messages.append(thread.ThreadMessage(n, n, float(n), keys))
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for algorithm in (thread.references, thread.ordered_subject):
            rendered = thread.render(algorithm(messages))
            assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
    assert rendered.startswith(b"(")


def numbers(*values: int) -> array:
    return array("I", values)


def test_a_kept_thread_answer_is_given_only_for_the_same_messages_and_numbers(monkeypatch):
    monkeypatch.setattr(threadcache, "MIN_MESSAGES", 0)
    kept = threadcache.KeptThreads()
    kept.put("box", numbers(1, 2, 3), numbers(4, 7, 9), b"(4 7)(9)")
    assert kept.get("box", numbers(1, 2, 3), numbers(4, 7, 9)) == b"(4 7)(9)"
    assert kept.get("box", numbers(1, 2, 3), numbers(4, 7, 10)) is None  # other messages
    assert kept.get("box", numbers(1, 2, 4), numbers(4, 7, 9)) is None  # other numbers
    assert kept.get("other", numbers(1, 2, 3), numbers(4, 7, 9)) is None


def test_kept_thread_answers_are_bounded_least_recently_used_first(monkeypatch):
    monkeypatch.setattr(threadcache, "MIN_MESSAGES", 2)
    kept = threadcache.KeptThreads(budget=100)
    one = numbers(1, 2)  # 16 octets of arrays, 34 with a 18-octet answer
    kept.put("a", one, one, b"(1 2)" + b" " * 13)
    kept.put("b", one, one, b"(1 2)" + b" " * 13)
    assert kept.get("a", one, one) is not None  # b is now the least recently used
    kept.put("c", one, one, b"(1 2)" + b" " * 13)
    kept.put("d", one, one, b"(1 2)" + b" " * 13)
    assert kept.used <= 100
    assert kept.get("b", one, one) is None and kept.get("a", one, one) is None
    assert kept.get("c", one, one) is not None and kept.get("d", one, one) is not None
    kept.put("small", numbers(1), numbers(1), b"(1)")  # fewer than MIN_MESSAGES: not kept
    assert kept.get("small", numbers(1), numbers(1)) is None
    kept.put("huge", one, one, b"x" * 200)  # over the budget alone: not kept
    assert kept.get("huge", one, one) is None and kept.get("d", one, one) is not None
