"""Facts about the client at the other end of a connection, shared by every protocol."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable(value: bytes | str, limit: int = 200) -> str:
    """What the client sent, as one line of printable ASCII: for reply texts and log fields
    (no CR/LF injection into either)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_loopback(peer: Any) -> bool:
    """True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z: the only peers that may send a plaintext
    password without TLS (DESIGN invariant 6). UNIX sockets and anything else count as remote."""
    if not isinstance(peer, (IPv4Address, IPv6Address)):
        return False
    try:
        ip = ipaddress.ip_address(peer.host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
