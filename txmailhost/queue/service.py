"""Wiring for the relay queue: ``build_queue`` turns the config into a running ``Queue``.

The queue gets its own small thread pool (``txmailhost-relay``) for DNS lookups, so a slow
resolver can't occupy the storage pool that fsyncs incoming mail (DESIGN invariant 3); spool
writes and message reads use the pool the caller passes (the storage pool).

DSNs go back to the sender through :class:`ReturnToSender`: the report is submitted like any
message (``txmailhost.delivery``'s ``submit``), for the sender's mailbox when the sender is one
of our users, or for the relay queue with the null sender when the sender is remote. A
sender in one of our domains that no longer exists gets nothing (logged): there is nobody to
tell, and bouncing to a third party would be backscatter. ``service.py`` sets
``queue.return_to_sender`` once the submission exists (it needs the queue too), and
``DeliveryReports`` as the submission's ``report_delivered`` (NOTIFY=SUCCESS on local
delivery).

``[queue] backend`` picks where the queue is kept: "files" (``scheduler.Queue`` over the spool
in DATA/queue, the default) or "postgres" (``claims.SharedQueue``, shared by every node of the
database of ``[store] dsn``). It does not follow ``[store] backend``: a node switched to a
database queue would leave the messages of its spool behind.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost.delivery.interfaces import Envelope, ISubmission, RecipientOptions
from txmailhost.queue import bounce, scheduler, spool
from txmailhost.queue.scheduler import Queue, QueuePolicy
from txmailhost.queue.spool import Spool
from txmailhost.routing import Outcome, Route, RouteKind

log = Logger()


class ReturnToSender:
    """Hands a DSN to its recipient (the original envelope sender) through ``submit``.

    The sender is resolved like any recipient (the server's one ``Router``): one of our users
    gets it where the delivery agent puts their mail, a remote sender (or a user's forward)
    through the relay queue with the null sender (RFC 3464 2: no bounce loops).
    """

    def __init__(self, router: Any, submission: ISubmission) -> None:
        self._router = router
        self._submission = submission

    async def __call__(self, address: str, data: bytes) -> None:
        local, _, domain = address.rpartition("@")
        resolution = await self._router.resolve(local, domain)
        if resolution.outcome is Outcome.NOT_OURS:
            routes = (Route(RouteKind.REMOTE, address),)
        elif resolution.outcome is Outcome.OK and resolution.routes:
            routes = tuple(resolution.routes)
        else:
            log.warn("DSN for <{sender}> dropped: {why}", sender=address, why=resolution.outcome)
            return
        await self._submission.submit_bytes(Envelope(None, routes), data)


class DeliveryReports:
    """``delivered`` DSNs (RFC 3464 2.3.3) for local recipients whose RCPT asked for
    NOTIFY=SUCCESS (RFC 3461 4.1), built here where every DSN is built (``bounce.py``) and
    sent through ``return_to_sender``; ``Submission.report_delivered`` calls it."""

    def __init__(self, hostname: str, return_to_sender: scheduler.ReturnToSender) -> None:
        self._hostname = hostname
        self._return_to_sender = return_to_sender

    async def __call__(
        self,
        envelope: Envelope,
        addresses: tuple[str, ...],
        queue_id: str,
        size: int,
        header_block: bytes,
    ) -> None:
        assert envelope.sender is not None
        now = time.time()
        none = RecipientOptions()
        report = spool.Envelope(
            queue_id=queue_id,
            sender=envelope.sender,
            arrival=now,
            size=size,
            recipients=[
                spool.Recipient(
                    address,
                    status="2.0.0",
                    orcpt=envelope.recipient_options.get(address, none).orcpt,
                )
                for address in addresses
            ],
            smtputf8=envelope.options.smtputf8,
            envid=envelope.options.envid,
        )
        dsn = bounce.build_dsn(
            self._hostname,
            report,
            report.recipients,
            header_block,
            action=bounce.DELIVERED,
            now=now,
        )
        await self._return_to_sender(envelope.sender, dsn)
        log.info(
            "{queue_id}: delivered DSN sent to <{sender}>",
            queue_id=queue_id,
            sender=envelope.sender,
        )


class QueueService(MultiService):
    """Starts the DNS pool, loads the spool and runs the queue; stops scheduling on shutdown."""

    def __init__(self, queue: Queue, dns_pool: ThreadPool) -> None:
        super().__init__()
        self.queue = queue
        self.dns_pool = dns_pool

    def startService(self) -> None:
        super().startService()
        self.dns_pool.start()
        d = self.queue.start()
        d.addErrback(lambda f: log.failure("the relay queue could not start", f))

    def stopService(self) -> Any:
        self.queue.stop()
        close_idle = getattr(self.queue.courier, "close_idle", None)
        if close_idle is not None:
            close_idle()  # QUIT on connections parked for reuse
        self.dns_pool.stop()
        return super().stopService()


def _mta_sts(config: Any, reactor: Any, pool: ThreadPool, resolver: Any) -> Any:
    """The MTA-STS policy source (relay/mtasts.py), trusting what ``verify`` trusts."""
    from txmailhost.relay.courier import TLSPolicy
    from txmailhost.relay.mtasts import MTASTS

    relay = config.relay
    if not relay.mta_sts:
        return None
    tls = TLSPolicy(relay.tls, dict(relay.tls_domains), relay.tls_ca_file)
    return MTASTS(
        reactor,
        pool,
        resolver,
        os.path.join(config.queue_dir, "mta-sts"),
        trust=tls.trust_root,
        timeout=relay.connect_timeout * 2,
    )


def _smarthost(relay: Any) -> Any:
    """The configured smarthost, its password read from its file; None when there is none."""
    from txmailhost.relay.courier import Smarthost

    if not relay.smarthost:
        return None
    host, _, port = relay.smarthost.rpartition(":")
    try:
        password = smarthost_password(relay)
    except ValueError as e:
        raise SystemExit(f"txmailhost: {e}") from None
    return Smarthost(
        host.strip("[]"), int(port), relay.smarthost_tls, relay.smarthost_username, password
    )


def smarthost_password(relay: Any) -> str:
    """The first line of ``relay.smarthost_password_file`` when a smarthost and its username
    are set ("" otherwise); ValueError naming the key when the file can't be read (the
    server's start and ``txmailhost check-config`` both ask)."""
    if not relay.smarthost or not relay.smarthost_username:
        return ""
    try:
        with open(relay.smarthost_password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(
            f"relay.smarthost_password_file: can't read {relay.smarthost_password_file!r}: {e}"
        ) from None


def build_queue(
    config: Any, reactor: Any, pool: Any, runner: bool = True, sweep_grace: float = 0.0
) -> tuple[Queue, Service]:
    """The queue for ``config`` and the service that runs it (add it to the application).

    ``runner`` False: this process only spools, another one delivers (worker processes,
    ``workers/``); ``sweep_grace`` is then the age below which the runner's start-up sweep
    leaves a spool file alone (another worker may be writing it).

    Its ``return_to_sender`` is left for the caller to set: ``ReturnToSender(router,
    submission)`` with the server's one ``Router`` (a DSN goes where mail for its recipient,
    the original sender, would go) and the submission built on this queue.
    """
    from txmailhost.relay.client import Timeouts
    from txmailhost.relay.courier import RelayCourier, TLSPolicy
    from txmailhost.relay.mx import MXResolver
    from txmailhost.relay.tlsrpt import TLSReports

    spool = Spool(config.queue_dir, sweep_grace)
    spool.prepare()  # the files backend's spool; DATA/queue holds incoming files either way
    queue_config, relay = config.queue, config.relay
    dns_pool = ThreadPool(minthreads=1, maxthreads=8, name="txmailhost-relay")
    resolver = MXResolver(
        reactor,
        dns_pool,
        nameservers=list(relay.nameservers) or None,
        timeout=relay.dns_timeout,
        dnssec=relay.dnssec,
    )
    courier = RelayCourier(
        reactor,
        pool,
        resolver,
        hostname=config.hostname,
        port=relay.port,
        tls=TLSPolicy(relay.tls, dict(relay.tls_domains), relay.tls_ca_file),
        timeouts=Timeouts(connect=relay.connect_timeout),
        nxdomain_grace=relay.nxdomain_grace,
        smarthost=_smarthost(relay),
        mta_sts=_mta_sts(config, reactor, dns_pool, resolver),
        tls_reports=TLSReports(reactor, dns_pool, resolver, config.hostname)
        if relay.tls_reports
        else None,
        dane=relay.dane,
    )
    policy = QueuePolicy(
        retry_min=queue_config.retry_min,
        retry_max=queue_config.retry_max,
        max_lifetime=queue_config.max_lifetime,
        delay_warning=queue_config.delay_warning,
        max_connections=queue_config.max_connections,
        max_per_domain=queue_config.max_per_domain,
        max_hops=queue_config.max_hops,
        return_full_limit=queue_config.return_full_limit,
    )
    queue: Queue
    if queue_config.backend == "postgres":
        from txmailhost.queue.claims import SharedQueue
        from txmailhost.queue.postgres import PostgresQueueStore

        queue = SharedQueue(
            PostgresQueueStore(config.store.dsn),
            courier,
            None,
            reactor,
            pool,
            hostname=config.hostname,
            work_dir=os.path.join(config.queue_dir, "relay"),
            policy=policy,
            lease=queue_config.lease_time,
            listen=config.store.dsn if runner else "",
        )
    else:
        queue = Queue(spool, courier, None, reactor, pool, hostname=config.hostname, policy=policy)
    queue.runner = runner
    service = QueueService(queue, dns_pool)
    if courier.tls_reports is not None and runner:
        reports = TimerService(REPORT_INTERVAL, _send_reports, courier.tls_reports)
        reports.clock = reactor
        reports.setServiceParent(service)
    return queue, service


def open_records(config: Any) -> Any:
    """What the admin CLI and the web console read the queue from (``IQueueRecords``): the
    spool under DATA/queue, or the shared database with ``[queue] backend = "postgres"``."""
    if config.queue.backend == "postgres":
        from txmailhost.queue.postgres import PostgresQueueStore

        return PostgresQueueStore(config.store.dsn)
    return Spool(config.queue_dir)


REPORT_INTERVAL = 86400.0  # RFC 8460 4.1: reports cover 24 hours


def _send_reports(reports: Any) -> Any:
    """The daily TLS reports; the first run, at start, has nothing to send."""
    d = Deferred.fromCoroutine(reports.send())
    d.addErrback(lambda f: log.failure("tls-rpt: sending reports failed", f))
    return d
