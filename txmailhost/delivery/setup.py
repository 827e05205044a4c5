"""Wiring for delivery: ``build_delivery`` turns the config into the server's one ``Submission``.

It prepares the spool directories under ``DATA/queue/`` (``spare/``, ``tmp/``), delivers what
a crash left acknowledged (``local.py``), sweeps what it left unacknowledged, and returns the
services to start with the application: the spares' thread and the local delivery thread.
Blocking: ``service.py`` calls it while building, before anything listens.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost.delivery.agent import DeliveryAgent
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.local import LocalDelivery, records_supported
from txmailhost.delivery.spares import SpareFiles
from txmailhost.delivery.submission import Submission
from txmailhost.pools import Lane, ThreadPoolService
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
    incoming_dir: str | None = None,
    orphans: Sequence[str] = (),
) -> tuple[Submission, list[Service]]:
    """The submission for a server whose spool is ``queue_dir``; ``pool`` (the storage pool)
    sets how many fsyncs run at once, ``queue`` takes remote recipients (None: nothing is relayed),
    ``sieve`` runs users' scripts (``agent.py``; None: no scripts), ``forward_sender``
    rewrites the sender of relayed copies (SRS; None: kept).

    ``incoming_dir`` holds this process's incoming files (``spare/``, ``tmp/``; default
    ``queue_dir``): each worker process has its own, because the start-up sweep and crash
    recovery below take everything in them. ``orphans`` are such directories of workers that
    no longer exist (``[server] workers`` lowered): what they hold acknowledged is delivered
    here too."""
    services: list[Service] = []
    agent = DeliveryAgent(store, sieve)
    incoming_dir = incoming_dir or queue_dir
    # One thread keeps empty spool files in stock: file creation off the path to 250 (spares.py).
    spares_pool = ThreadPool(minthreads=1, maxthreads=1, name="txmailhost-spares")
    services.append(ThreadPoolService(spares_pool))
    spare_dir = os.path.join(incoming_dir, "spare")
    os.makedirs(spare_dir, mode=0o700, exist_ok=True)
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
        for orphan in orphans:
            _recover_orphan(store, orphan, reactor, agent)
    else:
        log.warn("spool: {dir} has no extended attributes; local mail is delivered before 250",
                 dir=spare_dir)  # fmt: skip
    spares.start()  # sweeps, then fills, once the pool starts with the service
    # The fsync before each 250 runs in a lane of its own, as many threads as ``pool``: a
    # cheaper hand-off than a ThreadPool's, for the one every message makes (pools.Lane).
    commits = Lane(reactor, getattr(pool, "max", 8), name="txmailhost-spool")
    services.insert(0, ThreadPoolService(commits))
    spool = IncomingSpool(os.path.join(incoming_dir, "tmp"), reactor, commits, spares)
    swept = spool.sweep()
    if swept:
        log.info("removed {n} unacknowledged partial message(s) left by a crash", n=swept)
    submission = Submission(
        store, spool, queue=queue, local=local, hostname=hostname, agent=agent,
        forward_sender=forward_sender,
    )  # fmt: skip
    return submission, services


def _recover_orphan(store: Any, directory: str, reactor: Any, agent: DeliveryAgent) -> None:
    """Deliver what a worker slot that no longer runs left acknowledged, then empty it."""
    spare_dir = os.path.join(directory, "spare")
    if not os.path.isdir(spare_dir):
        return
    orphan = LocalDelivery(store, spare_dir, reactor, retire=lambda *_: None, agent=agent)
    delivered, discarded = orphan.recover_sync()
    for sub in ("spare", "tmp"):  # what is left with a record failed: kept for the next start
        path = os.path.join(directory, sub)
        for name in os.listdir(path) if os.path.isdir(path) else ():
            if not LocalDelivery.holds_record(os.path.join(path, name)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, name))
    log.info(
        "spool: {dir} of a worker no longer running: {delivered} acknowledged message(s)"
        " delivered, {discarded} unacknowledged removed",
        dir=directory,
        delivered=delivered,
        discarded=discarded,
    )
