"""How a nameserver is written in the config (``relay.nameservers``): an IP address and a port.

Pure parsing, no Twisted or dnspython: ``config.py`` validates the setting with it and
``relay/mx.py`` turns the result into dnspython nameservers, so both read the same syntax.
"""

from __future__ import annotations

import ipaddress


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"192.0.2.1"``, ``"192.0.2.1:5353"``, ``"2001:db8::1"`` or ``"[2001:db8::1]:5353"``.

    Raises ``ValueError`` for anything else (a host name, a port that isn't a number).
    """
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        host = host.rstrip("]")
        return str(ipaddress.ip_address(host)), _port(port or "53")
    if text.count(":") == 1:
        host, port = text.split(":")
        return str(ipaddress.ip_address(host)), _port(port)
    return str(ipaddress.ip_address(text)), 53


def _port(text: str) -> int:
    """A UDP/TCP port: ASCII digits from 1 to 65535 (``int()`` also takes "-1", " 5", "٣")."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port {text!r}")
    return int(text)
