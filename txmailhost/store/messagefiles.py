"""Message files in directories other tools write into: regular files only.

A Maildir's ``cur/`` and ``new/`` are shared with mutt, Dovecot, scripts and, on a shell host,
the user: a symbolic link dropped there (``new/789.link.host`` -> another user's mail, a
config file with passwords) would be indexed and served to IMAP, POP3 and the webmail as a
message, and a directory or a FIFO would fail or block every read that touches it. So the
store takes as a message only a regular file reached without following a link, both when it
lists a directory (``is_message``) and when it opens a file (``open_message_file``: the entry
may have been swapped for a link since it was listed). The same holds for files the admin
commands import (``MessageSource.from_path``: ``migrate dovecot``, ``import``).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class NotAMessageFile(OSError):
    """The path names a symbolic link, a directory or another file that is not a regular
    file: never read as a message."""


def is_message(entry: os.DirEntry) -> bool:
    """A regular file, not a link to one: from the directory entry's type, which the listing
    returned already (no system call per file on the file systems Maildirs live on)."""
    return entry.is_file(follow_symlinks=False)


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file at ``path`` and its status; see ``open_message_file``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotAMessageFile(errno.ELOOP, "a symbolic link, not a message file", path) from e
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotAMessageFile(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, status


def open_message_file(path: str) -> BinaryIO:
    """``open(path, "rb")`` of a regular file, refusing (``NotAMessageFile``) a symbolic link
    (``O_NOFOLLOW``) and anything else (checked on the open file, so nothing swapped in
    between passes); a FIFO is opened without waiting for a writer, then refused."""
    fd, _status = _open_regular(path)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_message_file(path: str) -> bytes:
    """The whole content of the message file at ``path``, with ``open_message_file``'s checks.

    Four system calls (open, fstat, read, close) where ``open_message_file(path).read()``
    makes ten (a buffered file object's own fstat, isatty ioctl and lseeks, and a read to
    find the end): POP3 reads ahead every small message of a download this way. The read
    asks for one octet more than the size, so a file that grew since the fstat is read to
    its end all the same."""
    fd, status = _open_regular(path)
    try:
        data = os.read(fd, status.st_size + 1)
        if len(data) <= status.st_size:
            return data  # a short read of a regular file is its end
        pieces = [data]
        while piece := os.read(fd, 1 << 16):
            pieces.append(piece)
        return b"".join(pieces)
    finally:
        os.close(fd)
