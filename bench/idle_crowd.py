"""``python -m bench.idle_crowd``: a crowd of IMAP sessions in IDLE, and how fast mail reaches it.

Issue 22's third goal: 100,000 concurrent IMAP sessions in IDLE on one 2-core box in less than
2 GiB of server memory, each delivery pushed (``* n EXISTS``) with p99 < 1 s while SMTP keeps
accepting. For each crowd size this starts a fresh txmailhost (``bench/targets.py``, limits
raised to let the crowd in, enough ``[server] workers`` that each stays under the open-file
limit), creates the users straight in the accounts database (one password hash shared by
all: the CLI would take a second per user), then:

1. logs the crowd in (LOGIN, SELECT INBOX, IDLE) from ``K`` client processes, at most
   ``--concurrency`` handshakes at a time in all. One process can't hold 100,000 sockets
   where the hard open-file limit is lower (20,000 on the project's test machine, and an
   unprivileged process can't raise it), so each holds at most ``--per-process`` sessions.
   The client sockets are spread over 127.0.0.2-127.0.0.N, at most 20,000 per address: one
   source address has ~28,000 ephemeral ports;
2. samples the server's memory (PSS, summed over the supervisor and its workers) with
   everyone idle, and counts each server process's open descriptors;
3. sends ``--deliveries`` messages over SMTP from this (the parent) process, one at a time,
   ``--interval`` apart, each to a random user; every client process notes when each
   ``* n EXISTS`` line arrives, and the parent takes, for every session of the recipient,
   the time from the SMTP ``250`` to the first EXISTS that counts the message.

The client processes share the box's 2 cores with the server, and each reads its sockets
itself: a push latency includes that, so it is an upper bound on the server's. Results are
printed and, with ``--output``, written as reST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import multiprocessing
import os
import platform
import random
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from bench import memory, targets
from bench.runner import raise_file_limit
from bench.server import BENCH_DOMAIN, PASSWORD

PORTS_PER_ADDRESS = 20_000  # below the ~28,000 of Linux's default ephemeral range
FIRST_SOURCE = 2  # 127.0.0.1 is left to the SMTP sender, the harness and everyone else
SESSIONS_PER_WORKER = 15_000  # a server worker's share, well below a 20,000 open-file limit
PUSH_TIMEOUT = 10.0  # an EXISTS later than this after the 250 counts as missed
# Linux: bind() picks the source port only at connect(), unique per 4-tuple, not per address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass
class CrowdResult:
    sessions: int
    users: int
    workers: int
    clients: int
    connected: int = 0
    failed: int = 0
    login_seconds: float = 0.0
    login_half_seconds: float = 0.0  # until half the crowd was in IDLE
    base_kib: int = 0
    crowd_kib: int = 0
    server_fds: list[int] = field(default_factory=list)  # per server process, crowd in IDLE
    pushes: list[float] = field(default_factory=list)  # seconds, one per (delivery, session)
    missed: int = 0  # (delivery, session) pairs with no EXISTS within PUSH_TIMEOUT
    smtp_ms: list[float] = field(default_factory=list)  # DATA end to 250, per delivery
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    @property
    def per_session_kib(self) -> float:
        return (self.crowd_kib - self.base_kib) / max(1, self.connected)


# -- the client processes ------------------------------------------------------------------------


class Session:
    """One IMAP client: log in, select, IDLE, then note when each EXISTS line arrives."""

    def __init__(self, user: str, source: str) -> None:
        self.user = user
        self.source = source
        self.writer: asyncio.StreamWriter | None = None
        self.exists: list[tuple[int, float]] = []  # (n of "* n EXISTS", time.monotonic())

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
        self.writer = writer
        await reader.readline()  # greeting
        for command in (f'a LOGIN {self.user} "{PASSWORD}"', "b SELECT INBOX"):
            writer.write(command.encode() + b"\r\n")
            tag = command[:1].encode()
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("closed during login")
                if line.startswith(tag + b" "):
                    if not line.startswith(tag + b" OK"):
                        raise ConnectionError(line.decode(errors="replace").strip())
                    break
        writer.write(b"c IDLE\r\n")
        line = await reader.readline()
        if not line.startswith(b"+"):
            raise ConnectionError(f"IDLE refused: {line!r}")
        loop.create_task(self._listen(reader))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ValueError):
            while line := await reader.readline():
                if line.startswith(b"* ") and line.endswith(b" EXISTS\r\n"):
                    with contextlib.suppress(ValueError):
                        self.exists.append((int(line[2:-9]), time.monotonic()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _client(conn: Connection, port: int, plan: list[tuple[int, str, str]], gate: int) -> None:
    """A client process: ``plan`` is (session number, user, source address) per session."""
    soft = raise_file_limit(len(plan) + 200)
    if soft < len(plan) + 50:
        conn.send(("error", f"open-file limit {soft} is too low for {len(plan)} sessions"))
        return
    asyncio.run(_client_main(conn, port, plan, gate))


async def _client_main(
    conn: Connection, port: int, plan: list[tuple[int, str, str]], gate_size: int
) -> None:
    sessions = {number: Session(user, source) for number, user, source in plan}
    gate = asyncio.Semaphore(gate_size)
    errors: list[str] = []
    finished: list[float] = []

    async def open_one(number: int, session: Session) -> int | None:
        async with gate:
            try:
                await asyncio.wait_for(session.open(port), 300)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as e:
                if len(errors) < 3:
                    errors.append(f"session {number}: {e!r}")
                session.close()
                return None
        finished.append(time.monotonic())
        return number

    conn.send(("ready",))
    await asyncio.to_thread(conn.recv)  # "go": every client process starts at once
    opened = [
        n
        for n in await asyncio.gather(*map(open_one, sessions, sessions.values()))
        if n is not None
    ]
    conn.send(("logged", opened, len(sessions) - len(opened), errors, finished))
    await asyncio.to_thread(conn.recv)  # "report": the deliveries are over
    conn.send(("exists", {n: s.exists for n, s in sessions.items() if s.exists}))
    await asyncio.to_thread(conn.recv)  # "close"
    for session in sessions.values():
        session.close()
    await asyncio.sleep(0.5)  # let the closes reach the server before the process ends


# -- the parent: server, SMTP sender, figures ----------------------------------------------------


async def _smtp_send(port: int, rcpt: str, n: int) -> float:
    """One message; returns the monotonic time its 250 arrived. Lock-step, plain text."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line or line[3:4] != b"-":
                return line

    await reply()
    for command in (b"EHLO bench.client", b"MAIL FROM:<load@client.test>",
                    f"RCPT TO:<{rcpt}>".encode(), b"DATA"):  # fmt: skip
        writer.write(command + b"\r\n")
        await reply()
    body = f"Subject: crowd {n}\r\nMessage-ID: <crowd-{n}@client.test>\r\n\r\nhello\r\n.\r\n"
    writer.write(body.encode())
    line = await reply()
    done = time.monotonic()
    if not line.startswith(b"250"):
        raise RuntimeError(f"delivery {n} refused: {line!r}")
    writer.write(b"QUIT\r\n")
    writer.close()
    return done


