"""SMTP load generator: N messages of S octets over C concurrent connections, K per connection.

A message counts as accepted when the ``250`` after its DATA arrives: by the design's durability
invariant that is the moment the server has fsync'd it, so accepted msgs/s is the rate a sender
can actually hand mail over. Two latencies are kept per message: DATA-to-250 (from the ``354``
until the final ``250``: body transfer, fsync, and any reply that waits on a delayed ACK) and the
whole transaction (MAIL FROM to that ``250``).

Connections are reused for K messages (MAIL/RCPT/DATA repeated, like a busy relay), then closed
with QUIT and reopened. STARTTLS and AUTH PLAIN are optional. Commands are sent one at a time and
each reply awaited, unless ``pipelining`` is asked for: lock-step is the conservative case, and the
one that exposes a server whose small replies sit in Nagle's buffer.

Run alone: ``python -m bench.smtp_load --port 2525 --messages 2000 --connections 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench import messages
from bench.stats import percentile

_STREAM_LIMIT = 1 << 20


class SmtpReplyError(Exception):
    """The server answered with something other than the reply the step needs."""

    def __init__(self, step: str, code: int, text: str) -> None:
        super().__init__(f"{step}: {code} {text}")
        self.step = step
        self.code = code


@dataclass(frozen=True)
class SmtpLoad:
    """One SMTP workload; the defaults are issue 2's (4 KiB messages)."""

    host: str
    port: int
    messages: int = 2000
    size: int = 4096
    connections: int = 1
    per_connection: int = 100
    recipient: str = "u1@bench.test"
    sender: str = "loadgen@client.test"
    starttls: bool = False
    auth: tuple[str, str] | None = None
    pipelining: bool = False
    # Every connection's first session waits, once open (after STARTTLS and AUTH), until all
    # are: the logins all happen first, then the C sessions send (``rate_once_ready``).
    start_together: bool = False
    timeout: float = 60.0
    helo: str = "loadgen.client.test"
    # Ready-made messages in SMTP wire form (CRLF lines, dot-stuffed), sent in turn instead
    # of ``messages.message``'s repeated line: real mail, whose cost to filter is real mail's.
    bodies: tuple[bytes, ...] = ()


