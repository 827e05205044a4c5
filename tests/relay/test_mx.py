"""MX resolution against a DNS server on loopback (RFC 5321 5.1, RFC 7505)."""

from __future__ import annotations

import random

import pytest

from tests.support.dns import DNSServer
from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.relay.mx import (
    DomainNotFound,
    MXResolver,
    NoMailHost,
    NullMX,
    TemporaryDNSError,
    parse_nameserver,
)


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


def resolver(dns_server: DNSServer, seed: int = 0, timeout: float = 2.0) -> MXResolver:
    return MXResolver(
        SyncReactor(),
        SyncThreadPool(),
        nameservers=[dns_server.address],
        timeout=timeout,
        rng=random.Random(seed),
    )


def test_mx_hosts_are_ordered_by_preference(dns_server):
    dns_server.add("example.test", "MX", "20 backup.example.test.", "10 primary.example.test.")
    dns_server.add("primary.example.test", "A", "127.0.0.2")
    dns_server.add("backup.example.test", "A", "127.0.0.3")
    hosts = resolver(dns_server).lookup_sync("example.test")
    assert [(h.name, h.preference, h.addresses) for h in hosts] == [
        ("primary.example.test", 10, ["127.0.0.2"]),
        ("backup.example.test", 20, ["127.0.0.3"]),
    ]


def test_equal_preference_hosts_come_in_random_order(dns_server):
    dns_server.add("example.test", "MX", "10 a.example.test.", "10 b.example.test.")
    dns_server.add("a.example.test", "A", "127.0.0.2")
    dns_server.add("b.example.test", "A", "127.0.0.3")
    orders = {
        tuple(h.name for h in resolver(dns_server, seed).lookup_sync("example.test"))
        for seed in range(20)
    }
    assert orders == {
        ("a.example.test", "b.example.test"),
        ("b.example.test", "a.example.test"),
    }


def test_domain_without_mx_is_its_own_implicit_mx(dns_server):
    dns_server.add("example.test", "A", "127.0.0.4")
    hosts = resolver(dns_server).lookup_sync("example.test")
    assert [(h.name, h.addresses) for h in hosts] == [("example.test", ["127.0.0.4"])]


def test_null_mx_is_a_permanent_failure(dns_server):
    dns_server.add("example.test", "MX", "0 .")
    with pytest.raises(NullMX) as e:
        resolver(dns_server).lookup_sync("example.test")
    assert e.value.permanent and e.value.status == "5.1.10"


def test_nxdomain_is_reported_as_domain_not_found(dns_server):
    with pytest.raises(DomainNotFound):
        resolver(dns_server).lookup_sync("nowhere.test")


def test_servfail_is_temporary(dns_server):
    dns_server.fail("example.test", "servfail")
    with pytest.raises(TemporaryDNSError):
        resolver(dns_server).lookup_sync("example.test")


def test_malformed_answer_is_temporary(dns_server):
    dns_server.fail("example.test", "garbage")
    with pytest.raises(TemporaryDNSError):
        resolver(dns_server, timeout=1.0).lookup_sync("example.test")


def test_mx_through_cname_resolves_to_the_target_addresses(dns_server):
    dns_server.add("example.test", "MX", "10 mail.example.test.")
    dns_server.add("mail.example.test", "CNAME", "real.example.test.")
    dns_server.add("real.example.test", "A", "127.0.0.5")
    hosts = resolver(dns_server).lookup_sync("example.test")
    assert hosts[0].addresses == ["127.0.0.5"]


def test_ipv6_addresses_come_before_ipv4(dns_server):
    dns_server.add("example.test", "MX", "10 mx.example.test.")
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    dns_server.add("mx.example.test", "AAAA", "::1")
    assert resolver(dns_server).lookup_sync("example.test")[0].addresses == ["::1", "127.0.0.2"]


def test_mx_host_without_addresses_is_skipped(dns_server):
    dns_server.add("example.test", "MX", "10 ghost.example.test.", "20 mx.example.test.")
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    assert [h.name for h in resolver(dns_server).lookup_sync("example.test")] == ["mx.example.test"]


def test_mx_hosts_that_all_answer_no_address_are_no_mail_host_544(dns_server):
    """RFC 5321 5.1: an error (Postfix bounces it), not a temporary failure for 5 days."""
    dns_server.add("example.test", "MX", "10 ghost.example.test.", "20 text.example.test.")
    dns_server.add("text.example.test", "TXT", '"no address here"')  # NOERROR, no data
    with pytest.raises(NoMailHost) as e:
        resolver(dns_server).lookup_sync("example.test")
    assert e.value.status == "5.4.4"
    assert "ghost.example.test" in str(e.value) and "text.example.test" in str(e.value)


def test_domain_without_mx_or_address_records_is_no_mail_host(dns_server):
    dns_server.add("example.test", "TXT", '"v=spf1 -all"')  # exists: no MX, no A, no AAAA
    with pytest.raises(NoMailHost):
        resolver(dns_server).lookup_sync("example.test")


def test_no_address_for_any_mx_with_one_lookup_failing_is_temporary(dns_server):
    dns_server.add("example.test", "MX", "10 ghost.example.test.", "20 broken.example.test.")
    dns_server.fail("broken.example.test", "servfail")
    with pytest.raises(TemporaryDNSError) as e:
        resolver(dns_server).lookup_sync("example.test")
    assert "broken.example.test" in str(e.value)


def test_address_literal_needs_no_dns(dns_server):
    assert resolver(dns_server).lookup_sync("[127.0.0.9]")[0].addresses == ["127.0.0.9"]
    assert dns_server.queries == []


def test_nameserver_may_name_a_port():
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    assert parse_nameserver("192.0.2.1") == ("192.0.2.1", 53)


def test_at_most_max_exchanges_names_are_resolved(dns_server):
    from txmailhost.relay.mx import MAX_EXCHANGES

    names = [f"{n} mx{n:02d}.example.test." for n in range(30)]
    dns_server.add("example.test", "MX", *names)
    for n in range(30):
        dns_server.add(f"mx{n:02d}.example.test", "A", "127.0.0.2")
    hosts = resolver(dns_server).lookup_sync("example.test")
    assert [h.name for h in hosts] == [f"mx{n:02d}.example.test" for n in range(MAX_EXCHANGES)]


def test_no_new_name_is_resolved_after_twice_the_dns_timeout(dns_server, monkeypatch):
    """30 MX names whose lookups time out held a thread of the shared DNS pool for 30
    timeouts (62 s with a 2 s timeout), and other domains' mail waited."""
    import time

    dns_server.add("example.test", "MX", *[f"{n} mx{n}.example.test." for n in range(30)])
    mx = resolver(dns_server, timeout=0.5)
    looked: list[str] = []

    def slow(host):
        looked.append(host)
        time.sleep(0.3)
        return ["127.0.0.2"], False, host

    monkeypatch.setattr(mx, "_addresses", slow)
    started = time.monotonic()
    hosts = mx.lookup_sync("example.test")
    assert time.monotonic() - started < 1.7  # 2 x 0.5 s, and the lookup under way
    assert 1 <= len(hosts) == len(looked) <= 4
