"""The last large index-only FETCH batch rendered for each mailbox, kept for the next session
that asks for exactly the same lines.

Why: ``UID FETCH 1:* (FLAGS)`` is what a client without CONDSTORE sends on every connect, and
the sessions of one mailbox (a user's phone, laptop and webmail, the clients of a shared
mailbox, a crowd reconnecting after a restart) ask for the same 10,000 lines again and again.
Formatting them costs ~0.13 µs a line (``fetch.render_columns``), comparing the columns with
the ones they were formatted from costs next to nothing (the arrays compare with ``memcmp``,
the flag lists by identity of their shared flag strings), and copying the kept lines out is
free.

Nothing is ever invalidated, because nothing can go stale: a batch is reused only when every
value its lines were made of (sequence numbers, UIDs, flag lists with this session's
\\Recent, sizes, dates, modseqs, after CHANGEDSINCE) is equal to what the asking session
would format, so the octets are the same as a fresh rendering by construction. Another
session's STORE, an EXPUNGE that renumbers, a MODSEQ that moved: each makes the values
differ, and that batch is rendered afresh (and kept in place of the old one).

Memory is bounded by ``budget`` (octets of kept lines plus 16 a message for the columns they
came from); the least recently used mailbox's batch goes first. Per process: each
``[server] workers`` process keeps its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

# Smaller batches are rendered as fast as they are compared: not worth the memory.
MIN_LINES = 500
DEFAULT_BUDGET = 8 * 1024 * 1024


class RenderedBatches:
    """Rendered FETCH lines by key (mailbox and line template), one batch per key."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._kept: OrderedDict[Hashable, tuple[list[Sequence[object]], bytes, int]] = OrderedDict()
        self._used = 0

    def get(self, key: Hashable, values: list[Sequence[object]]) -> bytes | None:
        """The lines kept under ``key`` if they were rendered from exactly ``values``."""
        kept = self._kept.get(key)
        if kept is None or kept[0] != values:
            return None
        self._kept.move_to_end(key)
        return kept[1]

    def put(self, key: Hashable, values: list[Sequence[object]], lines: bytes) -> None:
        """Keep ``lines`` rendered from ``values`` (which the caller no longer changes)."""
        count = len(values[0]) if values else 0
        if count < MIN_LINES:
            return
        cost = len(lines) + 16 * count
        if cost > self.budget:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._used -= old[2]
        while self._kept and self._used + cost > self.budget:
            _key, (_values, _lines, freed) = self._kept.popitem(last=False)
            self._used -= freed
        self._kept[key] = (values, lines, cost)
        self._used += cost

    @property
    def used(self) -> int:
        """Octets accounted for now (at most ``budget``)."""
        return self._used