@dataclass
class SmtpResult:
    """What a load achieved; latencies in seconds, one entry per accepted message."""

    accepted: int = 0
    failed: int = 0
    elapsed: float = 0.0
    data_latency: list[float] = field(default_factory=list)
    transaction_latency: list[float] = field(default_factory=list)
    setup_latency: list[float] = field(default_factory=list)  # per session: connect to ready
    done_at: list[float] = field(default_factory=list)  # perf_counter() of each message's 250
    sending_from: float = 0.0  # with ``start_together``: when the last session was logged in
    # Of ``failed``: messages refused with 5xx after their DATA, a filter's verdict (rspamd's
    # "reject" through a milter) rather than a broken session.
    refused: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Accepted messages per second of wall time, first connect to last ``250``."""
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def rate_once_ready(self) -> float:
        """With ``start_together``: accepted msgs/s from the moment every session was open.

        ``rate`` then mixes the cost of C logins with that of the messages; this is the rate of
        C open sessions sending, the logins behind them.
        """
        if not self.sending_from or not self.done_at:
            return 0.0
        span = max(self.done_at) - self.sending_from
        return self.accepted / span if span > 0 else 0.0

    def error(self, reason: object) -> None:
        self.failed += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(str(reason) or type(reason).__name__)

    def summary(self) -> str:
        line = (
            f"{self.accepted} accepted, {self.failed} failed in {self.elapsed:.2f}s: "
            f"{self.rate:.1f} msgs/s; DATA-to-250 p50 {percentile(self.data_latency, 50) * 1e3:.2f}"
            f" ms p99 {percentile(self.data_latency, 99) * 1e3:.2f} ms; transaction p50 "
            f"{percentile(self.transaction_latency, 50) * 1e3:.2f} ms p99 "
            f"{percentile(self.transaction_latency, 99) * 1e3:.2f} ms"
        )
        return line + "".join(f"\n  error: {e}" for e in self.error_samples)


class SmtpClient:
    """A minimal ESMTP client session; just enough protocol to push mail as fast as allowed."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: set[str] = set()
        # Set by connect(): connect to ready (greeting, EHLO, STARTTLS, EHLO, AUTH), and the
        # AUTH command alone (the server's password check and its reply).
        self.setup_seconds = 0.0
        self.auth_seconds = 0.0

    @classmethod
    async def connect(cls, load: SmtpLoad) -> SmtpClient:
        """Open a session: greeting, EHLO, then STARTTLS and AUTH when the load asks for them."""
        started = time.perf_counter()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(load.host, load.port, limit=_STREAM_LIMIT), load.timeout
        )
        client = cls(reader, writer, load.timeout)
        try:
            await client.expect("greeting", 220)
            await client.ehlo(load.helo)
            if load.starttls:
                await client.command(b"STARTTLS", "STARTTLS", 220)
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                await writer.start_tls(context, server_hostname=load.host)
                await client.ehlo(load.helo)
            if load.auth:
                token = base64.b64encode(f"\0{load.auth[0]}\0{load.auth[1]}".encode()).decode()
                auth_started = time.perf_counter()
                await client.command(f"AUTH PLAIN {token}".encode(), "AUTH", 235)
                client.auth_seconds = time.perf_counter() - auth_started
        except BaseException:
            writer.close()
            raise
        client.setup_seconds = time.perf_counter() - started
        return client

    async def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply."""
        lines = []
        async with asyncio.timeout(self.timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise ConnectionError("connection closed by server")
                lines.append(line[4:].decode("utf-8", "replace").rstrip())
                if line[3:4] != b"-":
                    return int(line[:3]), "\n".join(lines)

    async def expect(self, step: str, code: int) -> str:
        got, text = await self.reply()
        if got != code:
            raise SmtpReplyError(step, got, text)
        return text

    async def command(self, line: bytes, step: str, code: int) -> str:
        self.writer.write(line + b"\r\n")
        return await self.expect(step, code)

    async def ehlo(self, name: str) -> None:
        text = await self.command(f"EHLO {name}".encode(), "EHLO", 250)
        self.extensions = {line.split()[0].upper() for line in text.splitlines()[1:] if line}

    async def send(
        self, sender: str, recipient: str, body: Iterable[bytes], pipelining: bool
    ) -> tuple[float, float]:
        """Send one message; returns (transaction seconds, DATA-to-250 seconds).

        ``body`` is the message in SMTP wire form (CRLF lines, no line starting with a dot).
        """
        started = time.perf_counter()
        envelope = [f"MAIL FROM:<{sender}>".encode(), f"RCPT TO:<{recipient}>".encode(), b"DATA"]
        steps = (("MAIL", 250), ("RCPT", 250), ("DATA", 354))
        if pipelining:
            self.writer.write(b"".join(line + b"\r\n" for line in envelope))
            for step, code in steps:
                await self.expect(step, code)
        else:
            for line, (step, code) in zip(envelope, steps, strict=True):
                await self.command(line, step, code)
        data_started = time.perf_counter()
        pending = b""
        for chunk in body:  # the last chunk goes out with the terminator, in one segment
            if pending:
                self.writer.write(pending)
                await self.writer.drain()
            pending = chunk
        self.writer.write(pending + b".\r\n")
        await self.expect("end of DATA", 250)
        done = time.perf_counter()
        return done - started, done - data_started

    async def reset(self) -> None:
        await self.command(b"RSET", "RSET", 250)

    async def close(self) -> None:
        """QUIT politely when the session still works; always close the socket."""
        try:
            self.writer.write(b"QUIT\r\n")
            async with asyncio.timeout(2):
                await self.reader.readline()
        except (OSError, TimeoutError, ConnectionError):
            pass
        self.writer.close()
        try:
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        except (OSError, TimeoutError, ConnectionError, ssl.SSLError):
            pass


class _Tickets:
    """Hands out message numbers so C workers share N messages without double-sending."""

    def __init__(self, count: int) -> None:
        self.next = 0
        self.count = count

    def take(self) -> int | None:
        if self.next >= self.count:
            return None
        self.next += 1
        return self.next - 1


async def _worker(
    load: SmtpLoad, tickets: _Tickets, result: SmtpResult, start: asyncio.Barrier | None
) -> None:
    """One concurrent sender: open a session, send up to K messages, QUIT, repeat.

    With ``start``, the first session waits there for the other workers' first sessions.
    """
    while tickets.next < tickets.count:
        try:
            client = await SmtpClient.connect(load)
        except (OSError, TimeoutError, ConnectionError, SmtpReplyError, ssl.SSLError) as e:
            if tickets.take() is not None:  # each failed connect uses up a message: terminates
                result.error(f"connect: {e!r}")
            await asyncio.sleep(0.05)
            continue
        result.setup_latency.append(client.setup_seconds)
        if start is not None:
            await start.wait()
            start = None
            result.sending_from = result.sending_from or time.perf_counter()
        try:
            for _ in range(load.per_connection):
                index = tickets.take()
                if index is None:
                    break
                if load.bodies:
                    body = [load.bodies[index % len(load.bodies)]]
                else:
                    body = [messages.message(index, load.size, load.sender, load.recipient)]
                try:
                    txn, data = await client.send(
                        load.sender, load.recipient, body, load.pipelining
                    )
                except SmtpReplyError as e:
                    result.error(e)
                    result.refused += e.step == "end of DATA" and 500 <= e.code < 600
                    await client.reset()
                    continue
                result.accepted += 1
                result.transaction_latency.append(txn)
                result.data_latency.append(data)
                result.done_at.append(time.perf_counter())
        except (OSError, TimeoutError, ConnectionError, SmtpReplyError, ssl.SSLError) as e:
            result.error(f"session: {e!r}")
        finally:
            await client.close()
    if start is not None:  # never got a session: the others must not wait for it
        await start.wait()


async def run(load: SmtpLoad) -> SmtpResult:
    """Send the whole load and measure it."""
    result = SmtpResult()
    tickets = _Tickets(load.messages)
    started = time.perf_counter()
    workers = max(1, load.connections)
    start = asyncio.Barrier(workers) if load.start_together else None
    await asyncio.gather(*(_worker(load, tickets, result, start) for _ in range(workers)))
    result.elapsed = (max(result.done_at) if result.done_at else time.perf_counter()) - started
    return result


async def setups(load: SmtpLoad, count: int) -> list[tuple[float, float]]:
    """Open ``count`` sessions one after another, each closed at once; (setup, AUTH) seconds.

    The cost of a connection with nothing else going on: what ``run`` pays per session before
    its first message, without the queueing of many sessions logging in together.
    """
    timings = []
    for _ in range(count):
        client = await SmtpClient.connect(load)
        timings.append((client.setup_seconds, client.auth_seconds))
        await client.close()
    return timings


async def send_large(load: SmtpLoad, connected: Callable[[], None] = lambda: None) -> float:
    """Send one message of ``load.size`` octets in chunks; returns the seconds it took.

    Used for the memory figure: the server must stream it to disk, not hold it. ``connected``
    is called once the session is open (after STARTTLS and AUTH, whose costs are not the
    message's).
    """
    client = await SmtpClient.connect(load)
    connected()
    try:
        body = messages.chunks(load.size, load.sender, load.recipient)
        txn, _ = await client.send(load.sender, load.recipient, body, load.pipelining)
    finally:
        await client.close()
    return txn


def main(argv: list[str] | None = None) -> int:
    """Command line for running one SMTP load by hand against any server."""
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--messages", "-n", type=int, default=2000)
    parser.add_argument("--size", "-s", type=int, default=4096)
    parser.add_argument("--connections", "-c", type=int, default=1)
    parser.add_argument("--per-connection", "-k", type=int, default=100)
    parser.add_argument("--to", default="u1@bench.test")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args(argv)
    load = SmtpLoad(
        host=args.host,
        port=args.port,
        messages=args.messages,
        size=args.size,
        connections=args.connections,
        per_connection=args.per_connection,
        recipient=args.to,
        starttls=args.starttls,
        auth=tuple(args.auth.split(":", 1)) if args.auth else None,
        # Submission lets users send only as themselves (553 5.7.1 otherwise).
        sender=args.auth.split(":", 1)[0] if args.auth else SmtpLoad.sender,
        pipelining=args.pipelining,
    )
    result = asyncio.run(run(load))
    print(result.summary())
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
