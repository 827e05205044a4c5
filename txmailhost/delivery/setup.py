"""Wiring for delivery: ``build_delivery`` turns the config into the server's one ``Submission``.

It prepares the spool directories under ``DATA/queue/`` (``spare/``, ``tmp/``), delivers what
a crash left acknowledged (``local.py``), sweeps what it left unacknowledged, and returns the
services to start with the application: the spares' thread and the local delivery thread.
Blocking: ``service.py`` calls it while building, before anything listens.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost.delivery.agent import DeliveryAgent
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.local import LocalDelivery, records_supported
from txmailhost.delivery.spares import SpareFiles
from txmailhost.delivery.submission import Submission
from txmailhost.pools import ThreadPoolService
from txmailhost.store.interfaces import IFileDelivery

log = Logger()


def build_delivery(
    queue_dir: str,
    hostname: str,
    store: Any,
    reactor: Any,
    pool: ThreadPool,
    queue: Any,
    sieve: Any = None,
    forward_sender: Any = None,
) -> tuple[Submission, list[Service]]:
    """The submission for a server whose spool is ``queue_dir``; ``pool`` runs the fsyncs
    (the storage pool), ``queue`` takes remote recipients (None: nothing is relayed),
    ``sieve`` runs users' scripts (``agent.py``; None: no scripts), ``forward_sender``
    rewrites the sender of relayed copies (SRS; None: kept)."""
    services: list[Service] = []
    agent = DeliveryAgent(store, sieve)
    # One thread keeps empty spool files in stock: file creation off the path to 250 (spares.py).
    spares_pool = ThreadPool(minthreads=1, maxthreads=1, name="txmailhost-spares")
    services.append(ThreadPoolService(spares_pool))
    spare_dir = os.path.join(queue_dir, "spare")
    spares = SpareFiles(spare_dir, spares_pool, keep=LocalDelivery.holds_record)
    local = None
    if not IFileDelivery.providedBy(store):
        # Linking acknowledged spool files after the 250 needs a store of files; with any
        # other store (memory) local mail is delivered through IMailStore.deliver before it.
        log.info("spool: local mail is delivered to the store before 250")
    elif records_supported(spare_dir):
        local = LocalDelivery(store, spare_dir, reactor, retire=spares.retire, agent=agent)
        delivered, discarded = local.recover_sync()  # before anything listens
        if delivered or discarded:
            log.info(
                "spool: {delivered} acknowledged message(s) delivered after a restart,"
                " {discarded} unacknowledged removed",
                delivered=delivered,
                discarded=discarded,
            )
        services.append(local)
    else:
        log.warn("spool: {dir} has no extended attributes; local mail is delivered before 250",
                 dir=spare_dir)  # fmt: skip
    spares.start()  # sweeps, then fills, once the pool starts with the service
    spool = IncomingSpool(os.path.join(queue_dir, "tmp"), reactor, pool, spares)
    swept = spool.sweep()
    if swept:
        log.info("removed {n} unacknowledged partial message(s) left by a crash", n=swept)
    submission = Submission(
        store, spool, queue=queue, local=local, hostname=hostname, agent=agent,
        forward_sender=forward_sender,
    )  # fmt: skip
    return submission, services
