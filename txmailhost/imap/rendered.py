"""The last large index-only FETCH batch rendered for each mailbox, kept for the next session
that asks for exactly the same lines.

Why: ``UID FETCH 1:* (FLAGS)`` is what a client without CONDSTORE sends on every connect, and
the sessions of one mailbox (a user's phone, laptop and webmail, the clients of a shared
mailbox, a crowd reconnecting after a restart) ask for the same 10,000 lines again and again.
Rendering them costs ~0.15 µs a line (``fetch.render_batch``), comparing the store's columns
with the ones they were rendered from costs next to nothing (the arrays compare with
``memcmp``, the flag lists by identity of the store's shared flag sets), and handing the kept
lines out is free.

Nothing is ever invalidated, because nothing can go stale: lines are reused only when the
``fetch.ColumnBatch`` they were rendered from (sequence numbers, UIDs, flag sets, this
session's \\Recent ranges, sizes, dates, modseqs, CHANGEDSINCE) is equal to the asking
session's, and the lines are a function of the batch alone: the octets are those a fresh
rendering would give, by construction. Another
session's STORE, an EXPUNGE that renumbers, a MODSEQ that moved: each makes the values
differ, and that batch is rendered afresh (and kept in place of the old one).

Memory is bounded by ``budget`` (octets of kept lines plus 8 a message for each column they
came from); the least recently used mailbox's batch goes first. Per process: each
``[server] workers`` process keeps its own.
"""

from __future__ import annotations

from collections.abc import Hashable

from txmailhost.imap.budgeted import BudgetedLRU
from txmailhost.imap.fetch import ColumnBatch

# Smaller batches are rendered as fast as they are compared: not worth the memory.
MIN_LINES = 500
DEFAULT_BUDGET = 8 * 1024 * 1024


class RenderedBatches:
    """Rendered FETCH lines by key (mailbox and line template), one batch per key."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._kept: BudgetedLRU[tuple[ColumnBatch, bytes]] = BudgetedLRU(budget)

    def get(self, key: Hashable, batch: ColumnBatch) -> bytes | None:
        """The lines kept under ``key`` if they were rendered from a batch equal to ``batch``."""
        kept = self._kept.get(key)
        if kept is None or kept[0] != batch:
            return None
        return kept[1]

    def put(self, key: Hashable, batch: ColumnBatch, lines: bytes) -> None:
        """Keep ``lines`` rendered from ``batch`` (whose columns nobody changes any more)."""
        count = len(batch.seqs)
        if count >= MIN_LINES:
            cost = len(lines) + count * (4 + 8 * len(batch.items))  # + the columns kept
            self._kept.put(key, (batch, lines), cost)

    @property
    def budget(self) -> int:
        """Octets the kept lines may take."""
        return self._kept.budget

    @property
    def used(self) -> int:
        """Octets accounted for now (at most ``budget``)."""
        return self._kept.used
