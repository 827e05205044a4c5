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


def open_message_file(path: str) -> BinaryIO:
    """``open(path, "rb")`` of a regular file, refusing (``NotAMessageFile``) a symbolic link
    (``O_NOFOLLOW``) and anything else (checked on the open file, so nothing swapped in
    between passes); a FIFO is opened without waiting for a writer, then refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotAMessageFile(errno.ELOOP, "a symbolic link, not a message file", path) from e
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAMessageFile(errno.EINVAL, "not a regular file", path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
