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
import re
from collections.abc import Iterable
from dataclasses import dataclass

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LEADING_DIGITS = re.compile(r"[0-9]+")
DETAIL_SEPARATOR = "+"


def fold(value: str, comparator: str) -> str:
    return value.translate(_ASCII_LOWER) if comparator == "i;ascii-casemap" else value


def numeric(value: str) -> int | None:
    """i;ascii-numeric's value: the leading digits, None (positive infinity) without any."""
    found = _LEADING_DIGITS.match(value)
    return int(found.group()) if found else None


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


def wildcard_match(tokens: tuple, text: str) -> list[tuple[int, int]] | None:
    """Where each wildcard of ``tokens`` matched in ``text``, or None for no match.

    The classic glob walk: a ``*`` first takes nothing and, when the rest fails, only the
    latest ``*`` takes one more character. Earlier stars thus keep the shortest match that
    works (RFC 5229 3.2: ``"[*] *"`` splits at the first ``] ``), and the cost is at most
    pattern x text steps: no pattern makes it backtrack exponentially, as a regular
    expression of ``(.*?)`` groups can (``"*a*a*a*a*b"`` on a long header).
    """
    spans: dict[int, tuple[int, int]] = {}
    p = t = 0
    star = -1
    star_text = 0
    while t < len(text):
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
    while p < len(tokens) and tokens[p] is _STAR:
        spans[p] = (t, t)
        p += 1
    if p != len(tokens):
        return None
    return [spans[i] for i, token in enumerate(tokens) if token is _STAR or token is _ONE]


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

    def test(self, values: Iterable[str], keys: list[str]) -> tuple[bool, list[str] | None]:
        """Does any value match any key? With the match variables of ``:matches``
        (``${0}`` the whole value, then one per wildcard) when it does."""
        values = list(values)
        if self.match == "count":
            count = str(len(values))
            return any(self._relation(count, key) for key in keys), None
        for value in values:
            for key in keys:
                found = self._one(value, key)
                if found is not None:
                    return True, found
        return False, None

    def _relation(self, value: str, key: str) -> bool:
        return _RELATIONS[self.relation](_order(value, key, self.comparator))

    def _one(self, value: str, key: str) -> list[str] | None:
        comparator = self.comparator
        if self.match == "value":
            return [] if self._relation(value, key) else None
        if self.match == "is":
            return [value] if _order(value, key, comparator) == 0 else None
        folded, folded_key = fold(value, comparator), fold(key, comparator)
        if self.match == "contains":
            return [value] if folded_key in folded else None
        spans = wildcard_match(wildcard_tokens(folded_key), folded)
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
