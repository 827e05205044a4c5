"""DKIM keys shared through PostgreSQL (``mailauth/sharedkeys.py``): a key made on one node
signs on another, and its signature verifies against the one record published for the
selector (dkimpy, the DNS answer given from the keys' own TXT record)."""

from __future__ import annotations

import dkim
import pytest

from tests.support.clock import FakeClock
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from txmailhost.mailauth.keys import DKIMKeyError
from txmailhost.mailauth.signing import Signer

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: shared keys\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <shared@example.test>\r\n\r\nhi\r\n"
)


@pytest.fixture
def nodes(postgres_dsn):  # noqa: F811
    from txmailhost.mailauth.sharedkeys import SharedKeyStore
    from txmailhost.store.pgstate import SharedState

    states = [SharedState(postgres_dsn), SharedState(postgres_dsn)]
    clocks = [FakeClock(), FakeClock()]
    yield [SharedKeyStore(s, c) for s, c in zip(states, clocks, strict=True)], clocks
    for state in states:
        state.close()


def _dns(store, domain: str):
    """A DNS lookup answering what ``txmailhost dns`` tells the operator to publish."""
    records = {
        f"{k.selector}._domainkey.{domain}.".encode(): k.txt_record().encode()
        for k in store.published(domain)
    }
    return lambda name, timeout=5: records.get(name)


def test_a_key_made_on_one_node_signs_on_the_other_and_verifies(nodes):
    (a, b), clocks = nodes
    assert b.keys("example.test") == []  # nothing yet (and that answer is now cached)
    name = a.create("example.test")
    assert name.startswith("s")
    clocks[1].now += b.REFRESH
    signed = Signer(b).sign_bytes(MESSAGE)
    selectors = {dkim.util.parse_tag_value(v)[b"s"] for n, v in dkim.rfc822_parse(signed)[0]
                 if n.lower() == b"dkim-signature"}  # fmt: skip
    assert selectors == {f"{name}-ed25519".encode(), f"{name}-rsa".encode()}
    assert dkim.verify(signed, dnsfunc=_dns(a, "example.test"))
    assert [(s.name, s.active) for s in b.selectors("example.test")] == [(name, True)]
    assert b.domains() == ["example.test"]
    with pytest.raises(DKIMKeyError):
        b.create("example.test", name)  # the same selector again: refused on every node


def test_a_domain_without_a_key_is_looked_for_again_within_a_second(nodes):
    """The first ``dkim init`` on node A: node B signs within MISSING_REFRESH, not REFRESH."""
    (a, b), clocks = nodes
    assert b.keys("example.test") == []
    a.create("example.test")
    assert b.keys("example.test") == []  # read a moment ago: not asked again at once
    clocks[1].now += b.MISSING_REFRESH
    assert len(b.keys("example.test")) == 2  # Ed25519 and RSA


def test_a_rotation_reaches_the_other_node_within_refresh_and_old_mail_still_verifies(nodes):
    (a, b), clocks = nodes
    first = a.create("example.test", "one")
    before = Signer(b).sign_bytes(MESSAGE)
    second = a.create("example.test", "two")
    assert b"s=one-rsa" in Signer(b).sign_bytes(MESSAGE)  # B signs as it read, until REFRESH
    clocks[1].now += b.REFRESH
    after = Signer(b).sign_bytes(MESSAGE)
    assert b"s=two-rsa" in after and b"s=one-rsa" not in after
    dns = _dns(a, "example.test")  # both selectors published until "one" is retired
    assert dkim.verify(before, dnsfunc=dns) and dkim.verify(after, dnsfunc=dns)
    with pytest.raises(DKIMKeyError):
        b.retire("example.test", second)  # the active one
    b.retire("example.test", first)
    assert [s.name for s in a.selectors("example.test")] == ["two"]
    assert a.keys("example.test", "one") == []


def test_two_nodes_creating_at_once_leave_one_active_key(postgres_dsn):  # noqa: F811
    import threading

    from txmailhost.mailauth.sharedkeys import SharedKeyStore
    from txmailhost.store.pgstate import SharedState

    states = [SharedState(postgres_dsn) for _ in range(2)]
    for state in states:
        state.rows("SELECT 1")
    start = threading.Barrier(2)
    made: list[str] = []

    def node(state: SharedState, selector: str) -> None:
        start.wait()
        made.append(SharedKeyStore(state).create("example.test", selector))

    threads = [
        threading.Thread(target=node, args=(s, n)) for s, n in zip(states, "xy", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = SharedKeyStore(states[0])
    assert sorted(made) == ["x", "y"]
    assert [s.active for s in store.selectors("example.test")].count(True) == 1
    for state in states:
        state.close()


def test_on_the_reactor_thread_a_stale_snapshot_is_used_and_read_again_in_a_thread(
    nodes, monkeypatch
):
    """Signing a DSN happens on the reactor thread, which must never wait on the database:
    there the keys read last sign, and the new ones are read in the background."""
    import time

    from twisted.python import threadable

    (a, b), clocks = nodes
    a.create("example.test", "one")
    b.refresh()  # at start
    a.create("example.test", "two")
    clocks[1].now += b.REFRESH
    queries: list[str] = []
    real_rows = b.state.rows
    monkeypatch.setattr(b.state, "rows", lambda *args: queries.append(args[0]) or real_rows(*args))
    monkeypatch.setattr(threadable, "isInIOThread", lambda: True)
    assert [k.selector for k in b.keys("example.test")] == ["one-ed25519", "one-rsa"]
    deadline = time.time() + 10
    while b.keys("example.test")[0].selector != "two-ed25519":
        assert time.time() < deadline, "the background read did not happen"
        time.sleep(0.05)
    assert len(queries) == 1  # one read, however many messages asked meanwhile


def test_on_the_reactor_thread_the_answer_is_the_last_snapshot_even_when_the_read_wins(
    nodes, monkeypatch
):
    """The background read may finish before ``keys`` returns (the thread it starts can run
    first): the answer is still the snapshot that was current when the question was asked,
    never whichever one the race left behind."""
    import threading

    from twisted.python import threadable

    from txmailhost.mailauth import sharedkeys

    class Immediate(threading.Thread):
        def start(self) -> None:  # the new thread wins the race every time
            self.run()

    (a, b), clocks = nodes
    a.create("example.test", "one")
    b.refresh()
    a.create("example.test", "two")
    clocks[1].now += b.REFRESH
    monkeypatch.setattr(sharedkeys.threading, "Thread", Immediate)
    monkeypatch.setattr(threadable, "isInIOThread", lambda: True)
    assert [k.selector for k in b.keys("example.test")] == ["one-ed25519", "one-rsa"]
    assert [k.selector for k in b.keys("example.test")] == ["two-ed25519", "two-rsa"]
