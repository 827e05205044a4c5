"""Figures and the values each server produced for them, across repeated runs.

A ``Figure`` says what a number means (unit, whether higher is better) and which anchor it is
compared with: SMTP and its memory figures against Postfix, POP3 (and IMAP) against Dovecot,
the disk's fsync ceiling against nothing (it is the machine's limit, shown for scale). Each run
appends one value; the report shows the median, since the machine is assumed noisy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.stats import median

MACHINE = "machine"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    anchor: str  # name of the anchor server compared with, or MACHINE
    others: tuple[str, ...] = ()  # further anchors, each compared on a row of its own


@dataclass
class Results:
    """Everything one ``python -m bench`` invocation measured, in the order it was measured."""

    figures: dict[str, Figure] = field(default_factory=dict)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def record(self, server: str, figure: Figure, value: float) -> None:
        self.figures.setdefault(figure.key, figure)
        self.values.setdefault(server, {}).setdefault(figure.key, []).append(value)

    def median(self, server: str, key: str) -> float:
        return median(self.values.get(server, {}).get(key, []))

    def runs(self, server: str, key: str) -> int:
        return len(self.values.get(server, {}).get(key, []))

    def problem(self, text: str) -> None:
        """Something went wrong in a run (errors, a server that would not start): reported."""
        self.problems.append(text)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def ratio(self, key: str, server: str, anchor: str | None = None) -> float:
        """``server``/anchor for ``key`` (the figure's first anchor unless another is named):
        NaN when either side has no number."""
        anchor = anchor or self.figures[key].anchor
        ours, theirs = self.median(server, key), self.median(anchor, key)
        if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
            return math.nan
        return ours / theirs
