"""``GET /metrics`` on ``[listen] metrics``: the Prometheus text exposition, over twisted.web.

The page is rendered on the reactor thread, not in a thread pool as prometheus_client's own
Twisted resource does, because the values read at scrape time (:class:`ServerCollector`: the
relay queue's envelopes, the thread pools' backlog) belong to the reactor thread; rendering a
few hundred series takes about a millisecond. The format follows the scraper's ``Accept``
header (Prometheus text 0.0.4/1.0.0 or OpenMetrics), as prometheus_client negotiates it.

The default endpoint is loopback only (``tcp:29100:interface=127.0.0.1``): the page names
listeners, counts logins and shows the queue, which is for the operator, not the internet.
Put it behind a firewall or a TLS-terminating proxy if Prometheus scrapes from elsewhere.

The collector and the reactor-lag probe start and stop with the listener's factory
(``startFactory``/``stopFactory``), so nothing runs or is registered while nothing listens.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from twisted.web.resource import Resource

import twisted
from txmailhost import __version__
from txmailhost.httpbounds import BoundedSite
from txmailhost.ops import metrics

LAG_INTERVAL = 1.0  # seconds between two reactor-lag probes


class ServerCollector:
    """Values the server keeps anyway, read when Prometheus asks (reactor thread)."""

    def __init__(self, reactor: Any, queue: Any, pools: Sequence[Any]) -> None:
        self.reactor = reactor
        self.queue = queue
        self.pools = list(pools)
        self.started = time.time()

    def describe(self) -> list[Metric]:
        """Nothing to check at registration: two servers in one process (tests, embedding)
        may both register; each scrape then shows both, as it should."""
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield from self._pools()
        info = GaugeMetricFamily(
            "txmailhost_build_info",
            "Versions of txmailhost, Python and Twisted (the value is always 1).",
            labels=["version", "python", "twisted"],
        )
        python = ".".join(str(n) for n in sys.version_info[:3])
        info.add_metric([__version__, python, twisted.__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "txmailhost_start_time_seconds",
            "When the server started, in seconds since the epoch.",
            value=self.started,
        )

    def _queue(self) -> Iterable[Metric]:
        envelopes = self.queue.envelopes() if self.queue is not None else []
        now = self.reactor.seconds()
        yield GaugeMetricFamily(
            "txmailhost_queue_messages",
            "Messages in the relay queue (DATA/queue) with a recipient still to deliver.",
            value=len(envelopes),
        )
        states = GaugeMetricFamily(
            "txmailhost_queue_recipients",
            "Recipients in the relay queue, by state (pending: not tried yet; deferred: "
            "waiting for a retry).",
            labels=["state"],
        )
        counts = {"pending": 0, "deferred": 0}
        for envelope in envelopes:
            for recipient in envelope.active():
                counts[recipient.state] = counts.get(recipient.state, 0) + 1
        for state, count in sorted(counts.items()):
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            "txmailhost_queue_held_messages",
            "Messages in the relay queue kept by 'txmailhost queue hold'.",
            value=sum(1 for e in envelopes if e.held),
        )
        oldest = min((e.arrival for e in envelopes), default=now)
        yield GaugeMetricFamily(
            "txmailhost_queue_oldest_age_seconds",
            "Age of the oldest message in the relay queue (0 when it is empty).",
            value=max(0.0, now - oldest),
        )

    def _pools(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "txmailhost_threadpool_queue_depth",
            "Work items waiting for a thread, per thread pool (storage: fsyncs and Maildir; "
            "accounts: SQLite and password hashes).",
            labels=["pool"],
        )
        busy = GaugeMetricFamily(
            "txmailhost_threadpool_busy_threads",
            "Threads running a work item now, per thread pool.",
            labels=["pool"],
        )
        size = GaugeMetricFamily(
            "txmailhost_threadpool_max_threads", "Thread limit of each pool.", labels=["pool"]
        )
        for pool in self.pools:
            name = (pool.name or "pool").removeprefix("txmailhost-")
            # ThreadPool has no public backlog count; ``_queue`` is its compatibility view
            # of the team's backlog (twisted.python.threadpool), read-only.
            backlog = getattr(pool, "backlog", None)  # a ``pools.Lane`` counts its own
            depth.add_metric([name], backlog() if backlog else pool._queue.qsize())
            busy.add_metric([name], len(pool.working))
            size.add_metric([name], pool.max)
        yield depth
        yield busy
        yield size


class ReactorLagProbe:
    """Asks for a call every second and records how late it came: the time the reactor spent
    in something else (a blocking call would show here first)."""

    def __init__(self, reactor: Any, interval: float = LAG_INTERVAL) -> None:
        self.reactor = reactor
        self.interval = interval
        self._call: Any = None
        self._due = 0.0

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.reactor.seconds() + self.interval
        self._call = self.reactor.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        metrics.reactor_lag(self.reactor.seconds() - self._due)
        self._schedule()


def page_registry() -> Any:
    """What ``/metrics`` shows: this process's registry, or, in a worker process
    (``workers/``, which sets ``PROMETHEUS_MULTIPROC_DIR`` for every worker), the sum over
    all workers from the files prometheus_client keeps there per process."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return metrics.REGISTRY
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return registry


class MetricsPage(Resource):
    """``/metrics``; every other path is 404 (Resource's default)."""

    isLeaf = True

    def __init__(self, registry: Any = metrics.REGISTRY) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        if request.path.rstrip(b"/") != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return encoder(self.registry)

    def render_HEAD(self, request: Any) -> bytes:
        return self.render_GET(request)


class MetricsSite(BoundedSite):
    """The HTTP factory of the metrics listener; registers the scrape-time collector and
    starts the lag probe while it listens. It reads no request body (``httpbounds.py``)."""

    noisy = False

    def __init__(self, reactor: Any, queue: Any, pools: Sequence[Any]) -> None:
        self.registry = page_registry()
        super().__init__(MetricsPage(self.registry), reactor=reactor)
        self.collector = ServerCollector(reactor, queue, pools)
        self.probe = ReactorLagProbe(reactor)
        self._registered = False

    def log(self, request: Any) -> None:
        """No access log line per scrape: Prometheus asks every few seconds."""

    def startFactory(self) -> None:
        super().startFactory()
        if not self._registered:
            self.registry.register(self.collector)
            self._registered = True
        self.probe.start()

    def stopFactory(self) -> None:
        super().stopFactory()
        self.probe.stop()
        if self._registered:
            self.registry.unregister(self.collector)
            self._registered = False
