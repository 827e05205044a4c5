"""The cache of verified passwords: a second login skips scrypt, and nothing else does."""

from __future__ import annotations

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.internet.task import Clock

from tests.support.fixtures import make_world
from txmailhost.accounts import checker as checker_module
from txmailhost.accounts.checker import AccountsChecker
from txmailhost.accounts.credcache import CredentialCache
from txmailhost.accounts.db import AccountsDB

BOB = "bob@example.test"


@pytest.fixture
def hashes(monkeypatch):
    """Counts the full password hashes the checker computes."""
    calls: list[str] = []
    real = checker_module.verify_password

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return real(password, encoded)

    monkeypatch.setattr(checker_module, "verify_password", counting)
    return calls


def _world(tmp_path, clock, **cache_options):
    world = make_world(tmp_path)
    world.add_user(BOB)
    cache = CredentialCache(clock, **cache_options)
    checker = AccountsChecker(world.accounts, world.reactor, world.pool, cache)
    return world, checker, cache


def _login(checker: AccountsChecker, password: str, user: str = BOB):
    d = checker.requestAvatarId(UsernamePassword(user.encode(), password.encode()))
    outcome: list = []
    d.addBoth(outcome.append)
    (value,) = outcome
    return value if isinstance(value, str) else "refused"


def test_a_second_login_with_the_right_password_costs_no_hash(tmp_path, hashes):
    world, checker, _ = _world(tmp_path, Clock())
    assert _login(checker, "secret-pw") == BOB
    assert _login(checker, "secret-pw") == BOB
    assert _login(checker, "Secret-pw") == "refused"  # a near miss is hashed, and refused
    assert hashes == ["secret-pw", "Secret-pw"]


def test_wrong_passwords_are_never_cached(tmp_path, hashes):
    world, checker, cache = _world(tmp_path, Clock())
    for _ in range(3):
        assert _login(checker, "wrong-guess") == "refused"
    assert hashes == ["wrong-guess"] * 3
    assert len(cache) == 0


def test_entries_expire_after_the_ttl(tmp_path, hashes):
    clock = Clock()
    world, checker, _ = _world(tmp_path, clock, ttl=60)
    _login(checker, "secret-pw")
    clock.advance(59)
    _login(checker, "secret-pw")
    clock.advance(2)
    assert _login(checker, "secret-pw") == BOB
    assert len(hashes) == 2


def test_the_cache_holds_at_most_its_size_oldest_first(tmp_path, hashes):
    clock = Clock()
    world, checker, cache = _world(tmp_path, clock, max_entries=2)
    world.add_user("carol@example.test")
    world.add_user("dave@example.test")
    for user in (BOB, "carol@example.test", "dave@example.test"):
        _login(checker, "secret-pw", user)
    assert len(cache) == 2
    _login(checker, "secret-pw", "dave@example.test")
    _login(checker, "secret-pw", BOB)  # evicted first
    assert len(hashes) == 4


def test_a_password_changed_by_another_process_stops_the_old_one_at_once(tmp_path, hashes):
    world, checker, cache = _world(tmp_path, Clock())
    assert _login(checker, "secret-pw") == BOB
    other_process = AccountsDB(world.accounts.path)  # the CLI's own connection
    other_process.set_password(BOB, "a-new-long-passphrase")
    assert _login(checker, "secret-pw") == "refused"
    assert len(cache) == 0
    assert _login(checker, "a-new-long-passphrase") == BOB


def test_a_removed_user_is_refused_at_once_though_cached(tmp_path, hashes):
    world, checker, _ = _world(tmp_path, Clock())
    _login(checker, "secret-pw")
    AccountsDB(world.accounts.path).remove_user(BOB)
    assert _login(checker, "secret-pw") == "refused"


def test_a_zero_ttl_turns_the_cache_off(tmp_path, hashes):
    world, checker, cache = _world(tmp_path, Clock(), ttl=0)
    _login(checker, "secret-pw")
    _login(checker, "secret-pw")
    assert len(hashes) == 2 and len(cache) == 0


