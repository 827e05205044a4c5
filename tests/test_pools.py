"""``ThreadPoolService``: the pool lives with the application; what its threads use closes after
them. ``Lane``: the cheaper hand-off of every message's filters and fsync."""

from __future__ import annotations

import threading
import time

from twisted.internet.defer import CancelledError
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from txmailhost.pools import Lane, ThreadPoolService


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


class _QueuedReactor:
    """``callFromThread`` from any thread; the calls run when the test says (``run``)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def callFromThread(self, f, *args, **kwargs) -> None:  # noqa: N802 - Twisted's name
        with self._lock:
            self.calls.append((f, args, kwargs))

    def run(self) -> int:
        with self._lock:
            calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)
        return len(calls)


def test_lane_answers_arrive_on_the_reactor_in_one_wake_up_while_it_is_busy():
    reactor = _QueuedReactor()
    lane = Lane(reactor, 3, "test-lane")
    lane.start()
    answers = [lane.defer(lambda n=n: n * n) for n in range(20)]
    lane.stop()  # every job has run: none was collected, the reactor never ran
    assert not any(answer.called for answer in answers)
    assert reactor.run() == 1  # one wake-up of the reactor for all twenty
    assert [answer.result for answer in answers] == [n * n for n in range(20)]


def test_lane_a_failing_job_fails_its_deferred_with_the_error():
    reactor = _QueuedReactor()
    lane = Lane(reactor, 1, "test-lane")
    lane.start()

    def broken() -> None:
        raise OSError("disk gone")

    failed = lane.defer(broken)
    fine = lane.defer(lambda: "ok")
    lane.stop()
    reactor.run()
    errors: list[BaseException] = []
    failed.addErrback(lambda f: errors.append(f.value))
    assert isinstance(errors[0], OSError) and str(errors[0]) == "disk gone"
    assert fine.result == "ok"


def test_lane_never_runs_more_threads_than_its_limit_and_stop_runs_what_is_queued():
    reactor = _QueuedReactor()
    lane = Lane(reactor, 2, "test-lane")
    lane.start()
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def job() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    answers = [lane.defer(job) for _ in range(6)]
    threading.Timer(0.2, release.set).start()
    lane.stop()
    reactor.run()
    assert most[0] == 2
    assert all(answer.called for answer in answers)


def test_lane_work_given_before_start_runs_once_started():
    reactor = _QueuedReactor()
    lane = Lane(reactor, 2, "test-lane")
    early = lane.defer(lambda: "early")
    lane.start()
    lane.stop()
    reactor.run()
    assert early.result == "early"


def test_lane_takes_deferToThreadPool_and_a_cancelled_wait_ignores_the_late_answer():
    reactor = _QueuedReactor()
    lane = Lane(reactor, 1, "test-lane")
    lane.start()
    through_pool = deferToThreadPool(reactor, lane, lambda: "pooled")
    release = threading.Event()
    slow = lane.defer(lambda: release.wait(5) and "late")
    slow.cancel()
    slow.addErrback(lambda f: f.trap(CancelledError))
    release.set()
    lane.stop()
    reactor.run()
    assert through_pool.result == "pooled"
    assert slow.result is CancelledError  # trapped; "late" was dropped, and no error raised


def test_lane_jobs_handed_over_together_each_get_a_thread_while_others_are_busy():
    """One thread busy for long (a check waiting on a silent DNS server), one asleep: two
    jobs handed over before the sleeper wakes must get a thread each (the sleeper, and a new
    one). The sleeper used to be counted idle until it woke, so the second job found it
    still there, woke nobody and started nobody, and waited for the busy thread's end."""
    import sys

    reactor = _QueuedReactor()
    lane = Lane(reactor, 3, "test-lane")
    lane.start()
    busy, held, quick = threading.Event(), threading.Event(), threading.Event()
    lane.callInThread(busy.wait, 10)
    warm = threading.Event()
    lane.callInThread(warm.set)  # a second thread, which then sleeps
    assert warm.wait(5)
    deadline = time.monotonic() + 5
    while lane._idle != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # the two hand-overs before the sleeper can run
    try:
        lane.callInThread(held.wait, 10)
        lane.callInThread(quick.set)
    finally:
        sys.setswitchinterval(switch)
    try:
        assert quick.wait(5), "the second job waited for a thread to end"
    finally:
        busy.set()
        held.set()
        lane.stop()


def test_lane_stop_abandoning_drops_the_queued_and_leaves_the_busy():
    """The filters' lane at shutdown: nobody waits for a check any more, so what is queued is
    dropped and a thread held by a long check doesn't hold up the stop."""
    import pytest

    reactor = _QueuedReactor()
    lane = Lane(reactor, 1, "test-lane")
    lane.start()
    release, started = threading.Event(), threading.Event()
    lane.callInThread(lambda: (started.set(), release.wait(30)))
    assert started.wait(5)
    queued = lane.defer(lambda: "ran")
    began = time.monotonic()
    lane.stop(abandon_after=0.2)
    assert time.monotonic() - began < 5  # not the 30 s the busy job would take
    release.set()
    time.sleep(0.1)
    reactor.run()
    assert not queued.called and lane.backlog() == 0
    with pytest.raises(TypeError):
        ThreadPoolService(ThreadPool(), abandon_after=1.0)


def test_the_service_passes_abandon_after_and_closes_after_the_wait():
    lane = Lane(_QueuedReactor(), 1, "test-lane")
    service = ThreadPoolService(lane, abandon_after=0.1)
    closed: list[str] = []
    service.after_stop.append(lambda: closed.append("closed"))
    service.startService()
    release, started = threading.Event(), threading.Event()
    lane.callInThread(lambda: (started.set(), release.wait(30)))
    assert started.wait(5)
    began = time.monotonic()
    service.stopService()
    assert time.monotonic() - began < 5 and closed == ["closed"]
    release.set()
