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
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
from typing import Any

from twisted.logger import Logger

log = Logger()

RESERVE = 1024  # mail files, SQLite and PostgreSQL connections, pipes, the workers' bus


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


def raise_to(wanted: int) -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (the hard limit too,
    when allowed: root); returns (soft, hard) afterwards. Never lowers anything."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        # not root, or above fs.nr_open: the hard limit stays
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def prepare(config: Any) -> int:
    """At start: raise the limit for ``config`` and warn when it stays short; the soft limit."""
    wanted = needed(config)
    soft, _hard = raise_to(wanted)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warn(
            "txmailhost: open file limit {soft} is below the {wanted} that [security]"
            " max_connections ({max}) on every listener may need; raise it (systemd:"
            " LimitNOFILE={wanted}; shell: ulimit -n) or lower max_connections",
            soft=soft,
            wanted=wanted,
            max=config.security.max_connections,
        )
    return soft
