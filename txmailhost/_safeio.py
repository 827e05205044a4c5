"""Durable file writes: the one place that knows how to make bytes survive a crash.

Every acknowledged message (SMTP ``250``, IMAP ``OK`` after APPEND) passes through here. The rule
(DESIGN invariant 1) is: write into a temporary file in the *same directory* as the target, fsync
it, move it into place with an atomic rename or link, then fsync the directory so the new name is
on disk too. Readers therefore see either nothing or the whole file, never a prefix.

These functions block on the disk; callers run them in the service's storage thread pool.
Every fsync goes through :func:`fsync` or :func:`fsync_dir`, which time it for the
``txmailhost_fsync_seconds`` histogram (ops/metrics.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from sqlite3 import SQLITE_FULL
from typing import Any

from txmailhost.ops import metrics


def fsync(fd: int) -> None:
    """Make the content of the open file ``fd`` durable (timed for the metrics)."""
    metrics.fsync(fd, "file")


def fsync_dir(path: str) -> None:
    """Make the directory entries of ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        metrics.fsync(fd, "directory")
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    directory = os.path.dirname(path) or "."
    # pid and thread: two threads writing the same path must not share a temp file.
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.tmp{os.getpid()}.{threading.get_ident()}"
    )
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)  # a buffered write loops over short writes
        f.flush()
        fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)


@contextlib.contextmanager
def directory_locked(directory: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``directory`` while the block runs: for a read-modify-write
    of a small file in it that ``write_atomic`` replaces (the file's own inode changes with
    each write, so it can't carry the lock). Serialises processes (the server's workers, the
    CLI) and threads alike: each call opens the directory anew, and an flock belongs to the
    open file, not to the process."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def link_durably(source: str, target: str) -> None:
    """Give the (already fsync'd) file ``source`` the new name ``target`` and make it durable.

    A hard link lets one spooled message land in many mailboxes without copying; when the
    two paths are on different file systems we fall back to a copy that is fsync'd first.
    The caller fsyncs the target directory (several links into one directory share one fsync).
    """
    try:
        os.link(source, target)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
    _copy_durably(source, target)


def rename_or_copy(source: str, target: str) -> bool:
    """Rename ``source`` to ``target``; True once done. Across file systems (EXDEV: a
    mailbox directory that is a mount point, or a symlink to another disk) no rename can,
    so ``target`` becomes an fsync'd copy and False says ``source`` is still there: the
    caller removes it once the target's directory is fsync'd, never before (until then a
    crash could lose both names). The caller fsyncs both directories, as after a rename."""
    try:
        os.rename(source, target)
        return True
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    _copy_durably(source, target)
    return False


def _copy_durably(source: str, target: str) -> None:
    """``target`` as an fsync'd copy of ``source`` with its modification time (what a
    Maildir reader takes for the date of a file it finds unindexed, as a link keeps it).
    Written under a dot name first (Maildir readers skip those), which a failure (a full
    disk) removes again."""
    directory = os.path.dirname(target)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.copy")
    with open(source, "rb") as src:
        try:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                stat = os.fstat(src.fileno())
                os.utime(dst.fileno(), ns=(stat.st_atime_ns, stat.st_mtime_ns))
                fsync(dst.fileno())
            os.rename(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def fsync_dirs(paths: Iterable[str]) -> None:
    """fsync each distinct directory once."""
    for path in sorted(set(paths)):
        fsync_dir(path)


def makedirs_durably(path: str, mode: int = 0o700) -> None:
    """Create ``path`` and any missing parents, fsyncing each parent that gained an entry."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(directory))


def out_of_space(error: BaseException) -> bool:
    """Did a write fail for want of space: the disk or a quota of the file system (ENOSPC,
    EDQUOT), or SQLite's ``database or disk is full`` writing an index? (SMTP ``452 4.3.1``,
    IMAP ``NO [OVERQUOTA]``.)"""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(error, "sqlite_errorcode", None) == SQLITE_FULL


def log_not_stored(log: Any, error: BaseException, text: str, **fields: Any) -> None:
    """Log a failure to store a message; call it in the ``except`` block. A condition of the
    host, not a bug (a full disk or quota, a file system remounted read-only after a disk
    error), is one warning line per message with the error's text: a traceback would tell
    the administrator nothing more, and a flood against a full disk (or the local spool's
    retries every 30 s) would fill the log with them. Anything else keeps its traceback."""
    readonly = isinstance(error, OSError) and error.errno == errno.EROFS
    if out_of_space(error) or readonly:
        log.warn(text + ": {error}", error=str(error), **fields)
    else:
        log.failure(text, **fields)
