"""What makes a server process one worker among several: its slot, its sockets, its spool.

``service.build`` takes a :class:`WorkerRole` and builds the same server as always, with these
differences: listeners adopt the sockets the supervisor bound (``sockets``, by listener
label), incoming files live in a directory of the slot's own (a worker's start-up recovery
takes everything in its directory, so two workers must never share one), and only worker 0
(``primary``) runs the relay queue, the web and metrics listeners and the periodic reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service

# Listeners served by worker 0 only: the web's sessions and the metrics counters live in
# one process's memory, and neither is where the load is.
PRIMARY_ONLY = frozenset({"web", "web_redirect", "metrics"})

READY = "txmailhost_worker_ready"  # the event key a worker logs when up (main.py, supervisor.py)


@dataclass(frozen=True)
class WorkerRole:
    slot: int
    count: int
    sockets: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # label -> (fd, family)
    # The key every worker's cache of verified passwords shares (accounts/credcache.py),
    # from the supervisor through stdin; None: a key of this worker's own (no sharing).
    credential_key: bytes | None = field(default=None, repr=False)

    @property
    def primary(self) -> bool:
        return self.slot == 0

    def incoming_dir(self, queue_dir: str) -> str:
        """Worker 0 keeps the single-process layout, so changing ``workers`` strands nothing."""
        if self.slot == 0:
            return queue_dir
        return os.path.join(queue_dir, f"worker-{self.slot}")

    def orphan_dirs(self, queue_dir: str) -> list[str]:
        """Incoming directories of slots beyond ``count``, taken over by worker 0."""
        if not self.primary or not os.path.isdir(queue_dir):
            return []
        found = []
        for name in os.listdir(queue_dir):
            prefix, _, number = name.partition("-")
            if prefix == "worker" and number.isdigit() and int(number) >= self.count:
                found.append(os.path.join(queue_dir, name))
        return sorted(found)


class BusService(Service):
    """Runs a worker's end of the bus (``bus.PeerBus``) while the server runs."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def startService(self) -> None:
        super().startService()
        self.bus.start()

    def stopService(self) -> None:
        super().stopService()
        self.bus.stop()
