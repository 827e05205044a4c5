"""Failed logins counted across nodes through PostgreSQL (skipped without PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncReactor, SyncThreadPool, result
from txmailhost.accounts.sharedfailures import SharedFailures
from txmailhost.accounts.throttle import LoginThrottle
from txmailhost.store.postgres_schema import upgrade

GUESSER = "198.51.100.7"


class Node:
    def __init__(self, dsn: str, clock: SyncReactor, origin: str) -> None:
        self.login = LoginThrottle(clock, window=900, ip_limit=10, account_limit=30)
        self.rcpt = LoginThrottle(clock, window=900, ip_limit=10**9, free_failures=5)
        self.shared = SharedFailures(
            dsn, {"login": self.login, "rcpt": self.rcpt}, clock, SyncThreadPool(), origin
        )

    def sync(self) -> None:
        result(self.shared.flush())


@pytest.fixture
def world(postgres_dsn):  # noqa: F811 - the fixture
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        upgrade(conn)
    clock = SyncReactor()
    clock.advance(1_000_000)
    return postgres_dsn, clock


def test_failures_on_two_nodes_add_up_to_one_limit(world):
    dsn, clock = world
    a, b = Node(dsn, clock, "a"), Node(dsn, clock, "b")
    for _ in range(6):
        a.login.failed(GUESSER, "alice@example.test")
    for _ in range(4):
        b.login.failed(GUESSER, "alice@example.test")
    assert not a.login.address_blocked(GUESSER) and not b.login.address_blocked(GUESSER)
    a.sync()
    b.sync()
    a.sync()
    assert a.login.address_blocked(GUESSER) and b.login.address_blocked(GUESSER)
    assert b.login.has_failed(GUESSER, "alice@example.test")


def test_a_nodes_own_failures_are_not_counted_twice(world):
    dsn, clock = world
    a = Node(dsn, clock, "a")
    for _ in range(9):
        a.login.failed(GUESSER, "alice@example.test")
    for _ in range(3):
        a.sync()
    assert not a.login.address_blocked(GUESSER)  # 9, under the limit of 10


def test_kinds_are_kept_apart(world):
    dsn, clock = world
    a, b = Node(dsn, clock, "a"), Node(dsn, clock, "b")
    for _ in range(10):
        a.rcpt.failed(GUESSER, None)
    a.sync()
    b.sync()
    assert not b.login.address_blocked(GUESSER)
    assert b.rcpt.failed(GUESSER, None) > 0  # past the free unknown recipients


def test_a_restarted_node_reads_the_window_back(world):
    dsn, clock = world
    a = Node(dsn, clock, "a")
    for _ in range(10):
        a.login.failed(GUESSER, "alice@example.test")
    a.sync()
    again = Node(dsn, clock, "a")  # its memory is gone; its rows are not
    again.sync()
    assert again.login.address_blocked(GUESSER)


def test_failures_past_the_window_are_forgotten_and_deleted(world):
    dsn, clock = world
    a, b = Node(dsn, clock, "a"), Node(dsn, clock, "b")
    for _ in range(10):
        a.login.failed(GUESSER, "alice@example.test")
    a.sync()
    clock.advance(1000)
    b.sync()
    assert not b.login.address_blocked(GUESSER)
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM throttle_failures").fetchone()[0] == 0


def test_failures_written_late_are_counted_by_the_other_nodes(world):
    """A node that could not write for a while (the database down, here: not asked) writes
    its failures later; the other nodes read from their last read on, so the failures keep
    a time they still read past, and the guesser is held on every node."""
    dsn, clock = world
    a, b = Node(dsn, clock, "a"), Node(dsn, clock, "b")
    a.sync()
    b.sync()
    for _ in range(10):
        a.login.failed(GUESSER, "alice@example.test")
    for _ in range(60):  # a minute in which only b reaches the database
        clock.advance(1)
        b.sync()
    a.sync()  # a's batch, a minute late
    b.sync()
    assert b.login.address_blocked(GUESSER)
