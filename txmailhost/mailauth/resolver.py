"""``MailAuthResolver``: the one dnspython resolver every mail-authentication lookup goes through.

SPF (pyspf), DKIM keys (dkimpy), DMARC policies and ``txmailhost dns --check`` all ask it, so
they share one configuration (``relay.nameservers``, ``mailauth.dns_timeout``) and one LRU
cache that honours each answer's TTL: the second message from a sender costs no DNS traffic.
The cache is bounded in bytes, not only in answers (``AnswerCache``): a sender's DNS chooses
how large its answers are.

dnspython blocks, so it is called only where blocking is allowed: the content filters' threads
(``filters/chain.py``) and the CLI, which runs no reactor. On the reactor thread (DESIGN
invariant 3) only inside ``cached_only``, which never touches the network; ``deferred`` is the
way in from there for the rest.

The answers distinguish the three outcomes the RFCs care about (RFC 7208 2.6, RFC 7489 6.6.3):
data, no data (NXDOMAIN or an empty answer: ``[]``), and a temporary failure (timeout,
SERVFAIL, no reachable server: ``DNSTempError``), which the checks turn into ``temperror``.

``cached_only`` lets a check be tried on the reactor thread: inside it a lookup answers from
the cache (or for a special-use name) and never goes to the network; a name not cached raises
``NotCached`` and marks the attempt ``missed``, and the caller throws the attempt away
and runs the check in a thread. Most mail comes from senders seen within their records'
TTLs, and a check answered from the cache costs a tenth of a millisecond, against half a
millisecond of CPU for the trip to a thread and back on a busy server.

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
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from twisted.internet import threads
from twisted.internet.defer import Deferred

from txmailhost.dnscache import AnswerCache
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


class NotCached(DNSTempError):
    """Inside ``cached_only``: the answer isn't in the cache, and the network wasn't asked.
    A temporary failure to whoever catches it (pyspf, dkimpy), so nothing treats it as an
    answer; ``CacheAttempt.missed`` says the attempt's result must be thrown away."""


class CacheAttempt:
    """One ``cached_only`` attempt: ``missed`` once any lookup inside it wasn't cached."""

    missed = False


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
        self._attempt = threading.local()  # this thread's ``cached_only`` attempt, if any

    @contextmanager
    def cached_only(self) -> Iterator[CacheAttempt]:
        """Lookups inside answer only from the cache (see the module docstring); the attempt
        yielded says whether one of them had to be refused."""
        attempt = CacheAttempt()
        outer = getattr(self._attempt, "current", None)
        self._attempt.current = attempt
        try:
            yield attempt
        finally:
            self._attempt.current = outer
            if outer is not None and attempt.missed:
                outer.missed = True

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
        attempt = getattr(self._attempt, "current", None)
        if attempt is not None:
            cached = self._cached(absolute, rdtype)
            if cached is None:
                attempt.missed = True
                raise NotCached(f"DNS {rdtype} lookup of {name}: not in the cache")
            return cached
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

    def from_cache(self, work: Callable[..., T], *args: Any) -> tuple[bool, T | None]:
        """``work(*args)`` inside ``cached_only``: ``(True, its result)``, or ``(False,
        None)`` when a lookup it made wasn't cached (whatever it made of the ``NotCached``;
        it must be done again where DNS may block). Its other exceptions go up."""
        with self.cached_only() as attempt:
            try:
                result = work(*args)
            except Exception:
                if not attempt.missed:
                    raise
                return False, None
        return (False, None) if attempt.missed else (True, result)

    def _cached(self, name: dns.name.Name, rdtype: str) -> list[Any] | None:
        """What ``resolve`` would answer from the cache alone, as dnspython's own resolution
        reads it (``_Resolution.next_request``: the answer of that type, else a cached
        NXDOMAIN); None when it would have to ask the network."""
        cache = self.resolver.cache
        if cache is None:
            return None
        kind = dns.rdatatype.from_text(rdtype)
        answer = cache.get((name, kind, dns.rdataclass.IN))
        if answer is not None:
            return [] if answer.rrset is None else list(answer)
        answer = cache.get((name, dns.rdatatype.ANY, dns.rdataclass.IN))
        if answer is not None and answer.response.rcode() == dns.rcode.NXDOMAIN:
            return []
        return None

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
