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


@functools.lru_cache(maxsize=1024)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """A ``:matches`` pattern as a regular expression with one group per wildcard."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append("(.*?)")
        elif char == "?":
            out.append("(.)")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


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
        found = wildcard_regex(folded_key).match(folded)
        if found is None:
            return None
        # Folding keeps lengths (ASCII only), so the spans point into the original value.
        return [value] + [
            value[found.start(g) : found.end(g)] for g in range(1, found.re.groups + 1)
        ]


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
