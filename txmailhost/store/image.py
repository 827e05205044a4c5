"""An in-memory image of a mailbox's index, shared by every session that opens the mailbox.

Why: SELECT and ``UID FETCH 1:* (UID FLAGS)`` are what every client does on every connect, and
on a 100,000-message mailbox turning 100,000 SQLite rows into Python objects cost each session
~90 ms for SELECT and ~240 ms for the FETCH (measured), where Dovecot answers from its mmap'd
index in under 1 ms. The image keeps the index's columns in compact arrays (UID 4 octets, flag
bits 1, size, date and modseq 8 each: ~29 octets a message, plus the keywords of the messages
that have any), so SELECT counts unseen messages with ``bytes.count`` and FETCH FLAGS slices
arrays.

It is a cache of the index, never a source of truth: before each use it is brought up to date
by modseq (``MailboxIndex.delta``: one small query when nothing changed, the changed rows and
tombstones otherwise), so it is right whichever process changed the index (another server, the
CLI, a reconcile after mutt renamed files). A replaced index file (mailbox deleted and created
again) or a UIDVALIDITY change reloads it whole. Memory is bounded: ``ImageCache`` keeps the
images of the most recently used mailboxes up to a total number of messages.

Every method blocks (SQLite); call them from the store's thread pool, holding ``image.lock``.
"""

from __future__ import annotations

import os
import sys
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable
from itertools import compress

from txmailhost.store.index import MailboxIndex

SEEN_BIT = 8  # the index's bit for \Seen (store/maildir.py _LETTERS)

# bits -> 1 when \Seen is set, else 0: ``bits.translate`` makes the seen map at C speed.
_SEEN_TABLE = bytes(1 if b & SEEN_BIT else 0 for b in range(256))


