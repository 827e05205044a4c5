"""Comparators, match types and address parts: how a Sieve test compares a value with its keys.

- Comparators (RFC 4790, RFC 5228 2.7.3): ``i;octet`` (exact), ``i;ascii-casemap`` (A-Z
  folded to a-z, nothing else; the default) and ``i;ascii-numeric`` (the leading digits as a
  number; a value without them is greater than every number, RFC 4790 9.1).
- Match types (RFC 5228 2.7.1): ``:is``, ``:contains``, ``:matches`` (``*`` and ``?``, ``\\``
  escapes them; each ``*`` takes as few characters as it can, so ``"[*] *"`` splits a subject
  as RFC 5229 3.2's example does, and the substrings become ``${1}``...), and from RFC 5231
  ``:count`` and ``:value`` with a relation.
- Address parts (RFC 5228 2.7.4, RFC 5233): ``:all``, ``:localpart``, ``:domain``, ``:user``
  and ``:detail`` with ``+`` as the separator.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LEADING_DIGITS = re.compile(r"[0-9]+")
DETAIL_SEPARATOR = "+"


def fold(value: str, comparator: str) -> str:
    return value.translate(_ASCII_LOWER) if comparator == "i;ascii-casemap" else value


def numeric(value: str) -> tuple[int, str] | None:
    """i;ascii-numeric's value as a key that sorts as the number: (digits, digits) of the
    leading digits less their leading zeros; None (positive infinity) without any. Not
    ``int()``: Python refuses strings of more than 4,300 digits, and RFC 4790 9.1 bounds
    none (a header of 4,301 nines crashed the script, and the sender's mail skipped it)."""
    found = _LEADING_DIGITS.match(value)
    if not found:
        return None
    digits = found.group().lstrip("0") or "0"
    return len(digits), digits


def _order(a: str, b: str, comparator: str) -> int:
    """-1, 0, 1 as ``a`` sorts before, with or after ``b`` under ``comparator``."""
    if comparator == "i;ascii-numeric":
        x, y = numeric(a), numeric(b)
        if x is None or y is None:
            return (x is None) - (y is None)
        return (x > y) - (x < y)
    a, b = fold(a, comparator), fold(b, comparator)
    return (a > b) - (a < b)


_RELATIONS = {
    "gt": lambda o: o > 0,
    "ge": lambda o: o >= 0,
    "lt": lambda o: o < 0,
    "le": lambda o: o <= 0,
    "eq": lambda o: o == 0,
    "ne": lambda o: o != 0,
}


_STAR, _ONE = object(), object()
MATCH_STEPS = 2_000_000  # ``:matches`` work one script run may do: about half a second


class MatchBudgetExhausted(Exception):
    """A script run's ``:matches`` tests took more than their budget (``MatchBudget``)."""


class MatchBudget:
    """What ``:matches`` may still cost in one script run, in steps of the glob walk (a
    long pattern with ``?`` against a long value costs pattern x value of them) or, for a
    pattern of ``*`` and literals only, a step per KiB searched. Without it a 1,000-character
    pattern against a 150 KB body held up delivery for 32 s, and longer ones for hours."""

    def __init__(self, steps: int = MATCH_STEPS) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise MatchBudgetExhausted(f"more than {MATCH_STEPS} steps of :matches")


@functools.lru_cache(maxsize=1024)
def wildcard_tokens(pattern: str) -> tuple:
    """A ``:matches`` pattern as tokens: ``_STAR``, ``_ONE`` or a literal character."""
    tokens: list = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i + 1])
            i += 2
            continue
        if char == "*":
            tokens.append(_STAR)  # "**" stays two: each wildcard is a match variable
        else:
            tokens.append(_ONE if char == "?" else char)
        i += 1
    return tuple(tokens)


