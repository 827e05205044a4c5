"""``ThreadPoolService``: the pool lives with the application; what its threads use closes after them."""

from __future__ import annotations

import threading

from twisted.python.threadpool import ThreadPool

from txmailhost.pools import ThreadPoolService


def test_after_stop_runs_once_the_threads_have_ended_in_order():
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-pool")
    service = ThreadPoolService(pool)
    seen: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def busy() -> None:
        started.set()
        release.wait(5)
        seen.append("work done")

    service.after_stop.append(lambda: seen.append("first closed"))
    service.after_stop.append(lambda: seen.append("second closed"))
    service.startService()
    pool.callInThread(busy)
    assert started.wait(5)
    threading.Timer(0.2, release.set).start()
    service.stopService()
    assert seen == ["work done", "first closed", "second closed"]


def test_a_failing_close_is_logged_and_the_next_one_still_runs():
    service = ThreadPoolService(ThreadPool(minthreads=0, maxthreads=1))
    closed: list[str] = []

    def broken() -> None:
        raise OSError("already gone")

    service.after_stop.extend([broken, lambda: closed.append("next")])
    service.startService()
    service.stopService()
    assert closed == ["next"]
