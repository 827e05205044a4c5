"""Facts about the client at the other end of a connection, shared by every protocol."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

# Seconds a closing session waits for the client's TLS close_notify (or FIN) before the
# connection is aborted.
CLOSE_GRACE = 3.0


def printable(value: bytes | str, limit: int = 200) -> str:
    """What the client sent, as one line of printable ASCII: for reply texts and log fields
    (no CR/LF injection into either)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_loopback(peer: Any) -> bool:
    """True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z; UNIX sockets and anything else count
    as remote."""
    ip = _address(peer)
    return ip is not None and ip.is_loopback


def _address(endpoint: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a Twisted address object, an IPv4-mapped IPv6 one as IPv4."""
    if not isinstance(endpoint, (IPv4Address, IPv6Address)):
        return None
    return ip_of(endpoint.host)


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text`` (a zone id after ``%`` dropped), an IPv4-mapped IPv6 one as
    IPv4, so one client has one address whichever socket family it came in on; None when
    ``text`` is not an IP address."""
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


_OWN_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def literal_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``ip_of``, also for an address literal as HELO gives one (``[192.0.2.1]``,
    ``[IPv6:2001:db8::1]``)."""
    return ip_of(text.strip("[]").removeprefix("IPv6:"))


@functools.lru_cache(maxsize=4096)
def is_own_network(text: str) -> bool:
    """Is ``text`` (an address, also as a HELO literal) on the operator's own networks:
    loopback, private, shared (CGNAT) or link-local? Not an address counts as own too. The
    spam checks and the reverse DNS lookup leave these alone. Remembered: asked a few times
    a message on the reactor thread, mostly about the same few clients, and parsing an
    address costs microseconds each time."""
    address = literal_ip(text)
    return address is None or any(address in n for n in _OWN_NETWORKS)


SAME_ADDRESS = "same-address"
LOOPBACK = "loopback"


class PlaintextAuth:
    """Where a password may be sent without TLS (DESIGN invariant 6, RFC 8314 section 5).

    The default is Dovecot's rule: only when the client's address is the server's own address
    on that connection (a client on the same machine talking to the address it listens on).
    Not "any loopback address": a local reverse proxy, a container bridge or any other local
    process makes every remote client look like 127.0.0.x, and its password would then cross
    a real network in clear text before it got here. ``sources`` may also name ``"loopback"``
    (all of 127.0.0.0/8 and ::1) and networks in CIDR form; an empty list means TLS always.
    Where plain text is refused, the protocols don't advertise password mechanisms either.
    """

    def __init__(self, sources: tuple[str, ...] | list[str] = (SAME_ADDRESS,)) -> None:
        self.same_address = False
        self.loopback = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for source in sources:
            if source == SAME_ADDRESS:
                self.same_address = True
            elif source == LOOPBACK:
                self.loopback = True
            else:
                self.networks.append(ipaddress.ip_network(source, strict=False))

    def allows(self, peer: Any, host: Any) -> bool:
        """May the client at ``peer``, connected to our address ``host``, log in in clear?"""
        client = _address(peer)
        if client is None:
            return False
        if self.same_address and client == _address(host):
            return True
        if self.loopback and client.is_loopback:
            return True
        return any(client.version == net.version and client in net for net in self.networks)


def describe_tls(transport: Any, how: str | None) -> str:
    """For log lines: ``"none"``, or how TLS started (``"implicit"``, ``"starttls"``) with the
    negotiated version and cipher, e.g. ``"starttls TLSv1.3 TLS_AES_256_GCM_SHA384"``.

    With implicit TLS the session's transport is Twisted's TLS protocol, whose ``getHandle``
    is the ``OpenSSL.SSL.Connection``; after STARTTLS that protocol sits at
    ``transport.protocol`` of the TCP transport.
    """
    if how is None:
        return "none"
    for layer in (transport, getattr(transport, "protocol", None)):
        get_handle = getattr(layer, "getHandle", None)
        connection = get_handle() if callable(get_handle) else None
        if hasattr(connection, "get_protocol_version_name"):
            with contextlib.suppress(Exception):  # mid-handshake or already torn down
                cipher = connection.get_cipher_name() or ""
                return f"{how} {connection.get_protocol_version_name()} {cipher}".rstrip()
    return how


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


@implementer(IPushProducer)
class OutputPressure:
    """Whether the client reads what the server writes, for the whole connection.

    Registered as the transport's streaming producer: Twisted pauses it once more than its
    buffer size (64 KiB) waits to be sent and resumes it when everything has gone. A client
    may pipeline commands without ever reading the replies; a server that keeps answering
    buffers them all (NOOP and HELP floods grew the server by 250 MiB in 8 seconds). The
    protocols take no further command while ``blocked``, so their input fills, reading
    stops, and the client's own writes block; ``on_resume`` carries on once the client reads.
    """

    def __init__(self, on_resume: Callable[[], None]) -> None:
        self.blocked = False
        self._on_resume = on_resume
        self._waiters: list[Deferred[None]] = []
        self._abort: Any = None  # the bound on a closing connection's wait for the client

    def pauseProducing(self) -> None:
        self.blocked = True

    def register(self, transport: Any) -> None:
        """Become ``transport``'s producer, unblocked: Twisted pauses a producer only on a later
        write that overfills its buffer (also after another producer, e.g. a POP3 message
        being streamed, had the transport for a while)."""
        self.blocked = False
        transport.registerProducer(self, True)

    def resumeProducing(self) -> None:
        if self.blocked:
            self._unblock()
            self._on_resume()

    def stopProducing(self) -> None:
        """The connection is gone: wake whoever waits (they check for that themselves)."""
        self._unblock()

    def _unblock(self) -> None:
        self.blocked = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def close(self, transport: Any, clock: Any, grace: float = CLOSE_GRACE) -> None:
        """End the session: send what is buffered, then close, within ``grace`` seconds.

        Twisted's TLS layer sends close_notify only once no producer is registered
        (``TLSMemoryBIOProtocol.loseConnection``), so this producer steps aside first;
        otherwise a client that waits for the server to close after LOGOUT/QUIT waits for
        ever. Reading goes on (the TLS close waits for the client's close_notify or EOF;
        what arrives is dropped by the protocols), and a client that never answers is cut
        off after ``grace`` so the session's descriptor and connection slot are freed.
        """
        if self._abort is not None:
            return
        transport.unregisterProducer()
        transport.resumeProducing()
        transport.loseConnection()
        self._abort = clock.callLater(grace, transport.abortConnection)

    def connection_lost(self) -> None:
        """The connection is gone: stop the close timer and wake whoever waits."""
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._unblock()

    def wait(self) -> Deferred[None]:
        """Fires when the client has read what was buffered (or the connection is gone)."""
        waiter: Deferred[None] = Deferred()
        if self.blocked:
            self._waiters.append(waiter)
        else:
            waiter.callback(None)
        return waiter
