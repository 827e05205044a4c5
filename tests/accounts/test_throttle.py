"""Login throttling: growing delays, temporary refusal per address, and an account under attack
that still lets its owner in."""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.support.fixtures import make_world
from txmailhost.accounts import IMailAccount
from txmailhost.accounts.origins import DAY, LoginOrigins
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
        assert not throttle.address_blocked("192.0.2.1")
        throttle.failed("192.0.2.1", f"u{i}@x.test")
    assert throttle.address_blocked("192.0.2.1")
    assert not throttle.address_blocked("192.0.2.2")
    clock.advance(61)
    assert not throttle.address_blocked("192.0.2.1")


def test_account_is_under_attack_when_failures_from_many_addresses_add_up():
    throttle = LoginThrottle(Clock(), ip_limit=100, account_limit=5)
    for i in range(5):
        throttle.failed(f"192.0.2.{i}", "victim@x.test")
    assert throttle.under_attack("victim@x.test")
    assert not throttle.under_attack("someone-else@x.test")
    assert throttle.has_failed("192.0.2.1", "victim@x.test")
    assert not throttle.has_failed("198.51.100.1", "victim@x.test")


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


def _attempt(world, portal, password: bytes, host: str, user: bytes = b"bob@example.test"):
    """One login through ``portal`` from ``host``; the clock is run past any delay."""
    results: list = []
    peer = IPv4Address("TCP", host, 5)
    d = portal.login(UsernamePassword(user, password), peer, IMailAccount)
    d.addBoth(results.append)
    world.reactor.advance(10)
    (outcome,) = results
    if hasattr(outcome, "check"):
        return "throttled" if outcome.check(LoginThrottled) else "failed"
    return "ok"


def _attacked_portal(world, *, origins=None):
    """bob's account pushed past its limit of 6 by 3 attacker addresses, 2 guesses each."""
    world.add_user("bob@example.test")
    throttle = LoginThrottle(world.reactor, ip_limit=10, account_limit=6)
    portal = ThrottledPortal(world.portal, throttle, origins)
    for n in range(6):
        assert _attempt(world, portal, b"guess-%d" % n, f"203.0.113.{n % 3 + 1}") == "failed"
    assert throttle.under_attack("bob@example.test")
    return portal


def test_account_under_attack_lets_the_right_password_in_from_an_address_that_has_not_failed(
    tmp_path,
):
    world = make_world(tmp_path)
    portal = _attacked_portal(world)
    assert _attempt(world, portal, b"secret-pw", "192.0.2.9") == "ok"
    # ... while a wrong guess from a fresh address is checked, slowed and then counted:
    assert _attempt(world, portal, b"guess-x", "198.51.100.7") == "failed"
    assert _attempt(world, portal, b"secret-pw", "198.51.100.7") == "throttled"


def test_attacker_addresses_are_refused_without_a_check_once_the_account_is_under_attack(
    tmp_path,
):
    world = make_world(tmp_path)
    portal = _attacked_portal(world)
    for n in range(3):  # each is far below its own limit of 10, but has failed against bob
        assert _attempt(world, portal, b"secret-pw", f"203.0.113.{n + 1}") == "throttled"
    world.reactor.advance(900)  # the window passes
    assert _attempt(world, portal, b"secret-pw", "203.0.113.1") == "ok"


def test_an_address_the_account_logged_in_from_is_not_refused_while_under_attack(tmp_path):
    world = make_world(tmp_path)
    origins = LoginOrigins(world.reactor, world.accounts, world.reactor, world.pool)
    world.add_user("bob@example.test")
    throttle = LoginThrottle(world.reactor, ip_limit=10, account_limit=6)
    portal = ThrottledPortal(world.portal, throttle, origins)
    assert _attempt(world, portal, b"secret-pw", "192.0.2.20") == "ok"  # the owner's phone
    assert _attempt(world, portal, b"mistyped", "192.0.2.20") == "failed"
    for n in range(6):
        _attempt(world, portal, b"guess-%d" % n, f"203.0.113.{n % 3 + 1}")
    assert throttle.under_attack("bob@example.test")
    assert _attempt(world, portal, b"secret-pw", "192.0.2.20") == "ok"


