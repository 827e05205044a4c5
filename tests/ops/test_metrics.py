"""The metrics hooks and the scrape-time collector, without a server: what each records."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txmailhost.filters.interfaces import Verdict
from txmailhost.limits import LimitedFactory
from txmailhost.ops import metrics
from txmailhost.ops.exposition import ReactorLagProbe, ServerCollector
from txmailhost.pools import Lane
from txmailhost.queue.spool import Envelope, Recipient


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("domain", "kind"),
    [
        ("gmail.com", "google"),
        ("GoogleMail.com.", "google"),
        ("hotmail.co.uk", "microsoft"),
        ("yahoo.co.jp", "yahoo"),
        ("example.org", "other"),
        ("mail.example.org", "other"),
        ("mac.example.org", "other"),
    ],
)
def test_destination_domains_fall_into_a_few_classes(domain: str, kind: str) -> None:
    assert metrics.domain_class(domain) == kind


def test_imap_commands_and_replies_are_counted_without_a_labels_lookup_each(monkeypatch) -> None:
    """Every IMAP command counts itself, its time and its reply: the children of those
    metrics are kept (``_child``), not looked up under the client library's lock each time
    (~6 us a lookup, three a command: a hundred APPENDs a second, or thousands of FETCHes)."""

    async def done() -> str:
        return "ran"

    def run(name: str) -> str:
        coroutine = metrics.imap_command(name, done())
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        raise AssertionError("imap_command waited")

    before = sample("txmailhost_imap_commands_total", command="UNITKEPT")
    replies = sample("txmailhost_imap_replies_total", status="UNIT")
    assert run("UNITKEPT") == "ran"
    metrics.imap_reply("UNIT")
    looked_up: list[tuple] = []
    for metric in (metrics.IMAP_COMMANDS, metrics.IMAP_COMMAND_SECONDS, metrics.IMAP_REPLIES):
        real = metric.labels
        monkeypatch.setattr(metric, "labels", lambda *v, real=real: looked_up.append(v) or real(*v))
    for _ in range(3):
        assert run("UNITKEPT") == "ran"
        metrics.imap_reply("UNIT")
    assert looked_up == []
    assert sample("txmailhost_imap_commands_total", command="UNITKEPT") == before + 4
    assert sample("txmailhost_imap_command_seconds_count", command="UNITKEPT") >= 4
    assert sample("txmailhost_imap_replies_total", status="UNIT") == replies + 4


def test_a_250_counts_the_transaction_and_the_accepted_message() -> None:
    before = sample("txmailhost_messages_total", event="accepted")
    bytes_before = sample("txmailhost_message_bytes_total", event="accepted")
    metrics.smtp_transaction("unit", 250, "2.0.0", 1234)
    metrics.smtp_transaction("unit", 552, "5.3.4", 99999)
    assert sample("txmailhost_messages_total", event="accepted") == before + 1
    assert sample("txmailhost_message_bytes_total", event="accepted") == bytes_before + 1234
    labels = {"listener": "unit", "reply_class": "5xx", "enhanced": "5.3.4"}
    assert sample("txmailhost_smtp_transactions_total", **labels) >= 1


def test_a_filter_verdict_is_counted_with_its_action_and_time() -> None:
    pending: Deferred[Verdict] = Deferred()
    result = Deferred.fromCoroutine(metrics.filter_verdict("unitfilter", "data", pending))
    pending.callback(Verdict.tempfail("busy"))
    assert result.result.action.value == "tempfail"
    labels = {"filter": "unitfilter", "stage": "data"}
    assert sample("txmailhost_filter_verdicts_total", action="tempfail", **labels) == 1
    assert sample("txmailhost_filter_seconds_count", **labels) == 1


def test_an_imap_command_is_counted_even_when_it_fails() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    d = Deferred.fromCoroutine(metrics.imap_command("UNITCMD", failing()))
    d.addErrback(lambda f: f.trap(RuntimeError))
    assert sample("txmailhost_imap_commands_total", command="UNITCMD") == 1
    assert sample("txmailhost_imap_command_seconds_count", command="UNITCMD") == 1


def test_connections_are_counted_open_accepted_and_refused() -> None:
    wrapped = Factory.forProtocol(Protocol)
    limited = LimitedFactory(wrapped, "unitlisten", b"busy\r\n", max_total=1, max_per_ip=5)
    address = IPv4Address("TCP", "192.0.2.1", 1234)
    first = limited.buildProtocol(address)
    first.makeConnection(StringTransport(peerAddress=address))
    limited.buildProtocol(address)  # over max_total: refused
    assert sample("txmailhost_connections_open", listener="unitlisten") == 1
    first.connectionLost(None)
    assert sample("txmailhost_connections_open", listener="unitlisten") == 0
    assert sample("txmailhost_connections_accepted_total", listener="unitlisten") == 1
    assert sample("txmailhost_connections_refused_total", listener="unitlisten") == 1


@dataclass
class FakeQueue:
    queued: list[Envelope] = field(default_factory=list)

    def envelopes(self) -> list[Envelope]:
        return self.queued


class FakePool:
    name = "txmailhost-unit"
    max = 3
    working = [None]

    class _queue:  # noqa: N801 - ThreadPool's attribute name
        @staticmethod
        def qsize() -> int:
            return 7


def test_the_collector_reads_queue_length_age_and_pool_backlog() -> None:
    clock = Clock()
    clock.advance(1000)
    queue = FakeQueue(
        [
            Envelope("A1", "s@x.test", 400.0, 10, [Recipient("a@y.test", "deferred")]),
            Envelope("B2", None, 900.0, 10, [Recipient("b@y.test"), Recipient("c@y.test")]),
        ]
    )
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in ServerCollector(clock, queue, [FakePool()]).collect()
        for s in family.samples
    }
    assert found[("txmailhost_queue_messages", ())] == 2
    assert found[("txmailhost_queue_held_messages", ())] == 0
    assert found[("txmailhost_queue_oldest_age_seconds", ())] == 600
    assert found[("txmailhost_queue_recipients", (("state", "pending"),))] == 2
    assert found[("txmailhost_queue_recipients", (("state", "deferred"),))] == 1
    assert found[("txmailhost_threadpool_queue_depth", (("pool", "unit"),))] == 7
    assert found[("txmailhost_threadpool_busy_threads", (("pool", "unit"),))] == 1


def test_the_collector_reads_a_lanes_backlog_before_it_starts() -> None:
    lane = Lane(Clock(), 4, "txmailhost-spool")
    lane.defer(lambda: None)
    lane.defer(lambda: None)  # not started: both wait
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in ServerCollector(Clock(), FakeQueue(), [lane]).collect()
        for s in family.samples
    }
    assert found[("txmailhost_threadpool_queue_depth", (("pool", "spool"),))] == 2
    assert found[("txmailhost_threadpool_max_threads", (("pool", "spool"),))] == 4


def test_an_empty_queue_has_no_age() -> None:
    clock = Clock()
    clock.advance(50)
    ages = [
        s.value
        for family in ServerCollector(clock, FakeQueue(), []).collect()
        for s in family.samples
        if s.name == "txmailhost_queue_oldest_age_seconds"
    ]
    assert ages == [0.0]


def test_the_lag_probe_records_how_late_its_timer_fired() -> None:
    clock = Clock()
    probe = ReactorLagProbe(clock, interval=1.0)
    count = sample("txmailhost_reactor_lag_seconds_count")
    total = sample("txmailhost_reactor_lag_seconds_sum")
    probe.start()
    clock.advance(3.5)  # the reactor was busy: the 1 s timer fires 2.5 s late
    assert sample("txmailhost_reactor_lag_seconds_count") == count + 1
    assert sample("txmailhost_reactor_lag_seconds_sum") == pytest.approx(total + 2.5)
    probe.stop()
    assert not clock.getDelayedCalls()


def test_fsync_is_timed(tmp_path) -> None:
    before = sample("txmailhost_fsync_seconds_count", kind="file")
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x")
        metrics.fsync(f.fileno())
    assert sample("txmailhost_fsync_seconds_count", kind="file") == before + 1
