"""Wiring for the relay queue: ``build_queue`` turns the config into a running ``Queue``.

The queue gets its own small thread pool (``txmailhost-relay``) for DNS lookups, so a slow
resolver can't occupy the storage pool that fsyncs incoming mail (DESIGN invariant 3); spool
writes and message reads use the pool the caller passes (the storage pool).

DSNs go back to the sender through :class:`ReturnToSender`: the report is written to a file in
``DATA/queue/tmp/`` and fsync'd, then delivered into the sender's INBOX when the sender is one
of our users (``store.files.deliver_file``), or queued with the null sender when the sender is remote. A
sender in one of our domains that no longer exists gets nothing (logged): there is nobody to
tell, and bouncing to a third party would be backscatter.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost import _safeio
from txmailhost.queue.scheduler import Queue, QueuePolicy
from txmailhost.queue.spool import Spool
from txmailhost.store.files import deliver_file

log = Logger()


class ReturnToSender:
    """Hands a DSN to its recipient (the original envelope sender)."""

    def __init__(
        self, spool: Spool, router: Any, store: Any, queue: Queue, reactor: Any, pool: Any
    ):
        self._spool = spool
        self._router = router
        self._store = store
        self._queue = queue
        self._reactor = reactor
        self._pool = pool

    def _write(self, data: bytes) -> str:
        path = os.path.join(self._spool.tmp_dir, f"dsn-{secrets.token_hex(8)}")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _safeio.fsync_dir(self._spool.tmp_dir)
        return path

    async def __call__(self, address: str, data: bytes) -> None:
        from txmailhost.routing import Outcome, RouteKind

        path = await threads.deferToThreadPool(self._reactor, self._pool, self._write, data)
        try:
            local, _, domain = address.rpartition("@")
            resolution = await self._router.resolve(local, domain)
            if resolution.outcome is Outcome.NOT_OURS:
                await self._queue.submit(None, [address], path)
            elif resolution.outcome is Outcome.OK:
                mailboxes = [(r.user, r.mailbox) for r in resolution.routes if r.user]
                remote = [r.address for r in resolution.routes if r.kind is RouteKind.REMOTE]
                if mailboxes:
                    await deliver_file(self._store, mailboxes, path)
                if remote:  # the sender forwards their mail elsewhere
                    await self._queue.submit(None, remote, path)
            else:
                log.warn(
                    "DSN for <{sender}> dropped: {why}", sender=address, why=resolution.outcome
                )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


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


def _smarthost(relay: Any) -> Any:
    """The configured smarthost, its password read from its file; None when there is none."""
    from txmailhost.relay.courier import Smarthost

    if not relay.smarthost:
        return None
    host, _, port = relay.smarthost.rpartition(":")
    password = ""
    if relay.smarthost_username:
        try:
            with open(relay.smarthost_password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit(
                f"txmailhost: relay.smarthost_password_file: can't read "
                f"{relay.smarthost_password_file!r}: {e}"
            ) from None
    return Smarthost(
        host.strip("[]"), int(port), relay.smarthost_tls, relay.smarthost_username, password
    )


def build_queue(
    config: Any, store: Any, reactor: Any, pool: Any, router: Any
) -> tuple[Queue, Service]:
    """The queue for ``config`` and the service that runs it (add it to the application).

    ``router`` is the server's one ``Router``: a DSN goes where mail for its recipient (the
    original sender) would go, so ``alice-lists@`` reaches alice under the same recipient
    delimiter, plus-folder and postmaster rules as on the SMTP listeners.
    """
    from txmailhost.relay.client import Timeouts
    from txmailhost.relay.courier import RelayCourier, TLSPolicy
    from txmailhost.relay.mx import MXResolver

    spool = Spool(config.queue_dir)
    spool.prepare()
    queue_config, relay = config.queue, config.relay
    dns_pool = ThreadPool(minthreads=1, maxthreads=8, name="txmailhost-relay")
    resolver = MXResolver(
        reactor, dns_pool, nameservers=list(relay.nameservers) or None, timeout=relay.dns_timeout
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
    )
    policy = QueuePolicy(
        retry_min=queue_config.retry_min,
        retry_max=queue_config.retry_max,
        max_lifetime=queue_config.max_lifetime,
        delay_warning=queue_config.delay_warning,
        max_connections=queue_config.max_connections,
        max_per_domain=queue_config.max_per_domain,
        max_hops=queue_config.max_hops,
    )
    queue = Queue(spool, courier, None, reactor, pool, hostname=config.hostname, policy=policy)
    queue.return_to_sender = ReturnToSender(spool, router, store, queue, reactor, pool)
    return queue, QueueService(queue, dns_pool)
