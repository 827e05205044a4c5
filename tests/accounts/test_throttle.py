"""Login throttling: growing delays, temporary refusal, per address and per account."""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock

from tests.support.fixtures import make_world
from txmailhost.accounts import IMailAccount
from txmailhost.accounts.throttle import LoginThrottle, LoginThrottled, ThrottledPortal, client_key


def test_client_key_counts_ipv6_per_64_and_unwraps_mapped_ipv4():
    assert client_key(IPv4Address("TCP", "192.0.2.1", 1)) == "192.0.2.1"
    a = client_key(IPv6Address("TCP", "2001:db8:1:2::5", 1))
    b = client_key(IPv6Address("TCP", "2001:db8:1:2:ffff::9", 1))
    assert a == b == "2001:db8:1:2::/64"
    assert client_key(IPv6Address("TCP", "::ffff:192.0.2.1", 1)) == "192.0.2.1"


def test_delays_grow_and_are_capped():
    throttle = LoginThrottle(Clock(), ip_limit=100, account_limit=100, max_delay=4)
    delays = [throttle.failed("192.0.2.1", "a@x.test") for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_address_is_blocked_after_its_limit_and_released_after_the_window():
    clock = Clock()
    throttle = LoginThrottle(clock, window=60, ip_limit=3, account_limit=100)
    for i in range(3):
        assert not throttle.blocked("192.0.2.1", f"u{i}@x.test")
        throttle.failed("192.0.2.1", f"u{i}@x.test")
    assert throttle.blocked("192.0.2.1", "other@x.test")
    assert not throttle.blocked("192.0.2.2", "other@x.test")
    clock.advance(61)
    assert not throttle.blocked("192.0.2.1", "other@x.test")


def test_account_is_blocked_when_attacked_from_many_addresses():
    throttle = LoginThrottle(Clock(), ip_limit=100, account_limit=5)
    for i in range(5):
        throttle.failed(f"192.0.2.{i}", "victim@x.test")
    assert throttle.blocked("198.51.100.1", "victim@x.test")
    assert not throttle.blocked("198.51.100.1", "someone-else@x.test")


def test_memory_is_bounded():
    throttle = LoginThrottle(Clock(), max_tracked=50)
    for i in range(500):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", f"u{i}@x.test")
    assert len(throttle._failures) <= 50


def test_throttled_portal_refuses_without_checking_the_password(tmp_path):
    world = make_world(tmp_path)
    world.add_user("alice@example.test")
    throttle = LoginThrottle(world.reactor, ip_limit=2, account_limit=100)
    portal = ThrottledPortal(world.portal, throttle)
    peer = IPv4Address("TCP", "192.0.2.9", 5)
    results = []
    for password in (b"bad-1", b"bad-2", b"secret-pw"):
        d = portal.login(UsernamePassword(b"alice@example.test", password), peer, IMailAccount)
        d.addBoth(results.append)
        world.reactor.advance(10)
    assert [type(r.value).__name__ for r in results[:2]] == ["UnauthorizedLogin"] * 2
    assert results[2].check(LoginThrottled)
