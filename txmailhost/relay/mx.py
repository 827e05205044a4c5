"""Where to deliver mail for a domain: its MX hosts and their addresses (RFC 5321 5.1).

- MX records sorted by preference, shuffled among equal preferences (load spreading, 5.1).
- No MX record (NOERROR, empty answer): the domain itself is the implicit MX (5.1).
- A single MX of "." is a null MX (RFC 7505): the domain accepts no mail, a permanent failure.
- CNAMEs are followed by dnspython for both MX and address lookups.
- Each host's AAAA then A records; a host without addresses is skipped.
- NXDOMAIN is reported as :class:`DomainNotFound`, and hosts that all answered for certain
  that they have no address (no data, NXDOMAIN) as :class:`NoMailHost` (the courier decides
  how long each stays temporary); timeouts, SERVFAIL and malformed answers as
  :class:`TemporaryDNSError`, also when they leave no host with an address.

dnspython is blocking, so lookups run in the thread pool (DESIGN invariant 3). Answers are cached
for their TTL (dnspython's cache), so a queue full of mail for one domain asks once. The
nameservers are configurable (``relay.nameservers``); tests point them at a server on loopback.

DNSSEC (``relay.dnssec``, for DANE): dnspython does not validate, so when the admin declares the
configured nameservers a trusted validating resolver (unbound on localhost, say), queries ask
for DNSSEC (DO and AD bits, RFC 6840 5.7) and an answer counts as authenticated when the
resolver set AD. Each :class:`MXHost` then says whether its MX and address answers were all
authenticated — RFC 7672 2.2.1/2.2.2: only then are its TLSA records looked up
(:meth:`MXResolver.lookup_tlsa`); without the setting, nothing is ever authenticated and DANE
is off.
"""

from __future__ import annotations

import ipaddress
import random
import time
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from twisted.internet import threads
from twisted.internet.defer import Deferred

from txmailhost.dnscache import AnswerCache
from txmailhost.nameservers import parse_nameserver
from txmailhost.relay.dane import TLSA, DANEPolicy

MAX_EXCHANGES = 10  # MX names resolved for one delivery attempt, in the order tried


class DNSProblem(Exception):
    """Resolution failed; ``permanent`` says whether retrying can help."""

    permanent = False
    status = "4.4.3"  # RFC 3463: directory server failure


class TemporaryDNSError(DNSProblem):
    pass


class DomainNotFound(DNSProblem):
    status = "5.1.2"  # bad destination system address


class NoMailHost(DNSProblem):
    """Every exchange (or the domain itself, as its implicit MX) answered that it has no
    address: no data or NXDOMAIN for both AAAA and A. RFC 5321 5.1 makes that an error, not
    a reason to retry for days; like NXDOMAIN of the domain, the courier still waits a grace
    period (DNS being set up) before it bounces."""

    status = "5.4.4"  # RFC 3463: unable to route


class NullMX(DNSProblem):
    permanent = True
    status = "5.1.10"  # RFC 7505 4.2


@dataclass(frozen=True)
class MXHost:
    name: str
    preference: int
    addresses: list[str] = field(default_factory=list)
    dnssec: bool = False
    """The MX answer (or its authenticated absence) and the address answers were all DNSSEC
    authenticated: TLSA records of this host may be trusted (RFC 7672 2.2)."""
    canonical: str = ""
    """Where the address lookups' CNAMEs led, when that isn't ``name`` (RFC 7672 2.2.2)."""


