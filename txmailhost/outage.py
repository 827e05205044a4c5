"""One outage, a few log lines: for pollers that reach a shared service every second or so.

The PostgreSQL queue claims work every ``poll_interval`` and the shared login failures are
exchanged every second; while the database is down (restarting, failing over, its network
gone) each round fails the same way. Logged as a traceback each time, a one-minute outage
was some sixty tracebacks a poller, burying whatever else the log held. :class:`OutageLog`
logs the first failure whole (its traceback says where and why), counts the ones after it,
sums them up in one line at most every ``interval`` seconds while the outage lasts, and
says when the service answers again, with how long it was gone: what an operator reading
the log needs, and a line to alert on.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.failure import Failure


class OutageLog:
    """The failures of one poller's rounds (``what``: "claiming from the shared queue")."""

    def __init__(
        self, logger: Logger, clock: Callable[[], float], what: str, interval: float = 60.0
    ) -> None:
        self._log = logger
        self._clock = clock
        self.what = what
        self.interval = interval
        self.since: float | None = None  # when the outage began; None while all is well
        self._failures = 0  # in this outage
        self._next_summary = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, failure: Failure) -> None:
        """A round failed: logged whole if it is the first of an outage, else counted (and
        summed up once ``interval`` has passed since the last line)."""
        now = self._clock()
        self._failures += 1
        if self.since is None:
            self.since = now
            self._next_summary = now + self.interval
            self._log.failure(
                "{what} failed; later failures are summed up every {interval:.0f} s until it"
                " works again",
                failure,
                what=self.what,
                interval=self.interval,
            )
            return
        if now >= self._next_summary:
            self._next_summary = now + self.interval
            self._log.error(
                "{what} still failing after {seconds:.0f} s ({count} failures): {error}",
                what=self.what,
                seconds=now - self.since,
                count=self._failures,
                error=_one_line(failure),
            )

    def succeeded(self) -> None:
        """A round worked: the end of an outage, if there was one, is logged."""
        if self.since is None:
            return
        self._log.info(
            "{what} works again after {seconds:.0f} s ({count} failures)",
            what=self.what,
            seconds=self._clock() - self.since,
            count=self._failures,
        )
        self.since, self._failures = None, 0


def _one_line(failure: Failure) -> str:
    text = " ".join(str(failure.value).split())
    name = type(failure.value).__name__
    return f"{name}: {text[:300]}" if text else name
