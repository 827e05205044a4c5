"""Workers sharing one listening socket share its connections evenly.

Twisted's ``tcp.Port.doRead`` accepts in a loop, up to ``numberAccepts`` connections per
readable event (100 to start, growing by 20 each time the loop runs dry). That suits one
process. With several on one inherited socket (``workers/supervisor.py``) the kernel wakes
every worker for a pending connection and whichever runs first takes the burst: 50 IMAP
clients connecting at once were split 40/10 and 39/11 between two workers (``ss -tnp``), so
one core did most of the work while the other idled, and in a crowd of idle sessions one
worker would reach its open-file limit long before the rest.

So a worker's port here accepts one connection per wake-up (nginx's default, ``multi_accept
off``), and before accepting asks its factory (``limits.LimitedFactory.over_fair_share``,
from the counts the workers already exchange for the connection limits) whether it holds
clearly more connections than the least busy worker. If it does, it stops reading the socket
for ``PAUSE`` seconds and lets the others take the connection. It never waits longer than
``MAX_WAIT`` for one connection: the counts are hints (a worker that died, or one busy for a
while, must not leave a client waiting), so after that it accepts anyway.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import tcp

PAUSE = 0.002  # seconds a worker over its share leaves the socket to the others
MAX_WAIT = 0.025  # then it accepts anyway


class SharedPort(tcp.Port):
    """A listening port shared with other workers: one accept per event, fair shares."""

    _waiting_since: float | None = None
    _resume_call: Any = None
    held = False  # set by limits.AcceptPause while this worker is near its open-file limit

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:  # noqa: N802 - Twisted's name
        return 1

    @numberAccepts.setter
    def numberAccepts(self, _value: int) -> None:  # noqa: N802 - doRead's scaling, ignored
        pass

    def doRead(self) -> None:  # noqa: N802 - Twisted's name
        over = getattr(self.factory, "over_fair_share", None)
        if over is not None and over():
            now = time.monotonic()
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < MAX_WAIT:
                self.stopReading()
                self._resume_call = self.reactor.callLater(PAUSE, self._resume)
                return
        self._waiting_since = None
        super().doRead()

    def _resume(self) -> None:
        self._resume_call = None
        if self.connected and not self.disconnecting and not self.held:
            self.startReading()

    def loseConnection(self, *args: Any) -> Any:  # noqa: N802 - Twisted's name
        """Stopping listening also drops a pending resume (no timer outlives the port)."""
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        return super().loseConnection(*args)


def take_turns(port: Any) -> Any:
    """Make an adopted ``tcp.Port`` a :class:`SharedPort`; other ports (a test's fake) are
    returned unchanged."""
    if type(port) is tcp.Port:
        port.__class__ = SharedPort
    return port
