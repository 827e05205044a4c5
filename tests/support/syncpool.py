"""Run "thread pool" work synchronously so protocol tests over StringTransport stay deterministic.

``deferToThreadPool(reactor, pool, f)`` needs only ``reactor.callFromThread`` and
``pool.callInThreadWithCallback``; these fakes run both at once on the test's thread, so a
Deferred from the store or the accounts checker has already fired when the call returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.testing import MemoryReactorClock


class SyncReactor(MemoryReactorClock):
    """A MemoryReactorClock (for callLater/timeouts) whose callFromThread runs immediately."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class SyncThreadPool:
    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], None],
        f: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        try:
            result = f(*args, **kwargs)
        except BaseException:
            from twisted.python.failure import Failure

            onResult(False, Failure())
        else:
            onResult(True, result)


def result(d: Any) -> Any:
    """The value of an already-fired Deferred (the sync pool fires them at once); raises its
    failure."""
    out: list[Any] = []
    d.addBoth(out.append)
    (value,) = out
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value
