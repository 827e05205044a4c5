"""Reading a tree of files txmailhost didn't write: a Dovecot Maildir, an export.

``migrate`` and ``import`` run as the mail server's user (or root) over a directory that its
owner could shape: a Maildir's user can put a symbolic link to ``/etc/shadow`` in ``cur/``, or
to another user's Maildir among the folders, and a FIFO or a device would hang the reader.
So nothing here follows a link: entries are judged by ``lstat`` (a regular file is mail, a
directory is a folder, anything else is skipped and named in the report), and every file is
opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again on the descriptor, so one swapped
for a link or a FIFO between the look and the read is refused rather than read.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from typing import Any, BinaryIO

from txmailhost.ops.mailbox_admin import AdminError
from txmailhost.store.interfaces import MessageSource

_KINDS = (
    (stat.S_ISLNK, "a symbolic link (not followed)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


# Largest list file read whole: a dovecot-uidlist of a million messages is some 60 MB
MAX_LISTING = 256 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SourceFileError(AdminError):
    """A file of the source tree that is not what it should be; the text names it."""


def shown(path: str) -> str:
    """``path`` printable: a name that isn't UTF-8 (surrogate-escaped by ``os.listdir``)
    shows its odd bytes as ``\\xff`` instead of making ``print`` fail, and a control
    character as ``\\n`` or ``\\x1b``: the tree's owner names its folders, and a folder
    ``.a<LF>  INBOX: 0 message(s)...`` wrote lines of its making into the report, an escape
    sequence drove the administrator's terminal."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def kind(mode: int) -> str:
    """What a non-regular file is, for the report."""
    for test, text in _KINDS:
        if test(mode):
            return text
    return "not a regular file"


def entry_problem(path: str, want_directory: bool = False) -> str | None:
    """Why the entry at ``path`` (not followed) is not a regular file (or a directory, with
    ``want_directory``): None when it is, else a line for the report."""
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode) if want_directory else stat.S_ISREG(mode):
        return None
    if want_directory and stat.S_ISREG(mode):
        return f"{shown(path)}: a file, not a directory"
    return f"{shown(path)}: {kind(mode)}"


def open_regular(path: str, expected: os.stat_result | None = None) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, not followed (and the very file
    ``expected`` describes, when given); else ``SourceFileError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise SourceFileError(f"{shown(path)}: {kind(stat.S_IFLNK)}") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceFileError(f"{shown(path)}: {kind(st.st_mode)}")
        if expected is not None and (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            raise SourceFileError(f"{shown(path)}: replaced while being read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str, limit: int = MAX_LISTING) -> bytes | None:
    """The whole of a small file (a list, a manifest), None when there is none; one larger
    than ``limit`` is a ``SourceFileError`` before it is read (a ``dovecot-uidlist`` made
    a sparse file of 100 GB by its Maildir's owner was read into memory whole)."""
    try:
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_size > limit:
                raise SourceFileError(f"{shown(path)}: larger than {limit} bytes")
            data = f.read(limit + 1)
    except FileNotFoundError:
        return None
    if len(data) > limit:  # grew while being read
        raise SourceFileError(f"{shown(path)}: larger than {limit} bytes")
    return data


class _Listed(io.RawIOBase):
    """A source file read no further than the size it was listed with: ``migrate`` judged
    the message by that size (``--max-message-size``), and a file its owner made grow to
    10 GB after the look would otherwise have been copied whole."""

    def __init__(self, file: BinaryIO, size: int, path: str) -> None:
        self._file, self._left, self._path = file, size, path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._left + 1)  # one more: did the file grow?
        data = self._file.read(wanted)
        if len(data) > self._left:
            raise SourceFileError(f"{shown(self._path)}: changed while being read (larger "
                                  "than when it was listed)")  # fmt: skip
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


class RegularFileSource(MessageSource):
    """A message file of the source tree, opened only when the store reads it (one file at a
    time, however many there are) and only if it is still the regular file listed, read
    no further than its listed size (``_Listed``)."""

    __slots__ = ("_listed", "_where")

    def __init__(self, path: str, listed: os.stat_result) -> None:
        super().__init__(size=listed.st_size)
        self._where, self._listed = path, listed

    @property
    def path(self) -> str:
        """Where the message is, for the report."""
        return self._where

    def open(self) -> BinaryIO:
        raw = _Listed(open_regular(self._where, self._listed), self._listed.st_size, self._where)
        return io.BufferedReader(raw, 1 << 16)  # type: ignore[return-value]
