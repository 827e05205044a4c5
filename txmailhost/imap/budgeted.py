"""A table of values whose summed cost stays within a budget, least recently used first out.

Why one class: the FETCH lines kept between sessions (``rendered``) and the THREAD answers
(``threadcache``) account for memory the same way, an entry's cost given when it is put.
Keeping the eviction loop in one place keeps the two budgets' arithmetic the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BudgetedLRU(Generic[V]):
    """One value per key; the costs of the values kept add up to at most ``budget``."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._kept: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._used = 0

    def get(self, key: Hashable) -> V | None:
        """The value kept under ``key`` (now the most recently used), or None."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        self._kept.move_to_end(key)
        return kept[0]

    def put(self, key: Hashable, value: V, cost: int) -> None:
        """Keep ``value`` under ``key`` in place of the old one, the least recently used
        values going until it fits; a value dearer than the whole budget is not kept."""
        if cost > self.budget:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._used -= old[1]
        while self._kept and self._used + cost > self.budget:
            _key, (_value, freed) = self._kept.popitem(last=False)
            self._used -= freed
        self._kept[key] = (value, cost)
        self._used += cost

    @property
    def used(self) -> int:
        """Cost accounted for now (at most ``budget``)."""
        return self._used
