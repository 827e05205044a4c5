"""xtext (RFC 3461 4): how DSN values (ENVID, ORCPT) travel in MAIL and RCPT parameters.

Printable ASCII except ``+`` and ``=``, everything else as ``+XX`` (upper-case hex). The SMTP
server decodes what clients send (``smtp/params.py``), the queue keeps the text decoded, and
the relay client encodes it again for the next hop, so a value survives any number of hops.
"""

from __future__ import annotations

import re

_XTEXT = re.compile(r"^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$")
_HEX = re.compile(r"\+([0-9A-F]{2})")


def decode(text: str) -> str:
    """xtext to text (``+XX`` octets above 0x7F as UTF-8 where they form it); ``ValueError``
    for anything that isn't xtext."""
    if not _XTEXT.match(text):
        raise ValueError(f"not xtext: {text!r}")
    octets = _HEX.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")
    return octets.decode("utf-8", "surrogateescape")


def encode(text: str) -> str:
    """Text to xtext: ``+``, ``=``, controls, space and non-ASCII (as UTF-8 octets) as ``+XX``."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)
