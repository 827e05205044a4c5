"""A clock that stands still until a test moves it (``clock.now += 86401``).

Callable, as ``time.monotonic`` and ``time.time`` are where code takes a clock function, and
with ``time()`` and ``seconds()`` for code that asks an object (``sieve.vacation``'s clock, a
reactor's ``seconds``).
"""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def seconds(self) -> float:
        return self.now
