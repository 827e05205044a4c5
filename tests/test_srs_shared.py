"""SRS keys shared through PostgreSQL: what one node signs, every node reverses, through a
rotation on any of them. Two ``SharedKeys`` on two connections stand for two nodes."""

from __future__ import annotations

import threading

import pytest

from tests.support.clock import FakeClock
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.srs import SRS, SharedKeys, SRSError, SRSKeyError

DOMAIN = "fwd.example.org"


@pytest.fixture
def nodes(postgres_dsn):  # noqa: F811
    from txmailhost.store.pgstate import SharedState

    states = [SharedState(postgres_dsn), SharedState(postgres_dsn)]
    clocks = [FakeClock(), FakeClock()]
    yield [SRS(DOMAIN, SharedKeys(s, c)) for s, c in zip(states, clocks, strict=True)], clocks
    for state in states:
        state.close()


def test_an_address_written_by_one_node_is_reversed_by_another(nodes):
    (a, b), _clocks = nodes
    rewritten = a.forward("carol@far.test")
    local = rewritten.rpartition("@")[0]
    assert b.reverse(local) == "carol@far.test"
    with pytest.raises(SRSError):
        b.reverse(local.replace("=far.test=", "=evil.test="))
    assert a.keys.load() == b.keys.load() and len(a.keys.load()) == 1


def test_a_rotation_on_one_node_signs_and_verifies_on_every_node(nodes):
    (a, b), clocks = nodes
    before = a.forward("carol@far.test").rpartition("@")[0]
    b.keys.load()  # node B has read the keys, and keeps them REFRESH seconds
    a.keys.rotate()
    after = a.forward("carol@far.test").rpartition("@")[0]
    assert after != before
    clocks[1].now += SharedKeys.RETRY  # B's last read is older than the retry interval
    assert b.reverse(after) == "carol@far.test"  # a failed check re-reads the keys
    assert b.reverse(before) == "carol@far.test"  # the old key still verifies
    clocks[1].now += SharedKeys.REFRESH
    assert b.forward("carol@far.test").rpartition("@")[0] == after  # B signs with the new key


def test_forged_addresses_do_not_make_every_check_a_query(nodes):
    (a, b), clocks = nodes
    local = a.forward("carol@far.test").rpartition("@")[0]
    forged = local.replace("=far.test=", "=evil.test=")
    b.keys.load()
    a.keys.rotate()  # a new key B has not read
    for _ in range(3):
        with pytest.raises(SRSError):
            b.reverse(forged)
    # Within RETRY of its last read, B did not look again: the new key is still unknown.
    assert len(b.keys.load()) == 1
    clocks[1].now += SharedKeys.RETRY
    with pytest.raises(SRSError):
        b.reverse(forged)
    assert len(b.keys.load()) == 2


def test_nodes_starting_together_make_one_key(postgres_dsn):  # noqa: F811
    from txmailhost.store.pgstate import SharedState

    states = [SharedState(postgres_dsn) for _ in range(4)]
    for state in states:
        state.rows("SELECT 1")  # connected and the schema applied before the race
    start = threading.Barrier(len(states))
    found: list[list[bytes]] = []

    def node(state: SharedState) -> None:
        keys = SharedKeys(state)
        start.wait()
        found.append(keys.load())

    threads = [threading.Thread(target=node, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 4 and all(keys == found[0] for keys in found)
    assert len(found[0]) == 1
    for state in states:
        state.close()


def test_a_key_retired_on_one_node_stops_verifying_on_every_node(nodes):
    (a, b), clocks = nodes
    old = a.forward("carol@far.test").rpartition("@")[0]
    made = a.keys.rotate()
    listing = b.keys.listing()
    assert [(k.id, k.signing) for k in listing][0] == (made, True)
    assert len(listing) == 2 and all(k.created is not None for k in listing)
    with pytest.raises(SRSKeyError, match="signs"):
        b.keys.retire(made)
    b.keys.retire(listing[1].id)
    assert [k.id for k in a.keys.listing()] == [made]
    clocks[0].now += SharedKeys.REFRESH  # node A's copy of the keys is read again
    with pytest.raises(SRSError):
        a.reverse(old)


def test_retiring_before_any_key_exists_makes_none(nodes, postgres_dsn):  # noqa: F811
    from txmailhost.store.pgstate import SharedState

    (a, _b), _clocks = nodes
    with pytest.raises(SRSKeyError, match="there are no keys yet"):
        a.keys.retire("deadbeef0000")
    state = SharedState(postgres_dsn)
    try:
        assert state.rows("SELECT count(*) FROM srs_keys") == [(0,)]
    finally:
        state.close()
