"""``python -m bench.idle_crowd``: a crowd of IMAP sessions in IDLE, and how fast mail reaches it.

Issue 22's third goal: 100,000 concurrent IMAP sessions in IDLE on one 2-core box in less than
2 GiB of server memory, each delivery pushed (``* n EXISTS``) with p99 < 1 s while SMTP keeps
accepting. For each crowd size this starts a fresh txmailhost (``bench/targets.py``, limits
raised to let the crowd in), creates the users straight in the accounts database (one
password hash shared by all: the CLI would take a second per user), then:

1. logs the crowd in (LOGIN, SELECT INBOX, IDLE), at most ``--concurrency`` handshakes at a
   time, spreading the client sockets over 127.0.0.1-127.0.0.N: one source address has only
   ~28,000 ephemeral ports;
2. samples the server's memory (PSS, summed over its processes) with everyone idle;
3. sends ``--deliveries`` messages over SMTP, one at a time, each to a random user, and
   records for every session of that user the time from the SMTP ``250`` to its
   ``EXISTS`` line.

The crowd and the SMTP sender share one asyncio loop in this process, so a push latency also
includes the time this process takes to read 100,000 sockets' worth of events: it is an upper
bound on the server's. Results are printed and, with ``--output``, written as reST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import platform
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import memory, targets
from bench.server import BENCH_DOMAIN, PASSWORD

PORTS_PER_ADDRESS = 20_000  # below the ~28,000 of Linux's default ephemeral range


@dataclass
class CrowdResult:
    sessions: int
    users: int
    workers: int
    connected: int = 0
    failed: int = 0
    login_seconds: float = 0.0
    base_kib: int = 0
    crowd_kib: int = 0
    pushes: list[float] = field(default_factory=list)  # seconds, one per (delivery, session)
    missed: int = 0  # sessions that never saw a delivery meant for them
    smtp_ms: list[float] = field(default_factory=list)  # DATA end to 250, per delivery

    @property
    def per_session_kib(self) -> float:
        return (self.crowd_kib - self.base_kib) / max(1, self.connected)


class Session:
    """One IMAP client: log in, select, IDLE, then note when EXISTS lines arrive."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: asyncio.Future[float] | None = None

    async def open(self, port: int, source: str) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), limit=64 * 1024
        )
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
        asyncio.get_running_loop().create_task(self._listen(reader))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            if line.endswith(b"EXISTS\r\n") and self.waiting and not self.waiting.done():
                self.waiting.set_result(time.monotonic())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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


async def _crowd(server: targets.Server, result: CrowdResult, args: argparse.Namespace) -> None:
    users = [f"crowd{u}@{BENCH_DOMAIN}" for u in range(result.users)]
    sessions = [Session(users[i % len(users)]) for i in range(result.sessions)]
    gate = asyncio.Semaphore(args.concurrency)

    async def open_one(i: int, session: Session) -> bool:
        source = f"127.0.0.{1 + i // PORTS_PER_ADDRESS}"
        async with gate:
            try:
                await asyncio.wait_for(session.open(server.imap_port, source), 120)
                return True
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as e:
                if result.failed < 3:
                    print(f"  session {i}: {e!r}", file=sys.stderr)
                result.failed += 1
                return False

    result.base_kib = memory.total_kib(server.pids())
    start = time.monotonic()
    opened = await asyncio.gather(*(open_one(i, s) for i, s in enumerate(sessions)))
    result.login_seconds = time.monotonic() - start
    result.connected = sum(opened)
    live = [s for s, ok in zip(sessions, opened, strict=True) if ok]
    await asyncio.sleep(2.0)  # settle: sessions' buffers freed, pools idle
    result.crowd_kib = memory.total_kib(server.pids())
    by_user: dict[str, list[Session]] = {}
    for session in live:
        by_user.setdefault(session.user, []).append(session)
    rng = random.Random(22)
    loop = asyncio.get_running_loop()
    for n in range(args.deliveries):
        user = rng.choice(sorted(by_user))
        watching = by_user[user]
        for session in watching:
            session.waiting = loop.create_future()
        sent = time.monotonic()
        acked = await _smtp_send(server.smtp_port, user, n)
        result.smtp_ms.append((acked - sent) * 1000)
        done, pending = await asyncio.wait([s.waiting for s in watching], timeout=10)
        result.missed += len(pending)
        result.pushes += [max(0.0, f.result() - acked) for f in done]
        for session in watching:  # the next EXISTS of this user is for the next delivery
            session.waiting = None
    for session in live:
        session.close()


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


def measure(sessions: int, users: int, args: argparse.Namespace, workdir: Path) -> CrowdResult:
    result = CrowdResult(sessions, users, args.workers)
    with targets.running(
        workdir / f"crowd-{sessions}", workers=args.workers, max_connections=sessions + 1000
    ) as server:
        _add_users(workdir / f"crowd-{sessions}" / "data", users)
        asyncio.run(_crowd(server, result, args))
    return result


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    with contextlib.suppress(ValueError, OSError):  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rows(results: list[CrowdResult]) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append(
            [
                f"{r.sessions:,}",
                f"{r.connected:,} ({r.failed} failed)",
                f"{r.login_seconds:.1f}",
                f"{r.crowd_kib / 1024:.0f}",
                f"{r.per_session_kib:.1f}",
                f"{_percentile(r.pushes, 0.5) * 1000:.0f} / {_percentile(r.pushes, 0.99) * 1000:.0f}",
                f"{r.missed}",
                f"{_percentile(r.smtp_ms, 0.5):.0f} / {_percentile(r.smtp_ms, 0.99):.0f}",
            ]
        )
    return rows


HEADER = [
    "Sessions",
    "In IDLE",
    "Login of all (s)",
    "Server PSS (MiB)",
    "Per session (KiB)",
    "Push p50 / p99 (ms)",
    "Missed pushes",
    "SMTP 250 p50 / p99 (ms)",
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
        f":Machine: {memory_machine()}",
        f":Workers: ``[server] workers = {args.workers}``",
        "",
        "Each session logged in (LOGIN), selected INBOX and sent IDLE; users have "
        "sessions / users sessions each. A push is the time from a delivery's SMTP 250 to "
        "the ``* n EXISTS`` line on each session of its recipient, measured in the load "
        "generator, which shares the box (and its 2 cores) with the server and reads every "
        "socket itself: an upper bound.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for row in [HEADER, *_rows(results)]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def memory_machine() -> str:
    import os

    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Linux {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_crowd", description=__doc__)
    parser.add_argument("--sessions", default="1000,10000", help="crowd sizes (1000,10000)")
    parser.add_argument("--users", type=int, default=1000, help="accounts the crowd uses (1000)")
    parser.add_argument("--deliveries", type=int, default=100, help="messages pushed (100)")
    parser.add_argument("--concurrency", type=int, default=200, help="logins at once (200)")
    parser.add_argument("--workers", type=int, default=1, help="[server] workers (1)")
    parser.add_argument("--output", type=Path, help="write reST here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sessions.split(",")]
    _raise_file_limit(max(sizes) * 2 + 5000)
    results = []
    with tempfile.TemporaryDirectory(prefix="txmailhost-crowd-") as tmp:
        for size in sizes:
            users = min(args.users, size)
            print(f"crowd of {size}: {users} users", flush=True)
            r = measure(size, users, args, Path(tmp))
            results.append(r)
            print(
                "  " + " | ".join(f"{h}: {c}" for h, c in zip(HEADER, _rows([r])[0], strict=True))
            )
    if args.output:
        args.output.write_text(_rst(results, args))
    return 0 if all(r.connected == r.sessions for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
