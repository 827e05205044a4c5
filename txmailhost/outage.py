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
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python.failure import Failure


class _FailureLog:
    """Where the lines go (``logger``), what time it is (``clock``), what failed (``what``)
    and how often a count is logged (``interval`` seconds)."""

    def __init__(
        self, logger: Logger, clock: Callable[[], float], what: str, interval: float = 60.0
    ) -> None:
        self._log = logger
        self._clock = clock
        self.what = what
        self.interval = interval


class OutageLog(_FailureLog):
    """The failures of one poller's rounds (``what``: "claiming from the shared queue")."""

    def __init__(
        self, logger: Logger, clock: Callable[[], float], what: str, interval: float = 60.0
    ) -> None:
        super().__init__(logger, clock, what, interval)
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


@dataclass
class _Burst:
    since: float  # when the failures now counted began (the burst's start, or the last line)
    last: float  # the latest failure
    count: int = 0  # failures since the last line
    next_line: float = 0.0


class BurstLog(_FailureLog):
    """Failures of requests (an IMAP command's store call, an RCPT's recipient lookup) that
    have no round of their own to say "works again": while PostgreSQL was down, every
    client's every command logged a traceback, hundreds a second. Each kind of failure (its
    exception's type) is logged whole when it starts a burst, i.e. when none of its kind came
    in the last ``interval`` seconds; later ones of the burst are counted and summed up in a
    line at most every ``interval`` seconds, and once more when the burst is over (seen
    with the next failure of the kind: the last minute's count may wait long for its line,
    which the first traceback and the clients' retries make up for). A failure of another
    kind is never hidden in a burst: it starts its own."""

    def __init__(
        self, logger: Logger, clock: Callable[[], float], what: str, interval: float = 60.0
    ) -> None:
        super().__init__(logger, clock, what, interval)
        self._bursts: dict[str, _Burst] = {}  # by the exception's type name

    def failed(self, failure: Failure, about: str = "") -> None:
        """``about``: what the request was about (a user, a recipient), in the whole line."""
        now = self._clock()
        kind = type(failure.value).__name__
        burst = self._bursts.get(kind)
        if burst is not None and now - burst.last > self.interval:
            self._summed(kind, burst, "then none")
            burst = None
        if burst is None:
            if len(self._bursts) >= 32:  # kinds long quiet go first; a few at most are live
                for old in [k for k, b in self._bursts.items() if now - b.last > self.interval]:
                    self._summed(old, self._bursts.pop(old), "then none")
            self._bursts[kind] = _Burst(now, now, 0, now + self.interval)
            self._log.failure(
                "{what}{about}; more of the kind are summed up every {interval:.0f} s",
                failure,
                what=self.what,
                about=f" ({about})" if about else "",
                interval=self.interval,
            )
            return
        burst.last = now
        burst.count += 1
        if now >= burst.next_line:
            self._summed(kind, burst, f"the last: {_one_line(failure)}")
            burst.since, burst.count, burst.next_line = now, 0, now + self.interval

    def _summed(self, kind: str, burst: _Burst, state: str) -> None:
        if burst.count:
            self._log.error(
                "{what}: {count} more {kind} in {seconds:.0f} s, {state}",
                what=self.what,
                count=burst.count,
                kind=kind,
                seconds=burst.last - burst.since,
                state=state,
            )


def _one_line(failure: Failure) -> str:
    text = " ".join(str(failure.value).split())
    name = type(failure.value).__name__
    return f"{name}: {text[:300]}" if text else name
