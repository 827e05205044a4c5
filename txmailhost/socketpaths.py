"""UNIX socket paths that fit, however deep the data directory is.

The server's own sockets live in the data directory (``DATA/run/control.sock``, the workers'
bus ``DATA/run/workers/N.sock``), and a socket's address is a path of at most 107 octets
(``sun_path``). A data directory of more than about 80 characters (a home directory several
levels down, a test's temporary directory) made every one of them fail to bind: ``who`` and
``kick`` found no server, and a worker that could not open its bus never started. Postfix
avoids the limit by ``chdir`` to its queue directory; a threaded server can't change its
directory under its threads.

So a path too long is given through its directory's descriptor instead:
``/proc/self/fd/N/NAME`` names the same file for ``bind``, ``connect`` and ``sendto`` on
Linux, whatever the length of the directory's own path. The descriptor (``O_PATH``: it
reads nothing) is kept for the life of the process, as the listening socket's path stays in
use until it closes (Twisted unlinks it by that path); a directory replaced meanwhile gets a
descriptor of its own beside the old one. Where there is no ``/proc`` the path is refused
with a message that says what to shorten.
"""

from __future__ import annotations

import errno
import os
import threading

# sun_path is 108 octets on Linux, the terminating NUL included (unix(7)).
MAX_PATH = 107

_PROC_FD = os.path.isdir("/proc/self/fd")
_lock = threading.Lock()
_directories: dict[str, int] = {}  # directory -> a descriptor open on it


def usable(path: str) -> str:
    """``path``, or when it is too long for a UNIX socket's address, the same file named
    through a descriptor of its directory. Raises ``FileNotFoundError`` when the directory is
    missing (nothing can be listening there) and ``OSError(ENAMETOOLONG)`` where the short
    name can't be made."""
    if len(os.fsencode(path)) <= MAX_PATH:
        return path
    directory, name = os.path.split(os.path.abspath(path))
    # Without /proc, no descriptor is opened for a name that can't be used.
    short = f"/proc/self/fd/{_descriptor(directory)}/{name}" if _PROC_FD else path
    if len(os.fsencode(short)) > MAX_PATH:
        raise OSError(
            errno.ENAMETOOLONG,
            f"{path} is too long for a UNIX socket ({len(os.fsencode(path))} octets, at most "
            f"{MAX_PATH}): use a data directory with a shorter path",
        )
    return short


def _descriptor(directory: str) -> int:
    """A descriptor open on ``directory`` as it is now (the one kept, unless the directory
    was removed or replaced since)."""
    now = os.stat(directory)  # FileNotFoundError: nothing listens under a missing directory
    with _lock:
        fd = _directories.get(directory)
        if fd is not None:
            kept = os.fstat(fd)
            if (kept.st_dev, kept.st_ino) == (now.st_dev, now.st_ino):
                return fd
            # The old one stays open: a socket bound through it is unlinked through it when
            # it closes, and its number reused for another directory could name another file.
        flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
        fd = os.open(directory, flags)
        _directories[directory] = fd
        return fd
