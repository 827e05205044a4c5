"""``workers/accepting.py``: a worker over its share of a shared socket steps aside, briefly."""

from __future__ import annotations

from twisted.internet import tcp
from twisted.internet.task import Clock

from txmailhost.workers import accepting
from txmailhost.workers.accepting import SharedPort


class Factory:
    def __init__(self) -> None:
        self.over = False

    def over_fair_share(self) -> bool:
        return self.over


def port(monkeypatch) -> tuple[SharedPort, list[str]]:
    """A SharedPort without a socket: what it does is recorded in ``calls``."""
    calls: list[str] = []
    monkeypatch.setattr(tcp.Port, "doRead", lambda self: calls.append("accept"))
    shared = SharedPort.__new__(SharedPort)
    shared.factory = Factory()
    shared.reactor = Clock()
    shared.connected, shared.disconnecting = True, False
    shared.stopReading = lambda: calls.append("stop")  # type: ignore[method-assign]
    shared.startReading = lambda: calls.append("start")  # type: ignore[method-assign]
    return shared, calls


def test_one_accept_per_event_whatever_twisted_scales_it_to():
    shared = SharedPort.__new__(SharedPort)
    shared.numberAccepts = 121  # what doRead sets after a full loop
    assert shared.numberAccepts == 1


def test_a_worker_within_its_share_accepts(monkeypatch):
    shared, calls = port(monkeypatch)
    shared.doRead()
    assert calls == ["accept"]


def test_a_worker_over_its_share_leaves_the_socket_to_the_others_then_comes_back(monkeypatch):
    shared, calls = port(monkeypatch)
    shared.factory.over = True
    shared.doRead()
    assert calls == ["stop"]
    shared.reactor.advance(accepting.PAUSE)
    assert calls == ["stop", "start"]
    shared.factory.over = False  # another worker took connections meanwhile
    shared.doRead()
    assert calls == ["stop", "start", "accept"]


def test_a_connection_never_waits_longer_than_max_wait_on_counts_alone(monkeypatch):
    """The counts are hints: a worker that died or is busy must not leave the client waiting."""
    shared, calls = port(monkeypatch)
    shared.factory.over = True
    clock: list[float] = [100.0]
    monkeypatch.setattr(accepting.time, "monotonic", lambda: clock[0])
    shared.doRead()
    clock[0] += accepting.MAX_WAIT / 2
    shared.doRead()
    assert calls.count("accept") == 0
    clock[0] += accepting.MAX_WAIT
    shared.doRead()
    assert calls[-1] == "accept"
    shared.doRead()  # the wait starts over for the next connection
    assert calls[-1] == "stop"


def test_stopping_listening_cancels_a_pending_resume(monkeypatch):
    shared, calls = port(monkeypatch)
    shared.factory.over = True
    shared.doRead()
    monkeypatch.setattr(tcp.Port, "loseConnection", lambda self, *a: None)
    shared.loseConnection()
    assert not shared.reactor.getDelayedCalls()


def test_only_plain_tcp_ports_change_class():
    other = object()
    assert accepting.take_turns(other) is other


def test_a_port_held_near_the_open_file_limit_is_not_resumed_by_its_pause(monkeypatch):
    shared, calls = port(monkeypatch)
    shared.factory.over = True
    shared.doRead()
    shared.held = True  # limits.AcceptPause stopped it meanwhile
    shared.reactor.advance(accepting.PAUSE)
    assert calls == ["stop"]
