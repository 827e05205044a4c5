"""One server per data directory: ``DATA/run/server.lock``, locked while the server runs.

A server's start sweeps what a killed one left behind: spare spool files without a delivery
record, ``queue/tmp``, staging files of the Maildirs. A second server started on a data
directory another one is using swept the first one's files from under it: a message the
first had read but not yet acknowledged lost its spool file, was answered ``250`` and was
gone after a restart, and the first server's stock of spare files went with it (``451``
for the next message). twistd's own pid file guard is off with ``--pidfile=``, which the
README's command passes.

The lock is ``flock``'s: the kernel lets go of it when the process ends however it ends, so
a server killed with SIGKILL never leaves a stale lock behind; it stays held across
twistd's fork when it daemonises (the child shares the locked file). The file holds the
holder's pid, to name it in the refusal.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = "server.lock"
_held: list[int] = []  # the locked descriptors, open until the process ends


class DataDirInUse(Exception):
    """Another process holds the data directory's lock."""


def hold(data_dir: str) -> None:
    """Lock ``data_dir`` for this process, or raise ``DataDirInUse`` naming the holder."""
    run = os.path.join(data_dir, "run")
    os.makedirs(run, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(run, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirInUse(
            f"data directory {os.path.abspath(data_dir)} is in use by another txmailhost"
            f" server{who}; stop it first"
        ) from None
    _held.append(fd)
    note_pid()


def note_pid() -> None:
    """Write this process's pid into the lock file (again after twistd daemonised)."""
    for fd in _held:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