class MailboxImage:
    """The columns of one mailbox index, in UID order, as of ``highestmodseq``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inode: int | None = None
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = -1  # never loaded
        self.uids = array("I")
        self.bits = bytearray()
        self.sizes = array("Q")
        self.dates = array("d")
        self.modseqs = array("Q")
        self.keywords: dict[int, str] = {}  # only messages that have keywords

    def __len__(self) -> int:
        return len(self.uids)

    # -- keeping current ---------------------------------------------------------------------

    def refresh(self, index: MailboxIndex) -> None:
        """Bring the image up to date with ``index`` (reloading it whole if it was replaced)."""
        try:
            inode = os.stat(index.path).st_ino
        except FileNotFoundError:
            inode = None
        since = self.highestmodseq if inode == self.inode else -1
        meta, rows, gone = index.delta(max(since, 0))
        if since >= 0 and (
            meta["uidvalidity"] != self.uidvalidity
            or meta["highestmodseq"] < self.highestmodseq
            or meta["uidnext"] < self.uidnext
        ):
            since = -1  # a different index at the same path: start over
            meta, rows, gone = index.delta(0)
        if since < 0:
            self._load(rows)
        else:
            if gone:
                self._remove(gone)
            if rows:
                self._apply(rows)
        self.inode = inode
        self.uidvalidity = meta["uidvalidity"]
        self.uidnext = meta["uidnext"]
        self.highestmodseq = meta["highestmodseq"]

    def _load(self, rows: list[tuple]) -> None:
        self.uids = array("I", [r[0] for r in rows])
        self.bits = bytearray([r[1] for r in rows])
        self.sizes = array("Q", [r[4] for r in rows])
        self.dates = array("d", [r[3] for r in rows])
        self.modseqs = array("Q", [r[5] for r in rows])
        self.keywords = {r[0]: sys.intern(r[2]) for r in rows if r[2]}

    def _remove(self, gone: list[int]) -> None:
        uids = self.uids
        keep = bytearray(b"\x01") * len(uids)
        removed = 0
        for uid in gone:
            i = bisect_left(uids, uid)
            if i < len(uids) and uids[i] == uid:
                keep[i] = 0
                removed += 1
                self.keywords.pop(uid, None)
        if removed:
            self.uids = array("I", compress(uids, keep))
            self.bits = bytearray(compress(self.bits, keep))
            self.sizes = array("Q", compress(self.sizes, keep))
            self.dates = array("d", compress(self.dates, keep))
            self.modseqs = array("Q", compress(self.modseqs, keep))

    def _apply(self, rows: list[tuple]) -> None:
        """Rows changed or added after the image's modseq (sorted by UID; new UIDs are always
        above every UID already here, but an unexpected one is inserted in place)."""
        uids = self.uids
        for uid, bits, keywords, date, size, modseq in rows:
            last = uids[-1] if uids else 0
            i = len(uids) if uid > last else bisect_left(uids, uid)
            if i < len(uids) and uids[i] == uid:
                self.bits[i], self.sizes[i], self.dates[i], self.modseqs[i] = (
                    bits,
                    size,
                    date,
                    modseq,
                )
            else:
                uids.insert(i, uid)
                self.bits.insert(i, bits)
                self.sizes.insert(i, size)
                self.dates.insert(i, date)
                self.modseqs.insert(i, modseq)
            if keywords:
                self.keywords[uid] = sys.intern(keywords)
            else:
                self.keywords.pop(uid, None)

    # -- reading -----------------------------------------------------------------------------

    def unseen(self) -> tuple[int, int]:
        """(sequence number of the first unseen message or 0, number of unseen messages)."""
        seen = self.bits.translate(_SEEN_TABLE)
        return seen.find(0) + 1, seen.count(0)

    def keyword_names(self) -> set[str]:
        return {word for words in set(self.keywords.values()) for word in words.split()}

    def positions(self, uids: array) -> list[int] | slice:
        """Where ``uids`` are in the image: a slice when they are one contiguous run of it (a
        resync of a whole mailbox or range: no per-message work), else the index of each UID
        present, in UID order."""
        mine = self.uids
        if not uids:
            return slice(0, 0)
        start = bisect_left(mine, uids[0])
        stop = start + len(uids)
        if mine[start:stop] == uids:
            return slice(start, stop)
        found = []
        n, start = len(mine), 0
        for uid in sorted(set(uids)):
            i = bisect_left(mine, uid, start)
            if i < n and mine[i] == uid:
                found.append(i)
            start = i
        return found


def _pick(column: array | bytearray, where: list[int] | slice) -> array | bytearray:
    if isinstance(where, slice):
        return column[where]
    values = map(column.__getitem__, where)
    return array(column.typecode, values) if isinstance(column, array) else bytearray(values)


def columns_of(
    image: MailboxImage, uids: array, flag_sets: Callable[[int, str], frozenset[str]]
) -> tuple[array, list[frozenset[str]], array, array, array]:
    """(uids, flags, sizes, dates, modseqs) of those of ``uids`` in the image.

    ``flag_sets(bits, keywords)`` turns the index's flag bits and keyword string into the flag
    set; it must be cached (one frozenset per distinct combination is shared by all messages)."""
    where = image.positions(uids)
    found = _pick(image.uids, where)
    bits = _pick(image.bits, where)
    system = [flag_sets(b, "") for b in range(256)]
    flags = list(map(system.__getitem__, bits))
    keywords = image.keywords
    if keywords:
        if len(keywords) < len(found):
            low, high = (found[0], found[-1]) if found else (1, 0)
            for uid, words in keywords.items():
                if low <= uid <= high:
                    i = bisect_left(found, uid)
                    if i < len(found) and found[i] == uid:
                        flags[i] = flag_sets(bits[i], words)
        else:
            for i, uid in enumerate(found):
                words = keywords.get(uid)
                if words:
                    flags[i] = flag_sets(bits[i], words)
    return (
        found,
        flags,
        _pick(image.sizes, where),
        _pick(image.dates, where),
        _pick(image.modseqs, where),
    )


RECOUNT = 16  # images recounted at each get: the last ones handed out, which callers refresh


class ImageCache:
    """The images of recently used mailboxes, by directory, up to ``budget`` messages in all
    (~29 octets each): a server with many large mailboxes open keeps the busiest in memory.

    The total is kept, not summed at each ``get``: with a crowd of users in IDLE the cache
    holds thousands of images, and a sum over all of them at every SELECT and IDLE poll (under
    the lock every storage thread takes) cost more than the rest of the lookup. An image
    grows when its caller refreshes it, after ``get``, so each ``get`` recounts the last
    ``RECOUNT`` images handed out; one refreshed by a caller that kept it longer is counted at
    its next use (the budget is a bound on the order of magnitude, not an exact one)."""

    def __init__(self, budget: int = 2_000_000) -> None:
        self.budget = budget
        self._images: OrderedDict[str, MailboxImage] = OrderedDict()
        self._guard = threading.Lock()
        self._counted: dict[str, int] = {}  # directory -> its length when last counted
        self._total = 0  # the sum of _counted
        self._recent: deque[str] = deque(maxlen=RECOUNT)

    def _count(self, directory: str) -> None:
        image = self._images.get(directory)
        if image is not None:
            length = len(image)
            self._total += length - self._counted.get(directory, 0)
            self._counted[directory] = length

    def get(self, directory: str) -> MailboxImage:
        with self._guard:
            image = self._images.get(directory)
            if image is None:
                image = self._images[directory] = MailboxImage()
            self._images.move_to_end(directory)
            if directory not in self._recent:
                self._recent.append(directory)
            for recent in self._recent:
                self._count(recent)
            while self._total > self.budget and len(self._images) > 1:
                old, _evicted = self._images.popitem(last=False)
                self._total -= self._counted.pop(old, 0)
            return image

    def forget(self, directory: str) -> None:
        with self._guard:
            self._images.pop(directory, None)
            self._total -= self._counted.pop(directory, 0)
