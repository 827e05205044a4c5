"""Messages the server writes to its own users: the mailbox-almost-full warning (issue 6).

A notice is mail like any other: it goes through ``submit`` (``submission.py``), so it is as
durable as what it reports on and lands where the delivery agent says.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from email.utils import formatdate

WARN_AT = 0.9  # of the quota


def quota_crossings(
    usage: Mapping[str, tuple[int, int]], size: int
) -> Iterator[tuple[str, int, int]]:
    """(user, bytes used now, quota) for each user this delivery of ``size`` octets took past
    ``WARN_AT`` of their quota: they are told once, when they cross the line."""
    for user, (used, limit) in usage.items():
        if used < WARN_AT * limit <= used + size:
            yield user, used + size, limit


def quota_notice(user: str, used: int, limit: int, hostname: str) -> bytes:
    """The 90% warning, a plain RFC 5322 message from the domain's postmaster."""
    domain = user.rpartition("@")[2]
    percent = used * 100 // limit
    text = (
        f"Your mailbox {user} holds {used / 1048576:.1f} MiB of its {limit / 1048576:.1f} MiB"
        f" quota ({percent}%).\r\n\r\nWhen it is full, new mail to you will be refused."
        " Delete old messages, or empty Trash and Junk, to make room.\r\n"
    )
    headers = (
        f"From: Mail server <postmaster@{domain}>\r\nTo: <{user}>\r\n"
        f"Subject: Your mailbox is {percent}% full\r\nDate: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <quota.{int(time.time())}.{user.replace('@', '.')}@{hostname}>\r\n"
        "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return (headers + text).encode("utf-8")
