"""Which worker process holds a connection: read from /proc, so tests can make sessions
land on different workers (the kernel picks the worker that accepts) and know they did."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, then the
    parent's pid...); None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    """The process exists and is not a zombie (ended, not yet reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a supervisor's workers)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(name)
        if fields is not None and int(fields[1]) == pid:
            found.append(int(name))
    return sorted(found)


def _hex_address(host: str, port: int) -> str:
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def _server_inode(client: socket.socket) -> int | None:
    """The inode of the server's end of ``client``'s loopback TCP connection."""
    local = _hex_address(*client.getsockname()[:2])
    remote = _hex_address(*client.getpeername()[:2])
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == remote and fields[2] == local:
                return int(fields[9])
    return None


def worker_of(client: socket.socket, workers: list[int]) -> int | None:
    """The pid among ``workers`` holding the server end of ``client``'s connection."""
    inode = _server_inode(client)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def one_per_worker(workers: list[int], connect: Callable[[], Any]) -> dict[int, Any]:
    """Connections (``connect()``: a client with a ``sock``) until each of ``workers`` holds
    one, by pid; the extras are closed."""
    held: dict[int, Any] = {}
    deadline = time.monotonic() + 20  # a worker still starting accepts nothing yet
    while len(held) < len(workers) and time.monotonic() < deadline:
        client = connect()
        pid = worker_of(client.sock, workers)
        if pid is not None and pid not in held:
            held[pid] = client
            continue
        # Closed at once: held open, extras would meet the per-address connection limit
        # before a worker that is still starting takes its first connection.
        with contextlib.suppress(OSError):
            client.sock.close()
        time.sleep(0.05)
    assert len(held) == len(workers), "the kernel never gave a connection to every worker"
    return held


def spread(workers: list[int], connect: Callable[[], Any], count: int) -> list[Any]:
    """``count`` connections of which every one of ``workers`` holds at least one: the
    kernel spreads connections made at once as it likes, and a race between workers needs
    each of them in it."""
    assert count >= len(workers)
    clients = list(one_per_worker(workers, connect).values())
    clients += [connect() for _ in range(count - len(clients))]
    return clients
