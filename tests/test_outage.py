"""A poller's outage of the shared database in the log: one traceback, a line a minute,
then "works again" (txmailhost/outage.py), not a traceback a second."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.accounts.sharedfailures import SharedFailures
from txmailhost.accounts.throttle import LoginThrottle
from txmailhost.outage import OutageLog


@pytest.fixture
def events() -> Iterator[list[dict]]:
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def _refused(message: str = "connection refused") -> Failure:
    try:
        raise ConnectionRefusedError(message)
    except ConnectionRefusedError:
        return Failure()


def test_one_traceback_then_a_line_a_minute_then_works_again(events: list[dict]) -> None:
    from twisted.logger import Logger

    clock = SyncReactor()
    outage = OutageLog(Logger(namespace="t"), clock.seconds, "claiming from the shared queue")
    outage.succeeded()  # all well: nothing said
    for _ in range(150):  # two and a half minutes of one poll a second, every one failing
        outage.failed(_refused())
        clock.advance(1)
    mine = [e for e in events if e.get("log_namespace") == "t"]
    assert sum("log_failure" in e for e in mine) == 1  # the first, whole
    summaries = [formatEvent(e) for e in mine if "log_failure" not in e]
    assert summaries == [
        "claiming from the shared queue still failing after 60 s (61 failures):"
        " ConnectionRefusedError: connection refused",
        "claiming from the shared queue still failing after 120 s (121 failures):"
        " ConnectionRefusedError: connection refused",
    ]
    assert outage.down
    outage.succeeded()
    back = formatEvent([e for e in events if e.get("log_namespace") == "t"][-1])
    assert back == "claiming from the shared queue works again after 150 s (150 failures)"
    assert not outage.down
    outage.failed(_refused("again"))  # a new outage starts with its own traceback
    assert sum("log_failure" in e for e in events if e.get("log_namespace") == "t") == 2


def test_shared_login_failures_with_the_database_down_log_once_not_every_second(
    events: list[dict],
) -> None:
    """The exchange runs every second; PostgreSQL unreachable for 90 s was 90 tracebacks."""
    with socket.socket() as closed:  # a loopback port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    clock = SyncReactor()
    throttle = LoginThrottle(clock, window=900, ip_limit=10, account_limit=30)
    shared = SharedFailures(
        f"postgresql://x@127.0.0.1:{port}/x?connect_timeout=2",
        {"login": throttle},
        clock,
        SyncThreadPool(),
        "node-a",
    )
    shared.startService()
    try:
        for _ in range(91):
            clock.advance(1)
    finally:
        shared.stopService()
    failures = [e for e in events if e.get("log_level") == LogLevel.critical]
    assert len(failures) == 1, [formatEvent(e) for e in failures]
    assert "exchanging them through the shared database failed" in formatEvent(failures[0])
    lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
    assert len(lines) == 1 and "still failing after 60 s" in lines[0]


def _failure(error: Exception) -> Failure:
    try:
        raise error
    except Exception:
        return Failure()


def test_a_burst_of_request_failures_is_one_traceback_and_a_count_a_minute(
    events: list[dict],
) -> None:
    """Requests (IMAP commands, RCPTs) failing because the database is down: a traceback
    for the first of each kind, then a line a minute, not a traceback a request."""
    from twisted.logger import Logger

    from txmailhost.outage import BurstLog

    clock = SyncReactor()
    burst = BurstLog(Logger(namespace="t"), clock.seconds, "imap store error")
    for _ in range(600):  # two minutes of five failing commands a second
        burst.failed(_failure(ConnectionRefusedError("refused")))
        clock.advance(0.2)
    burst.failed(_failure(KeyError("a bug elsewhere")), about="alice")  # never hidden
    tracebacks = [e for e in events if e.get("log_failure") is not None]
    assert [type(e["log_failure"].value) for e in tracebacks] == [ConnectionRefusedError, KeyError]
    assert "(alice)" in formatEvent(tracebacks[1])
    lines = [formatEvent(e) for e in events if e.get("log_failure") is None]
    assert lines == [
        "imap store error: 300 more ConnectionRefusedError in 60 s, the last:"
        " ConnectionRefusedError: refused"
    ]
    events.clear()
    clock.advance(120)  # quiet; then the same kind again: the burst's last count, a new burst
    burst.failed(_failure(ConnectionRefusedError("refused again")))
    assert formatEvent(events[0]) == (
        "imap store error: 299 more ConnectionRefusedError in 60 s, then none"
    )
    assert events[1].get("log_failure") is not None and len(events) == 2


def test_imap_and_smtp_log_a_failing_store_or_lookup_once_a_burst(events: list[dict]) -> None:
    from txmailhost.imap.server import store_error
    from txmailhost.store.interfaces import StoreError

    for _ in range(50):
        assert store_error(StoreError("database down")).code == "UNAVAILABLE"
    store_tracebacks = [
        e for e in events if e.get("log_failure") is not None and "store error" in formatEvent(e)
    ]
    assert len(store_tracebacks) == 1

    from twisted.internet.defer import Deferred

    from txmailhost.smtp.address import Mailbox
    from txmailhost.smtp.policy import InboundPolicy

    class DownRouter:
        async def resolve(self, local: str, domain: str) -> None:
            raise ConnectionRefusedError("accounts database down")

    policy = InboundPolicy(DownRouter(), store=None)  # type: ignore[arg-type]
    for i in range(50):
        d = Deferred.fromCoroutine(policy.check_recipient(None, Mailbox(f"u{i}", "example.test")))
        reply, routes = d.result
        assert reply.code == 451 and routes == []
    lookup_tracebacks = [
        e for e in events if e.get("log_failure") is not None and "lookup" in formatEvent(e)
    ]
    assert len(lookup_tracebacks) == 1 and "(u0@example.test)" in formatEvent(lookup_tracebacks[0])
