"""Memory of a server while a load runs: PSS summed over its processes, sampled from /proc.

txmailhost is one process; Postfix and Dovecot are a master and its children (smtpd, cleanup,
qmgr, virtual; pop3-login, pop3, auth...). Summing their VmRSS counts the shared libraries once
per process: 50 smtpd processes "use" a gigabyte that way. PSS (proportional set size, from
/proc/PID/smaps_rollup) divides each shared page among the processes mapping it, so the sum is
the memory the server really holds, and it compares a one-process server with a forking one.

Reading smaps_rollup walks page tables, which costs ~0.3 ms per process: the sampler keeps its
own CPU use near a tenth of a core by stretching the interval (20 ms for one process, more for
fifty) rather than stealing cycles from the server it measures. VmHWM (the kernel's RSS
high-water mark) is exact but per process and for its whole life, so it is kept for the
one-process case only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``), 0 when the process is gone."""
    return _field_kib(Path(f"/proc/{pid}/status"), key)


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB (VmRSS where smaps_rollup is unavailable)."""
    pss = _field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
    return pss if pss else status_kib(pid, "VmRSS")


def _field_kib(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def total_kib(pids: list[int]) -> int:
    """Summed PSS of ``pids`` in KiB."""
    return sum(pss_kib(pid) for pid in pids)


class MemorySampler:
    """Samples a server's summed PSS in a thread while the ``with`` block runs.

    ``before`` is the total just before the block, ``peak`` the highest sample within it (KiB).
    The process list is refreshed every few samples, as children come and go.
    """

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.02) -> None:
        self._list_pids = pids
        self.interval = interval
        self.before = 0
        self.peak = 0
        self.phase_peaks: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> None:
        self.before = self.peak = total_kib(self._list_pids())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def split(self) -> None:
        """End a phase of the load (say, logins): its peak goes to ``phase_peaks``; ``before``
        and ``peak`` restart from the current total, for the next phase."""
        self.phase_peaks.append(self.peak)
        self.before = self.peak = total_kib(self._list_pids())

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        pids: list[int] = []
        tick = 0
        pause = self.interval
        while True:
            if tick % 10 == 0:
                pids = self._list_pids()
            started = time.perf_counter()
            sample = total_kib(pids)  # read before ``peak``, so a split() meanwhile is kept
            self.peak = max(self.peak, sample)
            pause = max(self.interval, 9 * (time.perf_counter() - started))
            tick += 1
            if self._stop.wait(pause):
                break
        self.peak = max(self.peak, total_kib(self._list_pids()))

    @property
    def growth(self) -> int:
        """Peak minus the total before the block, in KiB."""
        return self.peak - self.before
