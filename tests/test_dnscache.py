"""The DNS answer cache both resolvers share (dnscache.py): bounded in bytes, TTLs kept."""

from __future__ import annotations

import time

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from tests.relay.test_mx import dns_server, resolver  # noqa: F401 - fixture, helper
from txmailhost.dnscache import MAX_CACHED_ANSWER, AnswerCache


def answer(name: str, addresses: list[str], ttl: int = 300) -> dns.resolver.Answer:
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", "A", addresses))
    qname = dns.name.from_text(name)
    return dns.resolver.Answer(qname, dns.rdatatype.A, dns.rdataclass.IN, response)


def test_a_small_answer_comes_back_whole_and_a_large_one_is_not_kept():
    cache = AnswerCache(100)
    small = answer("small.test.", ["192.0.2.1", "192.0.2.2"])
    key = (small.qname, small.rdtype, small.rdclass)
    cache.put(key, small)
    again = cache.get(key)
    assert again is not None and sorted(r.address for r in again) == ["192.0.2.1", "192.0.2.2"]
    assert again.expiration == small.expiration
    large = answer("large.test.", [f"10.0.{n // 256}.{n % 256}" for n in range(400)])
    assert len(large.response.to_wire()) > MAX_CACHED_ANSWER
    cache.put((large.qname, large.rdtype, large.rdclass), large)
    assert cache.get((large.qname, large.rdtype, large.rdclass)) is None


def test_an_expired_answer_is_not_given_back():
    cache = AnswerCache(100)
    old = answer("old.test.", ["192.0.2.9"], ttl=1)
    old.expiration = time.time() - 1
    key = (old.qname, old.rdtype, old.rdclass)
    cache.put(key, old)
    assert cache.get(key) is None


def test_the_relay_resolver_caches_in_it(dns_server):  # noqa: F811 - the fixture
    """The relay's MX lookups used dnspython's ``Cache()``, without any bound: the domains
    mail is sent to choose how large their answers are."""
    dns_server.add("example.test", "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    mx = resolver(dns_server)
    assert isinstance(mx.resolver.cache, AnswerCache)
    for _ in range(2):
        assert [h.addresses for h in mx.lookup_sync("example.test")] == [["127.0.0.2"]]
    assert dns_server.queries.count(("example.test.", "MX")) == 1