def wildcard_match(
    tokens: tuple, text: str, budget: MatchBudget | None = None
) -> list[tuple[int, int]] | None:
    """Where each wildcard of ``tokens`` matched in ``text``, or None for no match.

    The classic glob walk: a ``*`` first takes nothing and, when the rest fails, only the
    latest ``*`` takes one more character. Earlier stars thus keep the shortest match that
    works (RFC 5229 3.2: ``"[*] *"`` splits at the first ``] ``), and the cost is at most
    pattern x text steps: no pattern makes it backtrack exponentially, as a regular
    expression of ``(.*?)`` groups can (``"*a*a*a*a*b"`` on a long header). A pattern
    without ``?`` (most are) is matched by ``_star_match`` instead: the same spans, found by
    ``str.find``. ``budget`` is charged for the work (``MatchBudgetExhausted`` past it).
    """
    runs = _literal_runs(tokens)
    if runs is not None:
        if budget is not None:
            budget.spend(1 + len(text) // 1024)
        return _star_match(runs, text)
    return _walk(tokens, text, budget)


def _walk(tokens: tuple, text: str, budget: MatchBudget | None) -> list[tuple[int, int]] | None:
    """The glob walk of ``wildcard_match``, a step at a time, ``budget`` charged for them."""
    limit = budget.left if budget is not None else math.inf
    steps = 0
    spans: dict[int, tuple[int, int]] = {}
    p = t = 0
    star = -1
    star_text = 0
    while t < len(text):
        steps += 1
        if steps > limit:
            budget.spend(steps)  # type: ignore[union-attr] - more than is left: raises
        token = tokens[p] if p < len(tokens) else None
        if token is _STAR:
            star, star_text = p, t
            spans[p] = (t, t)
            p += 1
        elif token is not None and (token is _ONE or token == text[t]):
            if token is _ONE:
                spans[p] = (t, t + 1)
            p += 1
            t += 1
        elif star >= 0:
            star_text += 1
            spans[star] = (spans[star][0], star_text)
            p, t = star + 1, star_text
        else:
            return None
    if budget is not None:
        budget.spend(steps)
    while p < len(tokens) and tokens[p] is _STAR:
        spans[p] = (t, t)
        p += 1
    if p != len(tokens):
        return None
    return [spans[i] for i, token in enumerate(tokens) if token is _STAR or token is _ONE]


@functools.lru_cache(maxsize=1024)
def _literal_runs(tokens: tuple) -> tuple[str, ...] | None:
    """The literal text between the stars of a pattern without ``?`` (one run more than
    there are stars, some maybe empty); None when it has a ``?``."""
    runs: list[list[str]] = [[]]
    for token in tokens:
        if token is _ONE:
            return None
        if token is _STAR:
            runs.append([])
        else:
            runs[-1].append(token)
    return tuple("".join(run) for run in runs)


def _star_match(runs: tuple[str, ...], text: str) -> list[tuple[int, int]] | None:
    """``wildcard_match`` of a pattern of stars and literals, in linear time: the first run
    begins the text, the last ends it, and each run between is found at its first place
    after the one before (which is where the walk's earlier stars, each taking as little as
    it can, put it). The spans of the stars."""
    if len(runs) == 1:
        return [] if text == runs[0] else None
    first, last = runs[0], runs[-1]
    start, end = len(first), len(text) - len(last)
    if end < start or not text.startswith(first) or not text.endswith(last):
        return None
    spans = []
    for run in runs[1:-1]:
        found = text.find(run, start, end)
        if found < 0:
            return None
        spans.append((start, found))
        start = found + len(run)
    spans.append((start, end))
    return spans


@dataclass(frozen=True)
class Matcher:
    """One test's way of comparing: ``match`` is "is", "contains", "matches", "count" or
    "value"; ``relation`` the RFC 5231 relation for the last two."""

    match: str = "is"
    comparator: str = "i;ascii-casemap"
    relation: str = "eq"

    @classmethod
    def from_checked(cls, checked: dict) -> Matcher:
        comparator = checked.get(":comparator", "i;ascii-casemap")
        for match in ("contains", "matches"):
            if checked.get(":" + match):
                return cls(match, comparator)
        for match in ("count", "value"):
            if ":" + match in checked:
                return cls(match, comparator, checked[":" + match])
        return cls("is", comparator)

    def test(
        self, values: Iterable[str], keys: list[str], budget: MatchBudget | None = None
    ) -> tuple[bool, list[str] | None]:
        """Does any value match any key? With the match variables of ``:matches``
        (``${0}`` the whole value, then one per wildcard) when it does. ``budget``: what
        ``:matches`` may still cost in this script run."""
        values = list(values)
        if self.match == "count":
            count = str(len(values))
            return any(self._relation(count, key) for key in keys), None
        for value in values:
            for key in keys:
                found = self._one(value, key, budget)
                if found is not None:
                    return True, found
        return False, None

    def _relation(self, value: str, key: str) -> bool:
        return _RELATIONS[self.relation](_order(value, key, self.comparator))

    def _one(self, value: str, key: str, budget: MatchBudget | None) -> list[str] | None:
        comparator = self.comparator
        if self.match == "value":
            return [] if self._relation(value, key) else None
        if self.match == "is":
            return [value] if _order(value, key, comparator) == 0 else None
        folded, folded_key = fold(value, comparator), fold(key, comparator)
        if self.match == "contains":
            return [value] if folded_key in folded else None
        spans = wildcard_match(wildcard_tokens(folded_key), folded, budget)
        if spans is None:
            return None
        # Folding keeps lengths (ASCII only), so the spans point into the original value.
        return [value] + [value[start:end] for start, end in spans]


def address_part(address: str, part: str) -> str | None:
    """One part of ``local@domain``; None when a ``:detail`` has no separator (the test
    then fails for that address, RFC 5233 4)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    if part == "user":
        return local.split(DETAIL_SEPARATOR, 1)[0]
    if part == "detail":
        user, separator, detail = local.partition(DETAIL_SEPARATOR)
        return detail if separator else None
    return address


def part_of(checked: dict) -> str:
    for part in ("localpart", "domain", "user", "detail", "all"):
        if checked.get(":" + part):
            return part
    return "all"
