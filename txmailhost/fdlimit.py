"""The open-file limit a server process needs, raised at start.

Every connection is a file descriptor, and Linux starts processes with a soft limit of 1,024
(systemd: 1,024 soft, 524,288 hard). A server whose ``[security] max_connections`` allows
more would refuse connections with ``EMFILE`` ("Too many open files") long before its own
limit, and fail to open mail files while it does. So at start, before the privilege drop,
the soft limit is raised to what the configuration may use (every listener full, plus room
for mail files, databases and pools), as far as the hard limit allows — or beyond it when
running as root, as nginx's ``worker_rlimit_nofile`` and Dovecot's ``default_vsz_limit``
peers do. Worker processes inherit the limit from the supervisor. When even that is short,
the start log says so, with the number to configure (``LimitNOFILE=`` in a systemd unit).

When the limit is reached all the same, work repeated every second (the queue's poll of
``control/``) says so in one warning a minute (:class:`ShortageWarning`), not a critical
traceback a second that buries everything else in the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import resource
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

RESERVE = 1024  # mail files, SQLite and PostgreSQL connections, pipes, the workers' bus
_LARGEST = 2**63 - 1  # rlim_t as Python reads it (a C long long)


def needed(config: Any) -> int:
    """Descriptors the configuration may use at once in one process: each listener at
    ``max_connections``, spread over the workers (the limits are the server's, not each
    worker's, but a busy worker may hold more than its share: half again as many)."""
    listening = sum(1 for f in dataclasses.fields(config.listen) if getattr(config.listen, f.name))
    connections = listening * config.security.max_connections
    workers = max(1, config.workers)
    if workers > 1:
        connections = -(-connections * 3 // (2 * workers))  # ceil(1.5 x an even share)
    return connections + RESERVE


def ceiling() -> int:
    """The most any process may have: Linux's ``fs.nr_open`` (setrlimit refuses more, even
    to root), else the largest ``rlim_t`` Python converts (beyond it, ``OverflowError``)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _LARGEST


def raise_to(wanted: int) -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (the hard limit too,
    when allowed: root); returns (soft, hard) afterwards. Never lowers anything; asking for
    more than the system allows raises as far as it does."""
    wanted = min(wanted, ceiling())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        # not root, or above fs.nr_open: the hard limit stays
        with contextlib.suppress(ValueError, OverflowError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OverflowError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def shortfall(config: Any, soft: int) -> str | None:
    """What to tell the administrator when ``soft`` open files are fewer than ``config``
    may need; None when they are enough."""
    wanted = needed(config)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None
    return (
        f"open file limit {soft} is below the {wanted} that [security] max_connections"
        f" ({config.security.max_connections}) on every listener may need; raise it (systemd:"
        f" LimitNOFILE={wanted}; shell: ulimit -n) or lower max_connections"
    )


def prepare(config: Any) -> int:
    """At start: raise the limit for ``config`` and warn when it stays short; the soft limit."""
    soft, _hard = raise_to(needed(config))
    problem = shortfall(config, soft)
    if problem is not None:
        log.warn("txmailhost: {problem}", problem=problem, soft=soft, wanted=needed(config))
    return soft


def preview(config: Any) -> str | None:
    """For ``check-config``, which changes nothing: whether a server started from here could
    raise its limit to what ``config`` may need (to this process's hard limit; as root, to
    ``ceiling``), as ``shortfall`` words it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return shortfall(config, ceiling() if os.geteuid() == 0 else hard)


class ShortageWarning:
    """For a periodic poller: a failure for want of file descriptors (EMFILE, this process's
    limit; ENFILE, the system's) is one warning line at most every ``interval`` seconds,
    without a traceback: the stack tells nothing the line doesn't, and the next round tries
    again anyway. Other failures are the caller's to log."""

    def __init__(self, logger: Logger, clock: Callable[[], float], interval: float = 60.0) -> None:
        self._log = logger
        self._clock = clock
        self.interval = interval
        self._quiet_until = float("-inf")
        self._unlogged = 0

    def handled(self, failure: Failure, what: str) -> bool:
        """Whether ``failure`` was a shortage of descriptors (then warned of, or counted
        while within ``interval`` of the last warning)."""
        error = failure.value
        if not (isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE)):
            return False
        now = self._clock()
        if now < self._quiet_until:
            self._unlogged += 1
            return True
        self._log.warn(
            "{what} failed: {error} (open file limit {limit}; {unlogged} such failures not"
            " logged since the last warning)",
            what=what,
            error=error,
            limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            unlogged=self._unlogged,
        )
        self._quiet_until, self._unlogged = now + self.interval, 0
        return True
