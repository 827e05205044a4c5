"""Sort keys: derived once per message, kept in the store, served from memory after."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from txmailhost.store.interfaces import MessageSource
from txmailhost.store.memory import MemoryStore
from txmailhost.web.sortkeys import SORT_KEYS, SortKeys, sort_key

USER = "alice@example.test"


def _run(coroutine) -> object:
    results: list[object] = []
    Deferred.fromCoroutine(coroutine).addBoth(results.append)
    [result] = results
    if isinstance(result, Exception) or hasattr(result, "raiseException"):
        result.raiseException()
    return result


def _inbox(subjects: list[str]):
    store = MemoryStore()
    store.provision(USER)
    mailbox = _run(_open(store))
    for subject in subjects:
        message = f"From: Zed <z@example.test>\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
        mailbox.append(MessageSource.from_bytes(message), [], None)
    return mailbox


async def _open(store):
    return await store.open(USER, "INBOX")


def test_keys_fold_case_and_drop_reply_prefixes():
    assert sort_key(b"From: =?utf-8?q?=C3=89mile?= <e@x>\r\nSubject: Re: FWD: Hello") == (
        "\u00e9mile\0hello".encode()
    )
    assert sort_key(b"Subject: x") == b"\0x" and sort_key(None) == b"\0"


def test_keys_are_derived_once_then_read_from_the_store_and_memory():
    mailbox = _inbox(["b", "a"])
    reads: list[int] = []
    original = mailbox.messages

    def counting(uids, header=False, content=False):
        reads.extend(uids)
        return original(uids, header, content)

    mailbox.messages = counting
    cache = SortKeys()
    keys = _run(cache.of(mailbox, 1, [1, 2], lambda f, *a: succeed(f(*a))))
    assert keys == {1: b"zed\0b", 2: b"zed\0a"} and reads == [1, 2]
    assert _run(_derived(mailbox)) == keys  # kept in the store for the next process

    _run(cache.of(mailbox, 1, [1, 2], lambda f, *a: succeed(f(*a))))
    assert reads == [1, 2]  # from memory
    _run(SortKeys().of(mailbox, 1, [1, 2], lambda f, *a: succeed(f(*a))))
    assert reads == [1, 2]  # a new cache finds them in the store


async def _derived(mailbox):
    return await mailbox.derived([1, 2], SORT_KEYS)


def test_the_cache_is_bounded_least_recently_used_first():
    mailbox = _inbox(["a", "b", "c"])
    asked: list[int] = []
    original = mailbox.derived

    def counting(uids, name):
        asked.append(len(uids))
        return original(uids, name)

    mailbox.derived = counting
    cache = SortKeys(max_entries=4)  # room for one folder of three
    same_thread = lambda f, *a: succeed(f(*a))  # noqa: E731
    for uidvalidity in (1, 2):
        _run(cache.of(mailbox, uidvalidity, [1, 2, 3], same_thread))
    assert len(asked) == 2
    _run(cache.of(mailbox, 2, [1, 2, 3], same_thread))  # the most recent: still in memory
    assert len(asked) == 2
    _run(cache.of(mailbox, 1, [1, 2, 3], same_thread))  # dropped: asked of the store again
    assert len(asked) == 3
