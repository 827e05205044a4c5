"""The physical limit: fsync'd 4 KiB file creates per second on the data directory's disk.

A server that keeps the durability invariant (``250`` only after the message file and its
directory are fsync'd) cannot accept more messages per second on one connection than this loop
creates files: create, write 4 KiB, fsync the file, fsync the directory. With several writers the
file system may commit their fsyncs together (journal group commit), so the ceiling under
concurrency is measured too; a server that batches its own fsyncs can approach that one.

Run alone: ``python -m bench.fsync_ceiling [DIR] [--writers N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

_BLOCK = b"x" * 4096


def _writer(directory: Path, name: str, deadline: float, counts: list[int]) -> None:
    """Create fsync'd files until the deadline; the count goes into ``counts``."""
    made = 0
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while time.monotonic() < deadline:
            path = directory / f"{name}.{made}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, _BLOCK)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.fsync(dir_fd)
            made += 1
    finally:
        os.close(dir_fd)
    counts.append(made)


def measure(parent: Path, seconds: float = 2.0, writers: int = 1) -> float:
    """fsync'd 4 KiB creates per second in a fresh directory under ``parent`` (then removed).

    ``writers`` threads share one directory, as a server's spool does; os.fsync releases the GIL,
    so the threads really wait on the disk concurrently.
    """
    directory = Path(tempfile.mkdtemp(prefix="fsync-ceiling-", dir=parent))
    try:
        counts: list[int] = []
        started = time.monotonic()
        deadline = started + seconds
        threads = [
            threading.Thread(target=_writer, args=(directory, f"w{i}", deadline, counts))
            for i in range(max(1, writers))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        return sum(counts) / elapsed
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fsync_ceiling", description=__doc__)
    parser.add_argument("directory", nargs="?", default=tempfile.gettempdir())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", type=int, default=1)
    args = parser.parse_args(argv)
    rate = measure(Path(args.directory), args.seconds, args.writers)
    print(f"{rate:.0f} fsync'd 4 KiB creates/s ({args.writers} writer(s)) in {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
