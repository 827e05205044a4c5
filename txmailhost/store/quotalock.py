"""A Maildir user's quota lock, and the room held for mail on its way into their mailboxes.

docs/admin.rst promises that an IMAP ``APPEND`` never takes a user past their quota and that
mail takes them past it by one message at most. Each add compares the usage with the limit
first; without a lock, the APPENDs and SMTP messages of other sessions (other threads, other
worker processes: ``[server] workers``) are added between that look and the add, each found
room, and together they went far past the limit. The PostgreSQL store takes an advisory lock
in its adding transaction (``postgres.py`` ``_hold_quota``); this is the same for Maildir.

Per user, under ``DATA/mail/DOMAIN/USER/txmailhost-quota/`` (not a Maildir++ folder, which
would start with a dot)::

    lock                 flock(2)'d, exclusively, around each check-and-add or reservation
    r.PID.N.OCTETS       a reservation: room held for a message accepted but not yet stored

An SMTP message is acknowledged before the delivery thread links it into the mailboxes
(``delivery/local.py``): its room is reserved under the lock, in the step that checks, and
kept until its copies are stored. Every check counts the live reservations of every process,
so messages received at once can't each see the old usage either. A reservation file is
flock'd by its holder for as long as it holds it. A lock taken with flock belongs to the open
file, and the kernel lets go of it when its holder ends however it ends (SIGKILL, a crash), so
neither a stuck lock nor a stale reservation survives its process: a check finds a reservation
file it can lock itself (its holder is gone), removes it and does not count it. Reservations are
made and such leftovers removed only under the user's lock, so none is removed while it is
being made. The delivery that stores a message gives its room back under the same lock, in
the step that indexes it: a check between the two would count the message twice, as
stored and as reserved, and refuse mail that fits (a release that stores nothing, after a
failure, needs no lock).

An IMAP APPEND reserves nothing while its literal arrives (into the user's ``tmp/``, not yet
mail): once it is in, the check and the add are one step under the lock, so APPENDs finishing
at once can't each see the old usage, and one that no longer fits is refused and its file
removed. Reserving at the literal's announcement would let a client that never finishes
sending hold the user's room for as long as its session lasts.

Lock order: a message for several users takes their locks one by one in sorted order, and
nothing waits for another user's lock while holding one out of that order, so a message for
alice and bob racing one for bob alone can't deadlock. Nothing holds the lock while it waits on
the network or on another user's mail: the message is written and fsync'd before; what is done
under the lock is the count (the user's indexes) and the links into that user's own folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator

from txmailhost.asciinum import number_or

QUOTA_DIRECTORY = "txmailhost-quota"
_LOCK = "lock"
_PREFIX = "r."


class QuotaLocks:
    """The quota locks and reservations of all users of one store; ``user_directory(user)``
    is where a user's Maildir lives. Blocking: called in the store's worker threads."""

    def __init__(self, user_directory: Callable[[str], str]) -> None:
        self._user_directory = user_directory
        self._counter = itertools.count()
        self._mutex = threading.Lock()
        # key (the spool file of a message) -> its reservations: user, file, open fd
        self._held: dict[str, list[tuple[str, str, int]]] = {}

    def _directory(self, user: str) -> str:
        directory = os.path.join(self._user_directory(user), QUOTA_DIRECTORY)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return directory

    @contextlib.contextmanager
    def locked(self, users: Iterable[str]) -> Iterator[None]:
        """Hold the quota lock of each of ``users``, taken in sorted order (lock order)."""
        fds: list[int] = []
        try:
            for user in sorted(set(users)):
                path = os.path.join(self._directory(user), _LOCK)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in reversed(fds):
                os.close(fd)  # and the lock with it

    def reserved(self, user: str) -> int:
        """Octets held for ``user`` by live reservations, of every process. Under the user's
        lock: a reservation whose holder is gone is removed here, uncounted."""
        directory = self._directory(user)
        total = 0
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.startswith(_PREFIX):
                    continue
                octets = entry.name.rpartition(".")[2]
                if _held_by_someone(entry.path):
                    total += number_or(octets, 0)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return total

    def reserve(self, key: str, user: str, octets: int) -> None:
        """Hold ``octets`` of ``user``'s quota until ``release(key)``. Under the user's lock."""
        name = f"{_PREFIX}{os.getpid()}.{next(self._counter)}.{octets}"
        path = os.path.join(self._directory(user), name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with self._mutex:
            self._held.setdefault(key, []).append((user, path, fd))

    def holders(self, keys: Iterable[str]) -> set[str]:
        """The users for whom room is held under any of ``keys``: those whose mail must be
        stored and its room given back in one step under their lock (``release``)."""
        with self._mutex:
            return {user for key in keys for user, _path, _fd in self._held.get(key, ())}

    def release(self, key: str, user: str | None = None) -> None:
        """Drop the reservations made under ``key`` (``user``'s alone when given; none:
        nothing to do). Any thread; under the user's lock when the message has just been
        stored for them, so that no check counts it both as stored and as reserved."""
        with self._mutex:
            held = self._held.pop(key, [])
            if user is not None:
                kept = [entry for entry in held if entry[0] != user]
                held = [entry for entry in held if entry[0] == user]
                if kept:
                    self._held[key] = kept
        for _user, path, fd in held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # gone before it is unlocked: never seen as a leftover
            os.close(fd)


def _held_by_someone(path: str) -> bool:
    """Is the reservation file at ``path`` flock'd (by this process or another)? A lock of
    flock(2) belongs to the open file, so even this process's own reservations, open through
    another descriptor, refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
