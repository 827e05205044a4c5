"""What a load generator needs to know about a running mail server, and process plumbing.

Every target (txmailhost, and each anchor: Postfix, Dovecot) is started by a context manager that
yields a ``Server``. The suites only use this record, so the same workload runs unchanged against
each of them; a protocol a target does not serve has its port set to ``None`` and its suite skips
it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DOMAIN = "bench.test"
PASSWORD = "bench-password"


@dataclass
class Server:
    """A running server: where to connect, whose memory to sample, how to make mailboxes.

    ``add_user`` creates an account (address, password) and returns its INBOX Maildir;
    ``populate`` puts ``count`` messages of ``size`` bytes in that INBOX the way the server itself
    would store them, so a POP3/IMAP measurement starts from the server's native state.
    """

    name: str
    version: str
    host: str
    add_user: Callable[[str], Path]
    pids: Callable[[], list[int]]
    populate: Callable[[str, int, int], None] | None = None
    smtp_port: int | None = None
    submission_port: int | None = None  # the AUTH-required listener (``--auth`` loads use it)
    pop3_port: int | None = None
    imap_port: int | None = None
    # Put these exact messages (CRLF) into the address's INBOX as Maildir files in ``new/``, as
    # another delivery agent would: fast enough for 100,000 messages, and the server finds them
    # on its next SELECT (txmailhost adopts unknown files, Dovecot indexes new/).
    store_files: Callable[[str, Iterable[bytes]], None] | None = None
    notes: list[str] = field(default_factory=list)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port, found by letting the kernel pick one (racy only against strangers)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """Block until something accepts on ``host:port``; fail early if ``alive()`` turns false.

    Each server logs "listening" at a different point of its start-up, so the port itself is the
    only signal that means the same thing for all of them.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if not alive():
                raise RuntimeError(f"server exited before listening on {host}:{port}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def run_quietly(argv: Sequence[str | os.PathLike[str]], timeout: float = 60) -> str:
    """Run a helper command; on failure raise with its output, which is what explains it.

    Output goes through a temporary file, not a pipe: a daemon that forks and keeps the inherited
    descriptors open (Dovecot does) would otherwise make us wait for an EOF that never comes.
    """
    with tempfile.TemporaryFile() as output:
        done = subprocess.run(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        output.seek(0)
        text = output.read().decode(errors="replace").strip()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {done.returncode}: {text}")
    return text


def read_pidfile(path: Path) -> int | None:
    """The pid in a daemon's pid file, or None when there is none (not started, or gone)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children_by_parent() -> dict[int, list[int]]:
    """The whole process table as parent -> children (one pass over /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants: Postfix and Dovecot are a master plus its children."""
    tree = children_by_parent()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def kill_tree(root: int, grace: float = 5.0) -> None:
    """Last resort after a polite stop: TERM, then KILL, ``root`` and whatever it spawned."""
    pids = process_tree(root) if is_running(root) else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(is_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [p for p in pids if is_running(p)]
        if not pids:
            return
