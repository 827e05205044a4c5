"""``MailAuthResolver``: the one dnspython resolver every mail-authentication lookup goes through.

SPF (pyspf), DKIM keys (dkimpy), DMARC policies and ``txmailhost dns --check`` all ask it, so
they share one configuration (``relay.nameservers``, ``mailauth.dns_timeout``) and one LRU
cache that honours each answer's TTL: the second message from a sender costs no DNS traffic.
The cache is bounded in bytes, not only in answers (``AnswerCache``): a sender's DNS chooses
how large its answers are.

dnspython blocks, so it is called only where blocking is allowed: the content filters run with
``blocking = True`` (their own thread pool, ``filters/chain.py``) and the CLI runs no reactor.
Nothing here is called on the reactor thread (DESIGN invariant 3); ``deferred`` is the way in
from there.

The answers distinguish the three outcomes the RFCs care about (RFC 7208 2.6, RFC 7489 6.6.3):
data, no data (NXDOMAIN or an empty answer: ``[]``), and a temporary failure (timeout,
SERVFAIL, no reachable server: ``DNSTempError``), which the checks turn into ``temperror``.

``budget`` bounds the lookups of one message, all of them together: each lookup has
``timeout`` seconds, but a sender picks how many it makes (8 DKIM keys, 8 From domains'
DMARC records, two keys per ARC set for 50 sets: 117 names), and DNS that never answers
held a filter thread for 117 timeouts, ten minutes at the default 5 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.resolver
from twisted.internet import threads
from twisted.internet.defer import Deferred

from txmailhost.nameservers import parse_nameserver

T = TypeVar("T")


# Special-use names (RFC 6761 6.2-6.4, RFC 6762, RFC 8375, RFC 2606 3, and the
# ".localdomain" of distributions' default host names): the system's DNS has nothing to say
# about them and is never asked. Nameservers configured by the administrator (a lab, the
# tests' own server) are asked for everything.
SPECIAL_USE = (
    "test", "example", "invalid", "localhost", "local", "localdomain", "home.arpa",
    "example.com", "example.net", "example.org",
)  # fmt: skip


def special_use(name: str) -> bool:
    name = name.lower().rstrip(".")
    return any(name == s or name.endswith("." + s) for s in SPECIAL_USE)


class DNSTempError(Exception):
    """A lookup that may succeed later (timeout, SERVFAIL, no nameserver answered)."""


# The largest answer the cache keeps, measured as its DNS message: a DKIM key record for
# RSA-8192 is about 1.5 KB, SPF and DMARC records far smaller (RFC 7208 3.4 asks for 512
# octets), MX, A and PTR sets smaller still. A larger answer is used but not kept: 60,000-octet
# TXT records at names a sender made up, 16 names a message, kept 1.3 GB in each process.
MAX_CACHED_ANSWER = 4096


class _Kept:
    """One cached answer as the bytes of its DNS message: dnspython's parsed objects cost 2 to
    16 times the message (16 for a TXT record of 2-octet strings or a large A RRset)."""

    __slots__ = ("wire", "expiration", "qname", "rdtype", "rdclass")

    def __init__(self, answer: dns.resolver.Answer, wire: bytes) -> None:
        self.wire = wire
        self.expiration = answer.expiration  # read by LRUCache
        self.qname, self.rdtype, self.rdclass = answer.qname, answer.rdtype, answer.rdclass


class AnswerCache(dns.resolver.LRUCache):
    """dnspython's LRU cache of at most ``max_size`` answers, each of at most
    ``MAX_CACHED_ANSWER`` bytes as it is kept: 10,000 answers are at most about 50 MB with
    their keys (measured). A hit parses the bytes again, tens of microseconds."""

    def get(self, key: dns.resolver.CacheKey) -> dns.resolver.Answer | None:
        kept: Any = super().get(key)  # a _Kept: LRUCache keeps any value with an expiration
        if kept is None:
            return None
        response = dns.message.from_wire(kept.wire)
        answer = dns.resolver.Answer(kept.qname, kept.rdtype, kept.rdclass, response)
        answer.expiration = kept.expiration  # the TTL counts from the first answer, as before
        return answer

    def put(self, key: dns.resolver.CacheKey, value: dns.resolver.Answer) -> None:
        try:
            wire = value.response.to_wire()
        except dns.exception.DNSException:  # not renderable again: not kept
            return
        if len(wire) <= MAX_CACHED_ANSWER:
            super().put(key, _Kept(value, wire))  # type: ignore[arg-type]


class MailAuthResolver:
    """dnspython configured once: ``nameservers`` as in ``relay.nameservers`` (empty: the
    system's /etc/resolv.conf), ``timeout`` seconds per lookup, ``cache_size`` answers kept
    (``AnswerCache``)."""

    def __init__(
        self,
        nameservers: tuple[str, ...] | list[str] = (),
        timeout: float = 5.0,
        cache_size: int = 10000,
    ) -> None:
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
            ]
        else:
            self.resolver = dns.resolver.Resolver()
        self.system = not nameservers
        self.resolver.cache = AnswerCache(cache_size)
        self.resolver.lifetime = timeout
        self.resolver.timeout = min(timeout, 3.0)
        self.timeout = timeout
        self._budget = threading.local()  # the deadline of this thread's ``budget``

    @contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """The lookups this thread makes inside share ``seconds`` in all (within an outer
        budget's): each one gets what is left of them, at most ``timeout``, and once they
        are spent every lookup is a ``DNSTempError`` at once, a ``temperror`` for what
        needed it."""
        outer = getattr(self._budget, "deadline", None)
        deadline = time.monotonic() + seconds
        self._budget.deadline = deadline if outer is None else min(deadline, outer)
        try:
            yield
        finally:
            self._budget.deadline = outer

    def lookup(self, name: str, rdtype: str) -> list[Any]:
        """The records of ``rdtype`` at ``name``; ``[]`` when there are none (NXDOMAIN or no
        data, or a special-use name and the system's DNS); ``DNSTempError`` when the answer
        may come later."""
        if self.system and special_use(name):
            return []
        try:
            absolute = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return []  # not a name that can exist: no data, never an exception upwards
        limits: dict[str, float] = {}  # outside a budget: the resolver's own lifetime
        deadline = getattr(self._budget, "deadline", None)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DNSTempError(f"DNS {rdtype} lookup of {name} not made: the time for "
                                   "this message's lookups is spent")  # fmt: skip
            limits["lifetime"] = min(self.timeout, left)
        try:
            answer = self.resolver.resolve(absolute, rdtype, search=False, **limits)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise DNSTempError(f"DNS {rdtype} lookup of {name} failed: {e}") from None
        except dns.exception.DNSException as e:
            raise DNSTempError(f"DNS {rdtype} lookup of {name} failed: {e}") from None
        return list(answer)

    def txt(self, name: str) -> list[bytes]:
        """Each TXT record at ``name``, its character-strings joined (RFC 7208 3.3)."""
        return [b"".join(record.strings) for record in self.lookup(name, "TXT")]

    def dkim_txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the key record at ``name`` (the first one, as dkimpy asks),
        None when there is none. A temporary failure raises dkimpy's own ``DnsTimeoutError``
        so a signature whose key can't be fetched yet is a temperror, not a failure."""
        import dkim

        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            records = self.txt(text)
        except DNSTempError as e:
            raise dkim.DnsTimeoutError(str(e)) from None
        return records[0] if records else None

    def spf_lookup(
        self, name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30
    ) -> list[tuple[tuple[str, str], Any]]:
        """pyspf's ``DNSLookup`` contract: ``[((name, qtype), value), ...]``; temporary
        failures raise ``spf.TempError`` (a ``temperror`` result, RFC 7208 2.6.6)."""
        import spf

        try:
            records = self.lookup(name, qtype)
        except DNSTempError as e:
            raise spf.TempError(str(e)) from None
        found: list[tuple[tuple[str, str], Any]] = []
        for rdata in records:
            if qtype in ("A", "AAAA"):
                found.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                found.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                found.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                found.append(((name, qtype), rdata.strings))
        return found

    def deferred(self, reactor: Any, pool: Any, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``work(*args)`` (which may call this resolver) in ``pool``: the way in from the
        reactor thread."""
        return threads.deferToThreadPool(reactor, pool, work, *args)
