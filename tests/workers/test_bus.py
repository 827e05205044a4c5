"""The workers' bus: datagrams between processes' sockets (here two buses in one reactor)."""

from __future__ import annotations

import os

import pytest
from twisted.internet import reactor as global_reactor

from txmailhost.accounts.throttle import LoginThrottle
from txmailhost.store.changes import ChangeBus
from txmailhost.workers.bus import PeerBus
from txmailhost.workers.role import WorkerRole


@pytest.fixture
def buses(tmp_path):
    directory = str(tmp_path / "bus")
    pair = [PeerBus(global_reactor, directory, slot, 2) for slot in (0, 1)]
    for bus in pair:
        bus.start()
    yield pair
    for bus in pair:
        bus.stop()


def _settle() -> None:
    """Let the reactor read the datagrams (the tests drive it; it isn't running)."""
    for _ in range(20):
        global_reactor.iterate(0.005)


def test_a_change_published_in_one_process_reaches_watchers_in_the_other(buses):
    here, there = ChangeBus(), ChangeBus()
    for bus, changes in zip(buses, (here, there), strict=True):
        changes.forward = lambda d, bus=bus: bus.send("change", d)
        bus.on("change", changes.publish_local)
    seen: list[str] = []
    there.watch("/data/mail/alice/INBOX", lambda: seen.append("there"))
    here.watch("/data/mail/alice/INBOX", lambda: seen.append("here"))
    here.publish("/data/mail/alice/INBOX")
    _settle()
    assert sorted(seen) == ["here", "there"]  # once each: the receiver does not send it back


def test_login_failures_count_in_every_process(buses):
    throttles = []
    for bus in buses:
        throttle = LoginThrottle(global_reactor, ip_limit=3)
        throttle.forward = lambda c, a, bus=bus: bus.send("login-failed", c or "", a or "")
        bus.on("login-failed", lambda c, a, t=throttle: t.record(c or None, a))
        throttles.append(throttle)
    throttles[0].failed("192.0.2.7", "alice@example.test")
    throttles[1].failed("192.0.2.7", "alice@example.test")
    throttles[0].failed("192.0.2.7", "bob@example.test")
    _settle()
    assert throttles[0].address_blocked("192.0.2.7")
    assert throttles[1].address_blocked("192.0.2.7")
    assert not throttles[1].address_blocked("192.0.2.8")


def test_a_peer_that_is_not_running_is_skipped_silently(tmp_path):
    bus = PeerBus(global_reactor, str(tmp_path / "bus"), 0, 3)  # slots 1 and 2 never start
    bus.start()
    try:
        before = bus.dropped  # its "hello" at start already went nowhere
        bus.send("change", "/x")
        assert bus.dropped - before == 2
    finally:
        bus.stop()
    assert not os.path.exists(bus.path)


def test_worker_zero_keeps_the_single_process_spool_and_adopts_orphans(tmp_path):
    queue_dir = str(tmp_path)
    for name in ("worker-1", "worker-2", "worker-5", "msg", "worker-x"):
        os.mkdir(os.path.join(queue_dir, name))
    first, second = WorkerRole(0, 2), WorkerRole(1, 2)
    assert first.incoming_dir(queue_dir) == queue_dir
    assert second.incoming_dir(queue_dir) == os.path.join(queue_dir, "worker-1")
    assert first.orphan_dirs(queue_dir) == [
        os.path.join(queue_dir, "worker-2"),
        os.path.join(queue_dir, "worker-5"),
    ]
    assert second.orphan_dirs(queue_dir) == []


def test_connection_limits_add_up_the_other_workers_counts():
    from txmailhost.limits import LimitedFactory

    factory = LimitedFactory(object(), "imap", b"* BYE busy\r\n", max_total=10, max_per_ip=3)
    told = []
    factory.forward = lambda key, mine, total: told.append((key, mine, total))
    factory.peer_counts(1, "192.0.2.1", 2, 9)
    assert factory._open("192.0.2.1") == (9, 2)
    factory.peer_counts(1, "192.0.2.1", 0, 8)  # absolute: replaces, never adds
    assert factory._open("192.0.2.1") == (8, 0)
    factory.peer_restarted(1)
    assert factory._open("192.0.2.1") == (0, 0)


def test_a_worker_reads_the_shared_credential_key_from_its_stdin_pipe():
    from txmailhost.accounts.credcache import KEY_SIZE
    from txmailhost.workers.main import read_key

    for written, expected in ((b"\x07" * KEY_SIZE, b"\x07" * KEY_SIZE), (b"short", None)):
        read_end, write_end = os.pipe()
        os.write(write_end, written)
        os.close(write_end)  # the supervisor closes stdin once the key is written
        try:
            assert read_key(read_end) == expected
        finally:
            os.close(read_end)


def test_a_worker_near_its_file_limit_leaves_new_connections_to_the_others():
    from twisted.internet.address import IPv4Address
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import StringTransport

    from txmailhost.limits import AcceptPause, LimitedFactory

    class Port:
        reading = True

        def stopReading(self) -> None:
            self.reading = False

        def startReading(self) -> None:
            self.reading = True

    class Listener:
        port = Port()

    imap = LimitedFactory(Factory.forProtocol(Protocol), "imap", b"* BYE\r\n", 10**6, 10**6)
    smtp = LimitedFactory(Factory.forProtocol(Protocol), "smtp", b"421\r\n", 10**6, 10**6)
    listener = Listener()
    pause = AcceptPause([imap, smtp], [listener], ceiling=100)
    opened = []

    def connect(factory: LimitedFactory, n: int) -> None:
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", n))
        protocol.makeConnection(StringTransport())
        opened.append((factory, protocol))

    for n in range(99):
        connect(imap if n % 2 else smtp, n)
    assert listener.port.reading  # 99 of 100, both listeners counted
    connect(imap, 100)
    assert not listener.port.reading and pause.paused
    for factory, protocol in opened[:3]:  # 97: still above resume (95)
        factory.unregisterProtocol(protocol)
    assert not listener.port.reading
    for factory, protocol in opened[3:6]:
        factory.unregisterProtocol(protocol)
    assert listener.port.reading and not pause.paused


def test_what_a_busy_peer_cannot_take_now_waits_and_arrives_in_order(buses):
    here, there = buses
    got: list[str] = []
    there.on("change", got.append)
    names = [f"/data/mail/u{n}/INBOX" for n in range(60)]
    dropped = here.dropped  # its "hello" at start, before the other bus listened
    for name in names:  # the reactor doesn't run: the peer's queue (10 datagrams) fills up
        here.send("change", name)
    here.send("change", names[-1])  # the same nudge again, while it waits: kept once
    assert here._waiting, "the peer's queue never filled: nothing was held"
    for _ in range(200):
        global_reactor.iterate(0.005)
        if len(got) >= len(names):
            break
    assert got == names
    assert here.dropped == dropped and not here._waiting
