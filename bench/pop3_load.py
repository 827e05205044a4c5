"""POP3 load generator: UIDL, then RETR of every message, on one or several concurrent sessions.

This is what a POP3 client does when it downloads a mailbox: list the unique ids, fetch each
message in turn. Commands go one at a time, each reply awaited before the next; a server that
leaves the end of a reply waiting for the client's delayed ACK shows up here as a flat ~40 ms per
RETR whatever the size (see the addendum of shared/notes/twisted-mail-audit.md). Nothing is
deleted, so the same mailbox serves every repeat.

Run alone: ``python -m bench.pop3_load --port 2110 --user u1@bench.test --password PW``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.stats import percentile

_STREAM_LIMIT = 1 << 26  # readuntil() must see a whole message


class Pop3Error(Exception):
    """An ``-ERR`` (or garbage) where the session needed ``+OK``."""


@dataclass(frozen=True)
class Pop3Load:
    """Sessions to run at once: one (address, password) per concurrent session."""

    host: str
    port: int
    accounts: Sequence[tuple[str, str]]
    retrieve: bool = True
    timeout: float = 120.0


@dataclass
class Pop3Result:
    """Totals over all sessions.

    Rates are over the RETR phase (first RETR sent to last one answered, across sessions), not
    over ``elapsed`` (first connect to last QUIT): logging in costs a password hash, which says
    nothing about serving mail and would dominate small mailboxes. It is timed on its own.
    """

    sessions: int = 0
    retrieved: int = 0
    octets: int = 0
    elapsed: float = 0.0
    login_seconds: float = 0.0  # until every session was logged in
    retr_started: float = math.inf
    retr_finished: float = -math.inf
    uidl_seconds: list[float] = field(default_factory=list)
    retr_latency: list[float] = field(default_factory=list)
    failed: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def retr_seconds(self) -> float:
        return max(0.0, self.retr_finished - self.retr_started)

    @property
    def retr_rate(self) -> float:
        return self.retrieved / self.retr_seconds if self.retr_seconds > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.octets / self.retr_seconds / 1e6 if self.retr_seconds > 0 else 0.0

    def error(self, reason: object) -> None:
        self.failed += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(str(reason) or type(reason).__name__)

    def summary(self) -> str:
        line = (
            f"{self.sessions} sessions in {self.elapsed:.2f}s (logins {self.login_seconds:.2f}s); "
            f"{self.retrieved} RETR, "
            f"{self.octets / 1e6:.1f} MB in {self.retr_seconds:.2f}s: {self.retr_rate:.1f} RETR/s, "
            f"{self.megabytes_per_second:.1f} MB/s; RETR p50 "
            f"{percentile(self.retr_latency, 50) * 1e3:.2f} ms p99 "
            f"{percentile(self.retr_latency, 99) * 1e3:.2f} ms; UIDL max "
            f"{max(self.uidl_seconds, default=float('nan')) * 1e3:.1f} ms"
        )
        return line + "".join(f"\n  error: {e}" for e in self.error_samples)


class Pop3Client:
    """Just enough POP3 (RFC 1939) to log in, list and download."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def login(
        cls, host: str, port: int, user: str, password: str, timeout: float
    ) -> Pop3Client:
        """Connect and authenticate with USER/PASS (the one mechanism every server has)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=_STREAM_LIMIT), timeout
        )
        client = cls(reader, writer, timeout)
        try:
            await client.status()
            await client.command(f"USER {user}")
            await client.command(f"PASS {password}")
        except BaseException:
            writer.close()
            raise
        return client

    async def status(self) -> str:
        async with asyncio.timeout(self.timeout):
            line = await self.reader.readline()
        if not line.startswith(b"+OK"):
            raise Pop3Error(line.decode("utf-8", "replace").strip() or "connection closed")
        return line.decode("utf-8", "replace").strip()

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.status()

    async def multiline(self, line: str) -> bytes:
        """Send a command with a multi-line answer; returns its lines (still dot-stuffed)."""
        await self.command(line)
        async with asyncio.timeout(self.timeout):
            first = await self.reader.readline()
            if first == b".\r\n":
                return b""
            return first + (await self.reader.readuntil(b"\r\n.\r\n"))[:-3]

    async def quit(self) -> None:
        try:
            await self.command("QUIT")
        finally:
            self.writer.close()


async def _login(load: Pop3Load, user: str, password: str, result: Pop3Result) -> Pop3Client | None:
    try:
        return await Pop3Client.login(load.host, load.port, user, password, load.timeout)
    except (OSError, TimeoutError, Pop3Error, asyncio.IncompleteReadError) as e:
        result.error(f"login {user}: {e!r}")
        return None


async def _download(load: Pop3Load, user: str, client: Pop3Client, result: Pop3Result) -> None:
    """STAT, UIDL, then RETR every message in turn; QUIT without deleting anything."""
    try:
        count = int((await client.command("STAT")).split()[1])
        started = time.perf_counter()
        uids = await client.multiline("UIDL")
        result.uidl_seconds.append(time.perf_counter() - started)
        listed = uids.count(b"\r\n")
        if listed != count:
            result.error(f"UIDL listed {listed} of {count} messages")
        for number in range(1, count + 1) if load.retrieve else ():
            started = time.perf_counter()
            result.retr_started = min(result.retr_started, started)
            content = await client.multiline(f"RETR {number}")
            done = time.perf_counter()
            result.retr_finished = max(result.retr_finished, done)
            result.retr_latency.append(done - started)
            result.retrieved += 1
            result.octets += len(content)
        await client.quit()
        result.sessions += 1
    except (OSError, TimeoutError, Pop3Error, asyncio.IncompleteReadError, ValueError) as e:
        result.error(f"session {user}: {e!r}")
        client.writer.close()


async def run(load: Pop3Load, logged_in: Callable[[], None] = lambda: None) -> Pop3Result:
    """Log every account in at once, call ``logged_in``, then let every session download.

    Two phases, so that password hashing (scrypt, Argon2: deliberately slow and memory-hungry)
    is neither inside the download rate nor mistaken for what serving mail costs; ``logged_in``
    lets the caller measure each phase's memory apart.
    """
    result = Pop3Result()
    started = time.perf_counter()
    clients = await asyncio.gather(*(_login(load, u, p, result) for u, p in load.accounts))
    result.login_seconds = time.perf_counter() - started
    logged_in()
    sessions = [(u, c) for (u, _), c in zip(load.accounts, clients, strict=True) if c]
    await asyncio.gather(*(_download(load, u, c, result) for u, c in sessions))
    result.elapsed = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line for running one POP3 load by hand against any server."""
    parser = argparse.ArgumentParser(prog="python -m bench.pop3_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2110)
    parser.add_argument("--user", action="append", required=True, help="repeat: one per session")
    parser.add_argument("--password", required=True)
    parser.add_argument("--uidl-only", action="store_true")
    args = parser.parse_args(argv)
    load = Pop3Load(
        args.host, args.port, [(u, args.password) for u in args.user], not args.uidl_only
    )
    result = asyncio.run(run(load))
    print(result.summary())
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
