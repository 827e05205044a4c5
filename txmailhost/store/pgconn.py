"""Whether a pooled PostgreSQL connection the server has already closed is still worth using.

Why: each storage thread keeps its connection between jobs. When PostgreSQL restarts, fails
over, or an administrator (or a pooler) runs ``pg_terminate_backend``, every idle connection
is closed by the server, but psycopg only learns of it at the next query, which then fails:
the first job on each thread after the outage answered its client ``NO [UNAVAILABLE]`` or
``451`` though the database was back, and an IDLE session that asked for its changes at
that moment never heard them. A server closing a connection (a FATAL message, then the end
of the stream) makes its socket readable while nothing is being asked of it; an idle
connection in good health has nothing to read. So before a job, one ``poll`` with no
timeout (no round trip) tells a connection to replace from one to use.
"""

from __future__ import annotations

import select
from typing import Any


def usable(conn: Any) -> bool:
    """False when ``conn`` is closed, broken, or idle with something to read (the server
    has closed it, or is about to): the caller connects anew. Only for connections that
    are not listening (their notifications would be read as a close). A connection inside
    a transaction is kept whatever its state (the accounts' SQL asks for its connection
    at each statement): a transaction is never carried on over another connection; its
    next statement fails instead, and the caller's error handling runs."""
    if conn is None or conn.closed or conn.broken:
        return False
    if conn.info.transaction_status.name != "IDLE":
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
