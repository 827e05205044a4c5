"""Facts about the client at the other end of a connection, shared by every protocol."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
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


def quick_ack(transport: Any) -> None:
    """Acknowledge what has arrived now, not when the kernel's delayed-ACK timer fires.

    After an IMAP continuation (``+ Ready for literal data``) a client writes the literal and
    then the rest of the line (often just CRLF) as two sends; with Nagle's algorithm on its
    side the second waits for the ACK of the first, and Linux, seeing a request/response
    exchange, delays that ACK by 40 ms. Python's imaplib APPEND measured 44 ms each, Dovecot
    2 ms. Setting ``TCP_QUICKACK`` sends the pending ACK at once. No-op where there is no TCP
    socket under the transport (tests, UNIX sockets, other platforms).
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    while option is not None and transport is not None:
        handle = getattr(transport, "getHandle", lambda: None)()
        if hasattr(handle, "setsockopt"):
            with contextlib.suppress(OSError):
                handle.setsockopt(socket.IPPROTO_TCP, option, 1)
            return
        transport = getattr(transport, "transport", None)  # a TLS or policy wrapper
