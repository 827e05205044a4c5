"""Per-client rates on the inbound listener, as Postfix's anvil counts them: messages (MAIL)
and recipients (RCPT) one client address may send over a sliding window. A client past its
rate gets ``421 4.7.0`` and the connection closes; it may come back when the window has moved.

Memory is bounded: each address keeps at most ``limit`` timestamps, and past ``max_clients``
addresses the ones idle longest are forgotten first (a flood of one-message clients can't
grow the table without end).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

MAX_CLIENTS = 100_000


class ClientRates:
    """``allow(address)``: may this client have one more event now? ``limit`` 0 is no limit."""

    def __init__(
        self, clock: Any, limit: int, window: float = 60.0, max_clients: int = MAX_CLIENTS
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        if self.limit <= 0:
            return True
        now = self.clock.seconds()
        events = self._events.pop(address, None)
        if events is None:
            events = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        allowed = len(events) < self.limit
        if allowed:
            events.append(now)
        self._events[address] = events  # most recently seen last
        while len(self._events) > self.max_clients:
            self._events.popitem(last=False)
        return allowed
