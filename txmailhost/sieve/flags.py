"""IMAP flags as Sieve's imap4flags extension sees them (RFC 5232 section 2).

A *list of flags* is a string list whose strings may each hold several flags separated by
spaces: ``["\\Seen $Label1", "Junk"]`` is three flags. Empty strings and runs of spaces
count for nothing. A flag IMAP would not accept is dropped, never an error: one that isn't
an IMAP atom (``foo(bar)``, non-ASCII), a keyword longer than IMAP takes
(``MAX_KEYWORD_LENGTH``) and a system flag a client can't set (``\\Recent``, ``\\Bogus``),
as RFC 5232 2 asks ("If a flag validity check fails, the flag MUST be ignored"). A flag
already in the list is not added again; flags compare without regard to ASCII case, as
Pigeonhole compares them, so ``\\seen`` and ``\\Seen`` are one flag.

A variable holding flags (``setflag "v" ...``, and the internal variable actions without a
name use) holds them as one string, separated by single spaces, as written by the script;
:func:`for_store` gives the store the canonical spelling of the system flags (``\\Seen``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from txmailhost.store.interfaces import MAX_KEYWORD_LENGTH, SYSTEM_FLAGS

_SYSTEM = {flag.lower(): flag for flag in SYSTEM_FLAGS}
# RFC 3501 9: atom = 1*ATOM-CHAR, any CHAR but ( ) { SP CTL % * " \ ]
_ATOM = re.compile(r"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+\Z")


def valid(flag: str) -> bool:
    """Can a client set ``flag`` in IMAP: a settable system flag, or a keyword atom?"""
    if flag.startswith("\\"):
        return flag.lower() in _SYSTEM
    return len(flag) <= MAX_KEYWORD_LENGTH and bool(_ATOM.match(flag))


# Between flags of a list (RFC 5232 3: space-separated): a tab too, as Pigeonhole reads it; a
# folded Subject added as flags keeps its tabs now that unfolding leaves them (message.py).
_SEPARATOR = re.compile(r"[ \t\r\n]+")


def split(strings: Iterable[str]) -> list[str]:
    """The flags named in ``strings``, in order, each once (compared without case); no
    check of validity (``hasflag`` keys and values are compared as written)."""
    found: list[str] = []
    seen: set[str] = set()
    for text in strings:
        for flag in _SEPARATOR.split(text):
            folded = flag.lower()
            if flag and folded not in seen:
                seen.add(folded)
                found.append(flag)
    return found


def parse(strings: Iterable[str]) -> list[str]:
    """A list of flags as an action stores it: split, invalid flags dropped, each once."""
    return [flag for flag in split(strings) if valid(flag)]


def add(current: str, strings: Iterable[str]) -> str:
    """``addflag``: the flags of ``current`` (a variable's value) and of ``strings``."""
    return " ".join(parse([current, *strings]))


def remove(current: str, strings: Iterable[str]) -> str:
    """``removeflag``: the flags of ``current`` except those named in ``strings``."""
    gone = {flag.lower() for flag in split(strings)}
    return " ".join(flag for flag in parse([current]) if flag.lower() not in gone)


def for_store(flags: Iterable[str]) -> frozenset[str]:
    """The flags as the store keeps them: system flags spelt as IMAP spells them."""
    return frozenset(_SYSTEM.get(flag.lower(), flag) for flag in flags)
