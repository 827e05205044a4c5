"""Where to deliver mail for a domain: its MX hosts and their addresses (RFC 5321 5.1).

- MX records sorted by preference, shuffled among equal preferences (load spreading, 5.1).
- No MX record (NOERROR, empty answer): the domain itself is the implicit MX (5.1).
- A single MX of "." is a null MX (RFC 7505): the domain accepts no mail, a permanent failure.
- CNAMEs are followed by dnspython for both MX and address lookups.
- Each host's AAAA then A records; a host without addresses is skipped.
- NXDOMAIN is reported as :class:`DomainNotFound` (the courier decides how long it stays
  temporary); timeouts, SERVFAIL and malformed answers as :class:`TemporaryDNSError`.

dnspython is blocking, so lookups run in the thread pool (DESIGN invariant 3). Answers are cached
for their TTL (dnspython's cache), so a queue full of mail for one domain asks once. The
nameservers are configurable (``relay.nameservers``); tests point them at a server on loopback.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from twisted.internet import threads
from twisted.internet.defer import Deferred


class DNSProblem(Exception):
    """Resolution failed; ``permanent`` says whether retrying can help."""

    permanent = False
    status = "4.4.3"  # RFC 3463: directory server failure


class TemporaryDNSError(DNSProblem):
    pass


class DomainNotFound(DNSProblem):
    status = "5.1.2"  # bad destination system address


class NullMX(DNSProblem):
    permanent = True
    status = "5.1.10"  # RFC 7505 4.2


@dataclass(frozen=True)
class MXHost:
    name: str
    preference: int
    addresses: list[str] = field(default_factory=list)


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"192.0.2.1"``, ``"192.0.2.1:5353"``, ``"2001:db8::1"`` or ``"[2001:db8::1]:5353"``."""
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


class MXResolver:
    """Resolves destination domains into an ordered list of :class:`MXHost`."""

    def __init__(
        self,
        reactor: Any,
        pool: Any,
        nameservers: list[str] | None = None,
        timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._random = rng or random.Random()
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
            ]
        else:
            self.resolver = dns.resolver.Resolver()  # the system's, from /etc/resolv.conf
        self.resolver.cache = dns.resolver.Cache()  # honours each record's TTL
        self.resolver.lifetime = timeout
        self.resolver.timeout = min(timeout, 3.0)

    def lookup(self, domain: str) -> Deferred[list[MXHost]]:
        return threads.deferToThreadPool(self._reactor, self._pool, self.lookup_sync, domain)

    def lookup_host(self, host: str) -> Deferred[list[MXHost]]:
        """A single named host (a smarthost): its addresses, no MX lookup."""
        return threads.deferToThreadPool(self._reactor, self._pool, self.lookup_host_sync, host)

    def lookup_host_sync(self, host: str) -> list[MXHost]:
        literal = _address_literal(f"[{host}]") if not host.startswith("[") else None
        if literal is not None:
            return [MXHost(literal, 0, [literal])]
        addresses = self._addresses(host)
        if not addresses:
            raise TemporaryDNSError(f"no address for the smarthost {host}")
        return [MXHost(host, 0, addresses)]

    def lookup_sync(self, domain: str) -> list[MXHost]:
        literal = _address_literal(domain)
        if literal is not None:
            return [MXHost(literal, 0, [literal])]
        exchanges = self._exchanges(domain)
        hosts: list[MXHost] = []
        problems: list[str] = []
        for preference, name in exchanges:
            try:
                addresses = self._addresses(name)
            except DNSProblem as e:
                problems.append(str(e))
                continue
            if addresses:
                hosts.append(MXHost(name, preference, addresses))
        if not hosts:
            why = "; ".join(problems) or "no address records"
            raise TemporaryDNSError(f"no usable mail server address for {domain}: {why}")
        return hosts

    def _exchanges(self, domain: str) -> list[tuple[int, str]]:
        try:
            answer = self.resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise DomainNotFound(f"domain {domain} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return [(0, domain)]  # implicit MX, RFC 5321 5.1
        except dns.exception.DNSException as e:
            raise TemporaryDNSError(f"MX lookup for {domain} failed: {e}") from None
        records = [(rr.preference, rr.exchange) for rr in answer]
        real = [(p, x) for p, x in records if x != dns.name.root]
        if not real:
            raise NullMX(f"{domain} accepts no mail (null MX, RFC 7505)")
        by_preference: dict[int, list[str]] = {}
        for preference, exchange in real:
            by_preference.setdefault(preference, []).append(exchange.to_text(omit_final_dot=True))
        ordered: list[tuple[int, str]] = []
        for preference in sorted(by_preference):
            names = sorted(set(by_preference[preference]))
            self._random.shuffle(names)
            ordered.extend((preference, name) for name in names)
        return ordered

    def _addresses(self, host: str) -> list[str]:
        addresses: list[str] = []
        for rdtype in ("AAAA", "A"):
            try:
                answer = self.resolver.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as e:
                raise TemporaryDNSError(f"{rdtype} lookup for {host} failed: {e}") from None
            addresses.extend(rr.address for rr in answer)
        return addresses


def _address_literal(domain: str) -> str | None:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 4.1.3): connect there directly."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    text = domain[1:-1]
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
