"""Files being written in a Maildir's ``tmp/``, and the sweep that removes those a crash left.

A message on its way into a mailbox is first written into the user's ``tmp/`` (the Maildir
convention): an IMAP APPEND literal as it arrives (``.imap-append.``, imap/server.py), a
message to add (``.append.``, ``maildir._stage``). The writer removes the file once it is
linked into its mailboxes, or when adding fails; a process killed meanwhile cannot, and
what it leaves takes disk that no quota counts (a hard link to an expunged message, too).

``sweep`` removes such leftovers. Like Dovecot, any file older than 36 hours (the Maildir
convention: nothing takes that long to deliver). Sooner, a file whose name says it was made
by a process of this host that is gone: the name carries the host, the PID namespace and the
PID of its writer (``prefix``). Workers are processes of one host and namespace, each with a
PID of its own, so a live worker's files are never taken; another node (a shared file
system) has another host name, and a container sharing the directory under the same host
name another PID namespace: their files wait for the 36 hours. A PID reused since only
delays the removal.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import time

MAX_AGE = 36 * 3600  # seconds; the Maildir convention (and Dovecot's)

_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


def _pid_namespace() -> int:
    """An id of this process's PID namespace (its inode, Linux); 0 where there is none."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


_NAMESPACE = _pid_namespace()
# ".append.P1234N4026531836.mx.example.org.k3j_x9a2": tempfile's 8 random characters last.
_OWNED = re.compile(r"\.[a-z-]+\.P(\d+)N(\d+)\.(.+)\.[a-z0-9_]+")


def prefix(kind: str) -> str:
    """The ``tempfile.mkstemp`` prefix of a ``kind`` ("append", "imap-append") file written
    by this process: who wrote it, so that ``sweep`` can tell when the writer is gone."""
    return f".{kind}.P{os.getpid()}N{_NAMESPACE}.{_HOST}."


def _writer_gone(filename: str) -> bool:
    """Was ``filename`` written by a process of this host and namespace that has ended?"""
    owned = _OWNED.fullmatch(filename)
    if owned is None or not _NAMESPACE:
        return False
    pid, namespace, host = int(owned[1]), int(owned[2]), owned[3]
    if namespace != _NAMESPACE or host != _HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def sweep(directory: str, now: float | None = None) -> tuple[int, int]:
    """Remove the leftovers in the ``tmp/`` directory ``directory`` (blocking: run it in the
    store's pool); (files removed, octets freed). Only plain files: a directory or a socket
    some other tool keeps there is not ours."""
    now = time.time() if now is None else now
    removed = freed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if now - st.st_mtime < MAX_AGE and not _writer_gone(entry.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed += 1
            # A file still linked into a mailbox frees nothing but its name.
            freed += st.st_size if st.st_nlink == 1 else 0
    return removed, freed