def _plan(result: CrowdResult) -> list[list[tuple[int, str, str]]]:
    """Sessions dealt out to the client processes like cards, with their source addresses.

    Dealt, not cut in blocks: session i is user i mod users, and blocks of 16,000 would start
    every client process on the same users at the same moment, each login of one user landing
    on another server worker before any had verified the password (one scrypt per worker, as
    if the workers shared nothing). Dealt, the processes log in different users at once."""
    users = [f"crowd{u}@{BENCH_DOMAIN}" for u in range(result.users)]
    plans: list[list[tuple[int, str, str]]] = [[] for _ in range(result.clients)]
    for i in range(result.sessions):
        source = f"127.0.0.{FIRST_SOURCE + i // PORTS_PER_ADDRESS}"
        plans[i % result.clients].append((i, users[i % len(users)], source))
    return plans


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _deliveries(
    server: targets.Server, result: CrowdResult, args: argparse.Namespace, users: list[str]
) -> list[tuple[str, int, float]]:
    """Send the deliveries; (recipient, its EXISTS count once delivered, time of the 250)."""
    rng = random.Random(22)
    delivered: dict[str, int] = {}
    sent = []

    async def run() -> None:
        for n in range(args.deliveries):
            user = rng.choice(users)
            started = time.monotonic()
            acked = await _smtp_send(server.smtp_port, user, n)
            result.smtp_ms.append((acked - started) * 1000)
            delivered[user] = delivered.get(user, 0) + 1
            sent.append((user, delivered[user], acked))
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        await asyncio.sleep(PUSH_TIMEOUT)

    asyncio.run(run())
    return sent


