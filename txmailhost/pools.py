"""Thread pools that start and stop with the application, and ``Lane``: a cheaper hand-off.

The server runs its blocking work (fsyncs, SQLite, scrypt, the spares' file creation, filters)
in pools of its own (DESIGN invariant 3); each is a child service of the server's
``MultiService`` through this, so it starts after the privilege drop and stops with the
reactor. Lives apart from ``service.py`` so ``delivery/`` can use it without importing the
wiring that imports it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger()

T = TypeVar("T")


class ThreadPoolService(Service):
    """Starts and stops a ``ThreadPool`` with the application.

    ``after_stop`` holds what must close once no thread of the pool can use it any more (the
    store's database connections): called in order after the pool's threads have ended.

    ``abandon_after`` (a ``Lane`` only) is for work whose asker is gone by the time the pool
    stops, the content filters' checks: see ``Lane.stop``. Then ``after_stop`` runs once the
    threads have ended or the wait is over, whichever is first."""

    def __init__(self, pool: ThreadPool | Lane, abandon_after: float | None = None) -> None:
        if abandon_after is not None and not isinstance(pool, Lane):
            raise TypeError("abandon_after needs a Lane")
        self.pool = pool
        self.abandon_after = abandon_after
        self.after_stop: list[Callable[[], object]] = []

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        if self.abandon_after is not None:
            assert isinstance(self.pool, Lane)
            self.pool.stop(abandon_after=self.abandon_after)
        else:
            self.pool.stop()  # joins the threads: nothing runs in the pool after this
        for close in self.after_stop:
            try:
                close()
            except Exception:
                log.failure("closing {what} at shutdown failed", what=close)


class Lane:
    """Worker threads on one deque, for the hand-offs every message makes (the content
    filters, the fsync before the 250), with the ``ThreadPool`` methods the rest of the code
    uses (``callInThreadWithCallback``, ``callInThread``, ``start``, ``stop``).

    Why not a ``ThreadPool``: each of its trips goes through the team's coordinator and a
    queue per worker (two locks, a futex wake while the reactor holds the GIL), and each
    answer wakes the reactor on its own. Measured at 50 SMTP connections, that was a tenth
    of the reactor's time per message. Here handing work over is a deque append, plus a
    wake-up only when a thread sleeps (none does while the lane is busy); answers that come
    while the reactor has not yet collected the last ones ride along with them (``defer``):
    one wake-up of the reactor for a batch of them.

    ``maxthreads`` threads at most, started when work finds none idle; they end with
    ``stop``, which runs what is queued first (as ``ThreadPool.stop`` does).
    """

    def __init__(self, reactor: Any, maxthreads: int, name: str) -> None:
        self.name = name
        self.max = maxthreads
        self._reactor = reactor
        self._jobs: collections.deque[tuple[Callable[..., object], tuple, dict]] = (
            collections.deque()
        )
        self._wake = threading.Condition(threading.Lock())
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._running = False
        self._stopping = False
        self.working: list[object] = []  # one entry per thread running a job (metrics)
        self._answers: list[tuple[Deferred[Any], bool, Any]] = []
        self._answers_lock = threading.Lock()
        self._collecting = False  # a call to ``_collect`` is on its way to the reactor

    def backlog(self) -> int:
        """Jobs waiting for a thread (the metrics' queue depth)."""
        return len(self._jobs)

    def start(self) -> None:
        with self._wake:
            self._running = True
            self._stopping = False
            if self._jobs:  # work handed over before the start
                self._spawn(len(self._jobs))

    def stop(self, abandon_after: float | None = None) -> None:
        """Run what is queued, then end and join the threads.

        With ``abandon_after`` (seconds), for jobs nobody waits for once the server stops (a
        content filter's check, whose SMTP session the shutdown's grace has already closed):
        what is queued is dropped, its Deferreds never fired, and threads still busy after
        that long are left to end on their own (daemon threads; the process doesn't wait).
        Running them all first made a SIGTERM wait for every queued check in turn: 30
        messages on checks of 20 s each kept ``twistd`` up 78 s."""
        with self._wake:
            self._stopping = True
            if abandon_after is not None:
                self._jobs.clear()
            self._wake.notify_all()
            threads, self._threads = self._threads, []
        deadline = None if abandon_after is None else time.monotonic() + abandon_after
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        left = sum(thread.is_alive() for thread in threads)
        if left:
            log.info("{lane}: stopped; {n} busy thread(s) left to end on their own",
                     lane=self.name, n=left)  # fmt: skip
        self._running = False
        self._idle = 0  # those woken by notify_all were never taken off it

    def _spawn(self, wanted: int = 1) -> None:
        """Called with ``_wake`` held."""
        while wanted > 0 and len(self._threads) < self.max:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
            wanted -= 1

    def _put(self, job: tuple[Callable[..., object], tuple, dict]) -> None:
        with self._wake:
            self._jobs.append(job)
            if not self._running:
                return  # ``start`` picks it up
            if self._idle:
                # This sleeper is spoken for now, not when it wakes: another job handed over
                # before it does must wake another one, or start one, not find the same
                # sleeper still counted and wait for some thread to end its job (a message
                # behind a check holding its thread for 20 s waited those 20 s).
                self._idle -= 1
                self._wake.notify()
            elif len(self._threads) < self.max:
                self._spawn()

    def _work(self) -> None:
        jobs, wake = self._jobs, self._wake
        while True:
            with wake:
                while not jobs:
                    if self._stopping:
                        return
                    self._idle += 1
                    wake.wait()  # a _put took it off _idle (or stop's notify_all)
                work, args, kwargs = jobs.popleft()
            self.working.append(work)
            try:
                work(*args, **kwargs)
            except BaseException:
                log.failure("{lane}: a job failed", lane=self.name)
            finally:
                self.working.remove(work)

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], object] | None, func: Callable[..., Any],
        *args: Any, **kwargs: Any,
    ) -> None:  # fmt: skip
        """As ``ThreadPool.callInThreadWithCallback``: ``onResult(ok, result)`` is called in
        the worker thread (``deferToThreadPool`` passes one that goes to the reactor)."""

        def job() -> None:
            try:
                result = func(*args, **kwargs)
            except BaseException:
                if onResult is None:
                    raise
                onResult(False, Failure())
                return
            if onResult is not None:
                onResult(True, result)

        self._put((job, (), {}))

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callInThreadWithCallback(None, func, *args, **kwargs)

    def defer(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """``func(*args, **kwargs)`` in a thread of the lane; its result (or its failure) in
        the returned Deferred, fired on the reactor thread. Cancelling the Deferred only stops
        waiting: ``func`` runs to its end, its answer ignored."""
        answer: Deferred[T] = Deferred()

        def job() -> None:
            try:
                result: Any = func(*args, **kwargs)
                ok = True
            except BaseException:
                result, ok = Failure(), False
            with self._answers_lock:
                self._answers.append((answer, ok, result))
                if self._collecting:
                    return  # the reactor collects this one with the others
                self._collecting = True
            self._reactor.callFromThread(self._collect)

        self._put((job, (), {}))
        return answer

    def _collect(self) -> None:
        """On the reactor thread: fire every answer in so far."""
        with self._answers_lock:
            answers, self._answers = self._answers, []
            self._collecting = False
        for answer, ok, result in answers:
            if ok:
                answer.callback(result)
            else:
                answer.errback(result)


def run_in(reactor: Any, pool: Any, func: Callable[..., T], *args: Any) -> Deferred[T]:
    """``deferToThreadPool``, or ``Lane.defer`` when ``pool`` is a ``Lane``: the callers on
    the path of every message take either (tests and embedders pass a ``ThreadPool``)."""
    if isinstance(pool, Lane):
        return pool.defer(func, *args)
    return threads.deferToThreadPool(reactor, pool, func, *args)
