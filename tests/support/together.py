"""``at_once``: calls run in threads released together, for races between sessions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def at_once(*calls: Callable[[], Any], timeout: float = 120.0) -> list[Any]:
    """Run each of ``calls`` in its own thread, all released at one barrier so their
    requests meet at the server; their results in order. A thread still running after
    ``timeout`` seconds fails the test: a session that never got its answers (a lock never
    let go, a reply lost) is what races break, and it must not pass as a ``None``."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(k: int) -> None:
        start.wait()
        results[k] = calls[k]()

    workers = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=timeout)
    assert not any(w.is_alive() for w in workers), "a session never got its answers"
    return results