def _crowd(server: targets.Server, result: CrowdResult, args: argparse.Namespace) -> None:
    plans = _plan(result)
    context = multiprocessing.get_context("fork")  # no threads here yet; children start fast
    pipes, processes = [], []
    gate = max(1, args.concurrency // result.clients)
    try:
        for plan in plans:
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_client, args=(theirs, server.imap_port, plan, gate), daemon=True
            )
            process.start()
            theirs.close()
            pipes.append(mine)
            processes.append(process)
        for pipe in pipes:
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(f"client process: {message[1]}")
        # Worker 0 starts the others once it is ready, after the ports answer: the base is
        # sampled with every worker up, or their start would count as the crowd's memory.
        deadline = time.monotonic() + 60
        while len(server.pids()) < (result.workers + 1 if result.workers > 1 else 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the server's workers did not all start")
            time.sleep(0.5)
        time.sleep(3.0)
        result.base_kib = memory.total_kib(server.pids())
        # time.monotonic() is CLOCK_MONOTONIC on Linux: one clock for the whole system, not
        # per process, so the times the client processes report (login ends, EXISTS lines)
        # compare with this process's (the start, the SMTP 250s) directly.
        start = time.monotonic()
        for pipe in pipes:
            pipe.send("go")
        finished: list[float] = []
        connected: set[int] = set()
        for pipe in pipes:
            _, opened, failed, errors, ends = pipe.recv()
            connected.update(opened)
            result.connected += len(opened)
            result.failed += failed
            finished += ends
            for error in errors:
                print(f"  {error}", file=sys.stderr)
        finished.sort()
        if finished:
            result.login_seconds = finished[-1] - start
            result.login_half_seconds = finished[(len(finished) - 1) // 2] - start
            marks = [finished[min(len(finished) - 1, len(finished) * q // 10)] - start
                     for q in range(1, 11)]  # fmt: skip
            print("  in IDLE after (s), by tenths:", " ".join(f"{m:.0f}" for m in marks))
        time.sleep(3.0)  # settle: sessions' buffers freed, pools idle
        pids = server.pids()
        result.crowd_kib = memory.total_kib(pids)
        result.server_fds = [_open_fds(pid) for pid in pids]
        users_in = sorted({user for plan in plans for n, user, _ in plan if n in connected})
        sent = _deliveries(server, result, args, users_in)
        for pipe in pipes:
            pipe.send("report")
        exists: dict[int, list[tuple[int, float]]] = {}
        for pipe in pipes:
            exists.update(pipe.recv()[1])
        for pipe in pipes:
            pipe.send("close")
        for process in processes:
            process.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    _score(result, plans, connected, sent, exists)


def _score(
    result: CrowdResult,
    plans: list[list[tuple[int, str, str]]],
    connected: set[int],
    sent: list[tuple[str, int, float]],
    exists: dict[int, list[tuple[int, float]]],
) -> None:
    """Push latencies: for each delivery and each session in IDLE of its recipient, the first
    EXISTS whose count includes the message (two quick deliveries may share one line)."""
    by_user: dict[str, list[int]] = {}
    for plan in plans:
        for number, user, _ in plan:
            if number in connected:
                by_user.setdefault(user, []).append(number)
    for user, count, acked in sent:
        for number in by_user.get(user, []):
            seen = [t for n, t in exists.get(number, []) if n >= count]
            latency = min(seen) - acked if seen else None
            if latency is None or latency > PUSH_TIMEOUT:
                result.missed += 1
            else:
                result.pushes.append(max(0.0, latency))


def _add_users(data: Path, count: int) -> None:
    from txmailhost.accounts.db import AccountsDB
    from txmailhost.accounts.passwords import hash_password

    db = AccountsDB(str(data / "accounts.sqlite"))
    hashed = hash_password(PASSWORD)
    for u in range(count):
        db.add_user_with_hash(f"crowd{u}@{BENCH_DOMAIN}", hashed)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def workers_for(sessions: int) -> int:
    """Server workers for a crowd: each under ``SESSIONS_PER_WORKER`` sessions."""
    return max(1, -(-sessions // SESSIONS_PER_WORKER))


def measure(sessions: int, users: int, args: argparse.Namespace, workdir: Path) -> CrowdResult:
    workers = args.workers or workers_for(sessions)
    clients = -(-sessions // args.per_process)
    result = CrowdResult(sessions, users, workers, clients)
    result.load = (os.getloadavg()[0], 0.0)
    with targets.running(
        workdir / f"crowd-{sessions}",
        workers=workers,
        max_connections=sessions + 1000,
        start_timeout=120.0,
        # LOGIN without TLS from 127.0.0.2 and up: "same-address" would want 127.0.0.1.
        extra_security='plaintext_auth_from = ["loopback"]\n',
    ) as server:
        _add_users(workdir / f"crowd-{sessions}" / "data", users)
        _crowd(server, result, args)
    result.load = (result.load[0], os.getloadavg()[0])
    return result


def _rows(results: list[CrowdResult]) -> list[list[str]]:
    rows = []
    for r in results:
        p50, p99 = _percentile(r.pushes, 0.5), _percentile(r.pushes, 0.99)
        rows.append(
            [
                f"{r.sessions:,}",
                f"{r.workers} / {r.clients}",
                f"{r.connected:,} ({r.failed} failed)",
                f"{r.login_seconds:.1f} ({r.login_half_seconds:.1f})",
                f"{r.crowd_kib / 1024:.0f}",
                f"{r.per_session_kib:.1f}",
                f"{p50 * 1000:.0f} / {p99 * 1000:.0f}",
                f"{r.missed} of {r.missed + len(r.pushes)}",
                f"{_percentile(r.smtp_ms, 0.5):.0f} / {_percentile(r.smtp_ms, 0.99):.0f}",
                f"{r.load[0]:.1f} / {r.load[1]:.1f}",
            ]
        )
    return rows


HEADER = [
    "Sessions",
    "Server workers / client processes",
    "In IDLE",
    "Login of all (s) (half)",
    "Server PSS (MiB)",
    "Per session (KiB)",
    "Push p50 / p99 (ms)",
    "Missed pushes",
    "SMTP 250 p50 / p99 (ms)",
    "Load avg before / after",
]


def _rst(results: list[CrowdResult], args: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "Benchmarks: a crowd of idle IMAP sessions",
        "=========================================",
        "",
        ".. Written by ``python -m bench.idle_crowd`` (bench/idle_crowd.py); rerun it rather"
        " than editing.",
        "",
        f":Date: {now}",
        f":Command: ``python -m bench.idle_crowd {' '.join(sys.argv[1:])}``",
        f":Machine: {machine()}",
        f":Workload: sessions over {args.users:,} users (at most; fewer for a smaller crowd), "
        f"{args.deliveries} deliveries {args.interval:g} s apart, client processes of at most "
        f"{args.per_process:,} sessions, {args.concurrency} logins at once in all",
        "",
        "Each session logged in (LOGIN), selected INBOX and sent IDLE. *Login of all* is from "
        "the start until the last session was in IDLE (in brackets: until half were). Server "
        "PSS is summed over the supervisor and its workers with the crowd idle; per session is "
        "its growth over the server before the crowd, divided by the sessions. A push is the "
        "time from a delivery's SMTP 250 (in the parent process) to the ``* n EXISTS`` line "
        "counting it, on each session of its recipient (in the client processes; both read "
        "CLOCK_MONOTONIC, one clock for the whole system). The client processes share the "
        "box's 2 cores with the server and read every socket themselves: the latencies are "
        "an upper bound on the server's. The load average is the machine's (other work ran "
        "beside this).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for row in [HEADER, *_rows(results)]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    lines.append("")
    for r in results:
        if r.server_fds:
            fds = ", ".join(f"{n:,}" for n in r.server_fds)
            lines.append(
                f"Open descriptors per server process at {r.sessions:,} (supervisor first): {fds}."
            )
            lines.append("")
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Linux {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_crowd", description=__doc__)
    parser.add_argument("--sessions", default="1000,10000", help="crowd sizes (1000,10000)")
    parser.add_argument("--users", type=int, default=1000, help="accounts the crowd uses (1000)")
    parser.add_argument("--deliveries", type=int, default=100, help="messages pushed (100)")
    parser.add_argument("--interval", type=float, default=0.2, help="s between deliveries (0.2)")
    parser.add_argument("--concurrency", type=int, default=200, help="logins at once (200)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help=f"[server] workers (default: one per {SESSIONS_PER_WORKER:,} sessions)",
    )
    parser.add_argument(
        "--per-process", type=int, default=16_000, help="sessions per client process (16000)"
    )
    parser.add_argument("--output", type=Path, help="write reST here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sessions.split(",")]
    # SIGTERM (and SIGINT, which a shell ignores in background jobs) end the run through the
    # finally blocks, which stop the client processes and the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The server (twistd) inherits this limit; its workers raise theirs the same way.
    raise_file_limit(SESSIONS_PER_WORKER * 2)
    results = []
    with tempfile.TemporaryDirectory(prefix="txmailhost-crowd-") as tmp:
        for size in sizes:
            users = min(args.users, size)
            print(f"crowd of {size}: {users} users", flush=True)
            r = measure(size, users, args, Path(tmp))
            results.append(r)
            print(
                "  " + " | ".join(f"{h}: {c}" for h, c in zip(HEADER, _rows([r])[0], strict=True)),
                flush=True,
            )
    if args.output:
        args.output.write_text(_rst(results, args))
    return 0 if all(r.connected == r.sessions for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
