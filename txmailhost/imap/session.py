"""The selected mailbox as one session sees it: the sequence-number map and what it has told
the client.

RFC 3501 §2.3.1.2: message sequence numbers are per session and change only when *this* session
reports an EXPUNGE, so the map (``uids``, an ``array('I')``: four bytes a message, the only
per-message state a session keeps) is updated only as responses go out. ``modseq`` is the
highest modification sequence the client has been told about; changes after it are fetched from
the index (``IMailbox.changes_since``) and turned into EXISTS / EXPUNGE / VANISHED / FETCH.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from txmailhost.imap.parser import ParseError


@dataclass
class SelectedMailbox:
    mailbox: Any  # IMailbox
    name: str
    readonly: bool
    uids: array
    uidvalidity: int
    uidnext: int
    modseq: int
    # UID ranges [low, high) this session sees as \Recent (RFC 3501 §2.3.2): what SELECT
    # claimed, then each batch of new mail this session was the first to be told of.
    recent_ranges: list[tuple[int, int]] = field(default_factory=list)
    keywords: set[str] = field(default_factory=set)
    # RFC 5182: the UIDs of the last SEARCH ... RETURN (SAVE), named ``$``; a new SELECT (a new
    # SelectedMailbox) starts empty, and expunged UIDs drop out when ``$`` is resolved.
    saved_uids: list[int] = field(default_factory=list)
    stop_watching: Any = None
    # RFC 4314 rights of this session's user on the mailbox, as they were at SELECT (§5.1.1)
    rights: str = "lrswipkxtea"
    # RFC 8474 MAILBOXID, when the store gives one: what sort keys are kept by (keycache.py)
    mailboxid: str | None = None

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def recent(self) -> int:
        uids = self.uids
        return sum(
            bisect_left(uids, high) - bisect_left(uids, low) for low, high in self.recent_ranges
        )

    def is_recent(self, uid: int) -> bool:
        return any(low <= uid < high for low, high in self.recent_ranges)

    def add_recent(self, low: int, high: int) -> None:
        """This session was the first told of the UIDs in [low, high)."""
        if low >= high:
            return
        ranges = self.recent_ranges
        if ranges and ranges[-1][1] >= low and ranges[-1][0] <= low:
            ranges[-1] = (ranges[-1][0], max(high, ranges[-1][1]))
        else:
            ranges.append((low, high))

    def seq_of(self, uid: int) -> int:
        """The sequence number of ``uid``, or 0 if this session doesn't know it."""
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def resolve(
        self, sequence_set: bytes, by_uid: bool, clamp: bool = False
    ) -> list[tuple[int, int]]:
        """(seq, uid) pairs the set names, in sequence order, without duplicates.

        ``*`` is the last message (§6.4.8: for UIDs, the highest UID in the mailbox, so
        ``UID FETCH 99:*`` on a mailbox whose last UID is 5 names message 5). Sequence numbers
        beyond EXISTS make the set invalid (BAD), unless ``clamp`` (SEARCH) skips them as
        UIDs that don't exist are always skipped.
        """
        return self.pairs(self.runs(sequence_set, by_uid, clamp))

    def pairs(self, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The (seq, uid) pairs of ``runs`` (from ``runs``)."""
        uids = self.uids
        pairs: list[tuple[int, int]] = []
        for start, stop in runs:
            pairs.extend(zip(range(start + 1, stop + 1), uids[start:stop], strict=True))
        return pairs

    def runs(self, sequence_set: bytes, by_uid: bool, clamp: bool = False) -> list[tuple[int, int]]:
        """What ``resolve`` names, as runs of positions in ``uids``: ``[start, stop)`` slices
        in the order ``resolve`` gives them (message ``start + 1`` is the first of a run).

        Why: ``UID FETCH 1:* (FLAGS)``, what every client sends on connect, names one run of
        the whole mailbox; answering it from slices of ``uids`` costs no Python object per
        message, where 10,000 (seq, uid) pairs cost more than rendering the lines did.
        """
        count = len(self.uids)
        if not count:
            return []
        if sequence_set == b"$":
            return _coalesce(seq - 1 for uid in self.saved_uids if (seq := self.seq_of(uid)))
        ranges = []
        for piece in sequence_set.split(b","):
            low_text, _, high_text = piece.partition(b":")
            low = _number(low_text, by_uid, self.uids)
            high = _number(high_text, by_uid, self.uids) if high_text else low
            if low > high:
                low, high = high, low
            ranges.append((low, high))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for low, high in ranges:
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        runs: list[tuple[int, int]] = []
        uids = self.uids
        for low, high in merged:
            if by_uid:
                start, stop = bisect_left(uids, low), bisect_right(uids, high)
            else:
                if clamp:
                    high = min(high, count)
                elif low < 1 or high > count:
                    raise ParseError("message sequence number out of range")
                start, stop = low - 1, high
            if start < stop:
                runs.append((start, stop))
        return runs

    def remove(self, gone: set[int]) -> list[int]:
        """Drop expunged UIDs from the map; their sequence numbers, highest first (so each
        EXPUNGE response can be sent with the number the client still knows)."""
        seqs = sorted((self.seq_of(uid) for uid in gone), reverse=True)
        seqs = [s for s in seqs if s]
        if seqs:
            self.uids = array("I", (uid for uid in self.uids if uid not in gone))
        return seqs


def _coalesce(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive positions joined into ``[start, stop)`` runs, the order kept."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and runs[-1][1] == position:
            runs[-1] = (runs[-1][0], position + 1)
        else:
            runs.append((position, position + 1))
    return runs


def _number(text: bytes, by_uid: bool, uids: array) -> int:
    if text == b"*":
        if not uids:
            return 0 if not by_uid else 2**32 - 1
        return uids[-1] if by_uid else len(uids)
    value = int(text)
    if value == 0 or value > 2**32 - 1:
        raise ParseError("invalid number in sequence set")
    return value