def test_the_cache_keeps_no_password_only_keyed_hmacs():
    one, two = CredentialCache(Clock()), CredentialCache(Clock())
    mac = one.fingerprint(BOB, "secret-pw")
    assert b"secret-pw" not in mac and len(mac) == 32
    assert mac != two.fingerprint(BOB, "secret-pw")  # a key of its own per process
    assert mac != one.fingerprint("carol@example.test", "secret-pw")


def _worker_pair(tmp_path, clock, keys: tuple[bytes | None, bytes | None]):
    """Two workers' checkers on one accounts database, each cache telling the other."""
    world = make_world(tmp_path)
    world.add_user(BOB)
    caches = [CredentialCache(clock, key=key) for key in keys]
    caches[0].forward = caches[1].adopt
    caches[1].forward = caches[0].adopt
    checkers = [AccountsChecker(world.accounts, world.reactor, world.pool, c) for c in caches]
    return world, checkers


def test_a_password_verified_by_one_worker_costs_no_hash_on_the_others(tmp_path, hashes):
    key = b"k" * 32
    world, (first, second) = _worker_pair(tmp_path, Clock(), (key, key))
    assert _login(first, "secret-pw") == BOB
    assert _login(second, "secret-pw") == BOB
    assert len(hashes) == 1
    assert _login(second, "wrong-pw") == "refused"  # a told entry admits only its password
    assert len(hashes) == 2


def test_entries_told_under_another_key_match_nothing(tmp_path, hashes):
    world, (first, second) = _worker_pair(tmp_path, Clock(), (b"a" * 32, b"b" * 32))
    assert _login(first, "secret-pw") == BOB
    assert _login(second, "secret-pw") == BOB
    assert len(hashes) == 2


def test_a_told_entry_is_not_told_back():
    told: list[str] = []
    cache = CredentialCache(Clock(), key=b"k" * 32)
    cache.forward = lambda account, fingerprint, stored: told.append(account)
    cache.adopt(BOB, cache.fingerprint(BOB, "pw"), "$scrypt$x")
    assert told == []
    assert cache.verified(BOB, cache.fingerprint(BOB, "pw"), "$scrypt$x")
    cache.remember("carol@example.test", cache.fingerprint("carol@example.test", "pw"), "$s$y")
    assert told == ["carol@example.test"]


class _HeldPool:
    """A thread pool whose work runs only when the test says so: logins overlap."""

    def __init__(self) -> None:
        self.queued: list = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.queued.append((on_result, f, args, kwargs))

    def run_all(self) -> None:
        from twisted.python.failure import Failure

        while self.queued:
            on_result, f, args, kwargs = self.queued.pop(0)
            try:
                value = f(*args, **kwargs)
            except BaseException:
                on_result(False, Failure())
            else:
                on_result(True, value)


def _start(checker: AccountsChecker, password: str) -> list:
    outcome: list = []
    d = checker.requestAvatarId(UsernamePassword(BOB.encode(), password.encode()))
    d.addBoth(lambda v: outcome.append(v if isinstance(v, str) else "refused"))
    return outcome


def test_logins_arriving_together_share_one_hash(tmp_path, hashes):
    world = make_world(tmp_path)
    world.add_user(BOB)
    pool = _HeldPool()
    checker = AccountsChecker(world.accounts, world.reactor, pool, CredentialCache(Clock()))
    right = [_start(checker, "secret-pw") for _ in range(5)]
    wrong = [_start(checker, "guess") for _ in range(3)]
    assert len(pool.queued) == 2  # one check per distinct password
    pool.run_all()
    assert right == [[BOB]] * 5
    assert wrong == [["refused"]] * 3
    assert sorted(hashes) == ["guess", "secret-pw"]
    assert _start(checker, "guess") == [] and len(pool.queued) == 1  # done: a new check
    pool.run_all()


def test_without_the_cache_every_login_is_checked_on_its_own(tmp_path, hashes):
    world = make_world(tmp_path)
    world.add_user(BOB)
    pool = _HeldPool()
    checker = AccountsChecker(world.accounts, world.reactor, pool, CredentialCache(Clock(), ttl=0))
    outcomes = [_start(checker, "secret-pw") for _ in range(3)]
    assert len(pool.queued) == 3
    pool.run_all()
    assert outcomes == [[BOB]] * 3
