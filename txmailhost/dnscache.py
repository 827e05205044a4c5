"""A DNS answer cache bounded in bytes, for both resolvers (mail authentication's and the relay's).

dnspython's caches are bounded in answers (``LRUCache``) or not at all (``Cache``), and the
DNS of a stranger (a sender's domain, the domain a bounce goes to) chooses how large its
answers are: 60,000-octet TXT records at names a sender made up, 16 names a message, kept
1.3 GB in each process of the mail-authentication resolver's ``LRUCache(10000)``.
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.message
import dns.resolver

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