def test_known_addresses_survive_a_restart_and_expire_after_30_days(tmp_path):
    world = make_world(tmp_path)
    world.add_user("bob@example.test")
    first = LoginOrigins(world.reactor, world.accounts, world.reactor, world.pool)
    first.remember("bob@example.test", "192.0.2.20")
    restarted = LoginOrigins(world.reactor, world.accounts, world.reactor, world.pool)
    seen = []
    restarted.seen("bob@example.test", "192.0.2.20").addCallback(seen.append)
    restarted.seen("bob@example.test", "192.0.2.21").addCallback(seen.append)
    world.reactor.advance(31 * DAY)
    restarted.seen("bob@example.test", "192.0.2.20").addCallback(seen.append)
    assert seen == [True, False, False]


def test_a_new_success_is_written_at_most_once_a_day(tmp_path):
    world = make_world(tmp_path)
    world.add_user("bob@example.test")
    origins = LoginOrigins(world.reactor, world.accounts, world.reactor, world.pool)
    origins.remember("bob@example.test", "192.0.2.20")
    world.reactor.advance(3600)
    origins.remember("bob@example.test", "192.0.2.20")
    assert world.accounts.login_origin_seen("bob@example.test", "192.0.2.20", 0)
    assert not world.accounts.login_origin_seen("bob@example.test", "192.0.2.20", 3600)
    world.reactor.advance(DAY)
    origins.remember("bob@example.test", "192.0.2.20")
    assert world.accounts.login_origin_seen("bob@example.test", "192.0.2.20", DAY + 3600)


class _SlowPortal:
    """A portal whose every check is answered when the test says: what a password hash
    taking its time looks like to the throttle."""

    def __init__(self) -> None:
        self.checks: list[tuple[bytes, Deferred]] = []

    def login(self, credentials, mind, *interfaces):
        d: Deferred = Deferred()
        self.checks.append((credentials.password, d))
        return d

    def answer(self, index: int) -> None:
        password, d = self.checks[index]
        if password == b"right":
            d.callback((IMailAccount, object(), lambda: None))
        else:
            d.errback(UnauthorizedLogin())


def test_guesses_sent_at_once_are_no_more_than_the_limit():
    """Eighteen logins at once from one address, as on eighteen connections: the passwords
    checked are those the limit allows, not all eighteen (the last, right one included)."""
    clock = Clock()
    throttle = LoginThrottle(clock, ip_limit=10, account_limit=100)
    slow = _SlowPortal()
    portal = ThrottledPortal(slow, throttle)  # type: ignore[arg-type]
    peer = IPv4Address("TCP", "192.0.2.9", 5)
    results: list = []
    for i in range(18):
        password = b"right" if i == 17 else b"wrong-%d" % i
        d = portal.login(UsernamePassword(b"alice@example.test", password), peer, IMailAccount)
        d.addBoth(results.append)
    assert len(slow.checks) == 10  # the others wait for those to be answered
    for i in range(10):
        slow.answer(i)
    clock.advance(60)
    assert len(slow.checks) == 10  # ten failures: the address is refused from now on
    refused = [r for r in results if r.check(LoginThrottled)]
    assert len(results) == 18 and len(refused) == 8


def test_a_client_logging_in_on_many_connections_at_once_only_waits():
    """Right passwords need no refusal: past the limit, a login waits for a check to end."""
    throttle = LoginThrottle(Clock(), ip_limit=3, account_limit=100)
    slow = _SlowPortal()
    portal = ThrottledPortal(slow, throttle)  # type: ignore[arg-type]
    peer = IPv4Address("TCP", "192.0.2.9", 5)
    results: list = []
    for _ in range(5):
        d = portal.login(UsernamePassword(b"alice@example.test", b"right"), peer, IMailAccount)
        d.addBoth(results.append)
    assert len(slow.checks) == 3
    slow.answer(0)
    assert len(slow.checks) == 4
    for i in range(1, 5):
        slow.answer(i)
    assert len(results) == 5 and all(isinstance(r, tuple) for r in results)


def test_a_login_cancelled_while_it_waits_leaves_its_place():
    throttle = LoginThrottle(Clock(), ip_limit=1, account_limit=100)
    slow = _SlowPortal()
    portal = ThrottledPortal(slow, throttle)  # type: ignore[arg-type]
    peer = IPv4Address("TCP", "192.0.2.9", 5)
    first = portal.login(UsernamePassword(b"a@x.test", b"right"), peer, IMailAccount)
    waiting = portal.login(UsernamePassword(b"a@x.test", b"right"), peer, IMailAccount)
    waiting.addErrback(lambda f: None)
    waiting.cancel()
    third = portal.login(UsernamePassword(b"a@x.test", b"right"), peer, IMailAccount)
    slow.answer(0)
    assert first.called and len(slow.checks) == 2
    slow.answer(1)
    assert third.called