class MXResolver:
    """Resolves destination domains into an ordered list of :class:`MXHost`."""

    def __init__(
        self,
        reactor: Any,
        pool: Any,
        nameservers: list[str] | None = None,
        timeout: float = 10.0,
        rng: random.Random | None = None,
        dnssec: bool = False,
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
        # TTLs honoured, at most 10,000 answers of at most 4 KiB each (dnscache.py): the
        # domains mail goes to choose their answers, and dnspython's Cache() had no bound.
        self.resolver.cache = AnswerCache(10_000)
        self.resolver.lifetime = timeout
        self.resolver.timeout = min(timeout, 3.0)
        self.dnssec = dnssec
        if dnssec:
            self.resolver.use_edns(0, dns.flags.DO, 1232)
            self.resolver.flags = dns.flags.RD | dns.flags.AD

    def _authenticated(self, response: dns.message.Message | None) -> bool:
        """Whether the trusted validating resolver vouched for ``response`` (its AD bit)."""
        return self.dnssec and response is not None and bool(response.flags & dns.flags.AD)

    def lookup(self, domain: str) -> Deferred[list[MXHost]]:
        return threads.deferToThreadPool(self._reactor, self._pool, self.lookup_sync, domain)

    def lookup_host(self, host: str) -> Deferred[list[MXHost]]:
        """A single named host (a smarthost): its addresses, no MX lookup."""
        return threads.deferToThreadPool(self._reactor, self._pool, self.lookup_host_sync, host)

    def lookup_host_sync(self, host: str) -> list[MXHost]:
        literal = _address_literal(f"[{host}]") if not host.startswith("[") else None
        if literal is not None:
            return [MXHost(literal, 0, [literal])]
        addresses, _, _ = self._addresses(host)
        if not addresses:
            raise TemporaryDNSError(f"no address for the smarthost {host}")
        return [MXHost(host, 0, addresses)]

    def lookup_sync(self, domain: str) -> list[MXHost]:
        literal = _address_literal(domain)
        if literal is not None:
            return [MXHost(literal, 0, [literal])]
        exchanges, secure = self._exchanges(domain)
        hosts: list[MXHost] = []
        problems: list[str] = []
        # Each name is resolved in turn in the shared DNS pool: a domain of 30 MX names whose
        # lookups time out held a pool thread for 30 timeouts, and mail for other domains
        # waited behind it. At most MAX_EXCHANGES names, and no new one after twice the DNS
        # timeout (those resolved by then are tried; none is a temporary failure).
        deadline = time.monotonic() + 2 * self.resolver.lifetime
        empty: list[str] = []  # names whose lookups said "no address", for certain
        for preference, name in exchanges[:MAX_EXCHANGES]:
            if time.monotonic() > deadline:
                problems.append(f"MX names past the first {len(hosts) + len(problems)} not tried")
                break
            try:
                addresses, addresses_secure, canonical = self._addresses(name)
            except DNSProblem as e:
                problems.append(str(e))
                continue
            if addresses:
                canonical = canonical if canonical != name else ""
                hosts.append(
                    MXHost(name, preference, addresses, secure and addresses_secure, canonical)
                )
            else:
                empty.append(name)
        if not hosts and not problems:
            names = ", ".join(empty)
            raise NoMailHost(
                f"no address records (A or AAAA) for {names}, where mail for {domain} goes"
            )
        if not hosts:
            why = "; ".join(problems)
            raise TemporaryDNSError(f"no usable mail server address for {domain}: {why}")
        return hosts

    def _exchanges(self, domain: str) -> tuple[list[tuple[int, str]], bool]:
        """The exchanges in the order to try them, and whether the answer was authenticated."""
        try:
            answer = self.resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise DomainNotFound(f"domain {domain} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer as e:
            # implicit MX, RFC 5321 5.1; secure when the absence of MX was authenticated
            return [(0, domain)], self._authenticated(e.kwargs.get("response"))
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
        return ordered, self._authenticated(answer.response)

    def _addresses(self, host: str) -> tuple[list[str], bool, str]:
        """The host's addresses, whether every answer was authenticated, and its CNAME target."""
        addresses: list[str] = []
        secure = self.dnssec
        canonical = host
        for rdtype in ("AAAA", "A"):
            try:
                answer = self.resolver.resolve(host, rdtype)
            except dns.resolver.NoAnswer as e:
                secure = secure and self._authenticated(e.kwargs.get("response"))
                continue
            except dns.resolver.NXDOMAIN:
                continue
            except dns.exception.DNSException as e:
                raise TemporaryDNSError(f"{rdtype} lookup for {host} failed: {e}") from None
            secure = secure and self._authenticated(answer.response)
            canonical = answer.canonical_name.to_text(omit_final_dot=True)
            addresses.extend(rr.address for rr in answer)
        return addresses, secure, canonical

    def lookup_tlsa(self, host: MXHost, domain: str, port: int = 25) -> Deferred[DANEPolicy | None]:
        return threads.deferToThreadPool(
            self._reactor, self._pool, self.lookup_tlsa_sync, host, domain, port
        )

    def lookup_tlsa_sync(self, host: MXHost, domain: str, port: int = 25) -> DANEPolicy | None:
        """The authenticated TLSA RRset of ``host`` (RFC 7672 2.2), or None: DANE doesn't apply.

        Only for a host whose MX and address answers were authenticated. The CNAME-expanded
        name is asked first, then the MX name (2.2.2). An authenticated denial or an
        unauthenticated answer means no DANE; a failed lookup raises
        :class:`TemporaryDNSError` — the host can't be used (2.2: an attacker who blocks the
        TLSA query must not get a downgrade).
        """
        if not host.dnssec:
            return None
        for base in [n for n in (host.canonical, host.name) if n]:
            try:
                answer = self.resolver.resolve(f"_{port}._tcp.{base}", "TLSA")
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as e:
                responses = e.kwargs.get("responses") or {}
                response = e.kwargs.get("response") or next(iter(responses.values()), None)
                if not self._authenticated(response):
                    return None  # insecure denial: no DANE
                continue
            except dns.exception.DNSException as e:
                raise TemporaryDNSError(f"TLSA lookup for {base} failed: {e}") from None
            if not self._authenticated(answer.response):
                return None
            records = tuple(TLSA(rr.usage, rr.selector, rr.mtype, rr.cert) for rr in answer)
            names = tuple(dict.fromkeys(n.lower() for n in (base, host.name, domain) if n))
            return DANEPolicy(base, records, names)
        return None


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
