"""Numbers as protocols, DNS records, files and the command line write them: ASCII digits.

``str.isdigit()`` is true of "²", "٣" and every other Unicode digit: ``int()`` then refuses the
first (a ``ValueError`` where a clear refusal was meant) and reads the second as 3. A number
in a Sieve script, a DMARC record, an MTA-STS policy, a remote server's EHLO or a file moved
in from another server is text a stranger wrote, so it is read here: ASCII digits, or not a
number. (``bytes.isdigit()`` is ASCII-only already.) And at most ``MOST`` of them: no count,
size, port or time read here needs more, and ``int()`` refuses a string of over 4,300 digits
with a ``ValueError`` too.
"""

from __future__ import annotations

MOST = 20  # digits: 2**64 has 20


def is_number(text: str) -> bool:
    """Is ``text`` one to ``MOST`` ASCII digits?"""
    return 0 < len(text) <= MOST and text.isascii() and text.isdigit()


def number_or(text: str, default: int) -> int:
    """``text`` read as a decimal number (``is_number``), else ``default``."""
    return int(text) if is_number(text) else default
