"""``Deadlines``: the filters' answers still to come, each within the chain's time budget, all
watched by one reactor timer.

``Deferred.addTimeout`` gives every answer a timer of its own: a ``DelayedCall`` made, pushed
on the reactor's heap and cancelled again for each message a filter answers later, such as
the spam score from the scoring process (``spam/offload.py``). Counted under callgrind at
50 connections (docs/benchmarks-spam.rst), that timer was 0.05 M of the 0.6 M instructions
a message filtering cost the server. Every answer of a chain has the same budget, so the
deadlines come in the order the answers were asked for: a queue of them, oldest first,
and one timer set for the oldest still waiting say the same thing. An answer past its
deadline is cancelled and fails with ``twisted.internet.defer.TimeoutError``, as
``addTimeout`` makes it fail, at the same time on the reactor's clock.
"""

from __future__ import annotations

import collections
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure

T = TypeVar("T")


class _Watched:
    """One answer being waited for: its deadline, and whether it is past it."""

    __slots__ = ("deadline", "deferred", "timed_out")

    def __init__(self, deadline: float, deferred: Deferred[Any]) -> None:
        self.deadline = deadline
        self.deferred: Deferred[Any] | None = deferred  # None once it answered
        self.timed_out = False


class Deadlines:
    """Deferreds that must fire within ``timeout`` seconds of ``watch``. Reactor thread only."""

    def __init__(self, reactor: Any, timeout: float) -> None:
        self._reactor = reactor
        self.timeout = timeout
        self._waiting: collections.deque[_Watched] = collections.deque()  # oldest first
        self._timer: Any = None
        self._expiring = False  # a cancelled answer's callbacks may watch another one

    def watch(self, deferred: Deferred[T]) -> Deferred[T]:
        """``deferred``, cancelled and failing with ``TimeoutError`` if it hasn't fired
        ``timeout`` seconds from now (what ``deferred.addTimeout(timeout, reactor)`` does)."""
        watched = _Watched(self._reactor.seconds() + self.timeout, deferred)
        self._waiting.append(watched)
        deferred.addBoth(self._answered, watched)  # (at once, if it has fired already)
        if watched.deferred is not None and self._timer is None and not self._expiring:
            self._timer = self._reactor.callLater(self.timeout, self._expire)
        return deferred

    def _answered(self, result: Any, watched: _Watched) -> Any:
        watched.deferred = None
        waiting = self._waiting
        while waiting and waiting[0].deferred is None:  # answers come mostly in order
            waiting.popleft()
        if watched.timed_out and isinstance(result, Failure):
            result.trap(CancelledError)
            raise DeferredTimeout(self.timeout, "Deferred")
        return result

    def _expire(self) -> None:
        """The oldest deadline has come: what is past its own is cancelled, and the timer is
        set again for the next one still waiting."""
        self._timer = None
        now = self._reactor.seconds()
        waiting = self._waiting
        self._expiring = True
        try:
            while waiting:
                watched = waiting[0]
                if watched.deferred is None:
                    waiting.popleft()
                elif watched.deadline <= now:
                    waiting.popleft()
                    watched.timed_out = True
                    watched.deferred.cancel()  # its callbacks run now, and may watch more
                else:
                    self._timer = self._reactor.callLater(watched.deadline - now, self._expire)
                    return
        finally:
            self._expiring = False
