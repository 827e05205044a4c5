"""IMAP load generator: what a mail client does to a large mailbox, timed command by command.

Just enough IMAP4rev1 (RFC 3501) client for the benchmark: LOGIN, SELECT, FETCH, SEARCH,
CREATE, APPEND (synchronizing literals, as Thunderbird sends them), LOGOUT. Commands go one at
a time, each tagged reply awaited before the next. Replies are parsed from a buffer rather than
with ``readline()`` per line, literals included: a ``UID FETCH 1:*`` of 100,000 messages is
100,000 lines, and the client's own per-line cost must stay small next to the server's.

The messages it populates (``message()``) vary their From by index and carry a rare word in one
body out of a hundred, so ``SEARCH FROM`` and ``SEARCH TEXT`` select few messages while still
having to look at all of them, as a user's searches do.

Run alone: ``python -m bench.imap_load --port 2143 --user u1@bench.test --password PW``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.messages import filler

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
SEARCH_FROM = "sender7@"  # one From in FROM_VARIETY
SEARCH_WORD = "zebracorn"  # in one body out of RARE_EVERY
FROM_VARIETY = 50
RARE_EVERY = 100


class ImapError(Exception):
    """A ``NO``/``BAD``/``BYE`` (or a closed connection) where the session needed ``OK``."""


def message(index: int, size: int, line_end: bytes = b"\r\n") -> bytes:
    """Message ``index`` of about ``size`` octets, for the IMAP mailbox (see the module doc)."""
    rare = f"This one mentions the {SEARCH_WORD}.\r\n" if index % RARE_EVERY == 0 else ""
    head = (
        f"From: Sender {index % FROM_VARIETY} <sender{index % FROM_VARIETY}@client.test>\r\n"
        "To: <reader@bench.test>\r\n"
        f"Subject: imap bench message {index}\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <imap.{index}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"{rare}"
    ).encode("ascii")
    content = head + filler(size - len(head))
    return content if line_end == b"\r\n" else content.replace(b"\r\n", line_end)


@dataclass
class Reply:
    """A tagged completion and what came before it: how many untagged lines, how many octets."""

    status: str
    untagged: int
    octets: int
    text: bytes  # the untagged part, when the caller asked to keep it


class ImapClient:
    """One IMAP session over asyncio streams."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self._buffer = bytearray()
        self._tags = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 120.0) -> ImapClient:
        """Open a connection and read the ``* OK`` greeting."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        client = cls(reader, writer, timeout)
        try:
            greeting = await client._line()
        except BaseException:
            writer.close()
            raise
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise ImapError(greeting.decode("utf-8", "replace") or "connection closed")
        return client

    @classmethod
    async def login(
        cls, host: str, port: int, user: str, password: str, timeout: float = 120.0
    ) -> ImapClient:
        client = await cls.connect(host, port, timeout)
        try:
            await client.command(f"LOGIN {_quote(user)} {_quote(password)}")
        except BaseException:
            client.writer.close()
            raise
        return client

    async def _fill(self) -> None:
        async with asyncio.timeout(self.timeout):
            data = await self.reader.read(1 << 18)
        if not data:
            raise ImapError("connection closed")
        self._buffer += data

    async def _line(self) -> bytes:
        """One raw line (without CRLF), for the greeting and ``+`` continuations."""
        while (end := self._buffer.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def command(self, line: str | bytes, keep: bool = False) -> Reply:
        """Send one command and read up to its tagged reply; ``ImapError`` unless ``OK``."""
        self._tags += 1
        tag = f"b{self._tags}".encode()
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(tag + b" " + data + b"\r\n")
        return await self._reply(tag, keep)

    async def _reply(self, tag: bytes, keep: bool) -> Reply:
        """Scan the buffer line by line, skipping over literals, until ``TAG status``."""
        prefix = tag + b" "
        buffer = self._buffer
        start = scan = 0  # start of the logical line; where to look for its end
        untagged = octets = 0
        while True:
            end = buffer.find(b"\r\n", scan)
            if end < 0:
                await self._fill()
                buffer = self._buffer
                continue
            literal = _LITERAL.search(buffer, max(scan, end - 24), end)
            if literal:
                after = end + 2 + int(literal.group(1))
                while len(buffer) < after:
                    await self._fill()
                    buffer = self._buffer
                scan = after
                continue
            if buffer.startswith(prefix, start):
                status = bytes(buffer[start + len(prefix) : end])
                text = bytes(buffer[:start]) if keep else b""
                octets += start
                del buffer[: end + 2]
                if not status.startswith(b"OK"):
                    raise ImapError(status.decode("utf-8", "replace"))
                return Reply(status.decode("utf-8", "replace"), untagged, octets, text)
            if buffer.startswith(b"* BYE", start):
                raise ImapError(bytes(buffer[start:end]).decode("utf-8", "replace"))
            untagged += 1
            start = scan = end + 2

    async def append(self, mailbox: str, content: bytes) -> Reply:
        """APPEND with a synchronizing literal: wait for ``+`` before sending the message."""
        self._tags += 1
        tag = f"b{self._tags}".encode()
        self.writer.write(tag + f" APPEND {_quote(mailbox)} {{{len(content)}}}\r\n".encode())
        line = await self._line()
        if not line.startswith(b"+"):
            raise ImapError(line.decode("utf-8", "replace"))
        self.writer.write(content + b"\r\n")
        return await self._reply(tag, keep=False)

    async def logout(self) -> None:
        try:
            self._tags += 1
            self.writer.write(f"b{self._tags} LOGOUT\r\n".encode())
            await self.writer.drain()
        finally:
            self.writer.close()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def matches(reply: Reply) -> int:
    """The number of UIDs in a (UID) SEARCH reply kept with ``keep=True``."""
    found = 0
    for line in reply.text.split(b"\r\n"):
        if line.startswith(b"* SEARCH"):
            found += len(line.split()) - 2
    return found


async def timed(action: Awaitable[Reply]) -> tuple[float, Reply]:
    """Seconds one command took (send to tagged reply) and its reply."""
    started = time.perf_counter()
    reply = await action
    return time.perf_counter() - started, reply


@dataclass
class SessionTimes:
    """One measured session on the big mailbox, in seconds (``matches`` are sanity checks)."""

    login: float
    select: float
    fetch_flags: float
    fetch_headers: float
    search_from: float
    search_text: float
    exists: int
    from_matches: int
    text_matches: int


async def session(
    host: str, port: int, user: str, password: str, header_count: int = 1000
) -> SessionTimes:
    """LOGIN, SELECT INBOX, the two FETCHes and the two SEARCHes, each timed on its own."""
    started = time.perf_counter()
    client = await ImapClient.login(host, port, user, password)
    login = time.perf_counter() - started
    try:
        select, reply = await timed(client.command("SELECT INBOX", keep=True))
        exists = int(m.group(1)) if (m := re.search(rb"\* (\d+) EXISTS", reply.text)) else 0
        fetch_flags, reply = await timed(client.command("UID FETCH 1:* (UID FLAGS)"))
        if reply.untagged != exists:
            raise ImapError(f"UID FETCH 1:* answered {reply.untagged} of {exists} messages")
        last = min(header_count, exists)
        fetch_headers, _ = await timed(client.command(f"FETCH 1:{last} (BODY.PEEK[HEADER])"))
        search_from, found_from = await timed(
            client.command(f"UID SEARCH FROM {SEARCH_FROM}", keep=True)
        )
        search_text, found_text = await timed(
            client.command(f"UID SEARCH TEXT {SEARCH_WORD}", keep=True)
        )
    finally:
        await client.logout()
    return SessionTimes(
        login,
        select,
        fetch_flags,
        fetch_headers,
        search_from,
        search_text,
        exists,
        matches(found_from),
        matches(found_text),
    )


async def appends(
    host: str, port: int, user: str, password: str, mailbox: str, contents: list[bytes]
) -> float:
    """APPENDs per second into ``mailbox`` (created if missing), one after the other."""
    client = await ImapClient.login(host, port, user, password)
    try:
        with contextlib.suppress(ImapError):  # NO: it exists already, an earlier run made it
            await client.command(f"CREATE {_quote(mailbox)}")
        started = time.perf_counter()
        for content in contents:
            await client.append(mailbox, content)
        took = time.perf_counter() - started
    finally:
        await client.logout()
    return len(contents) / took


async def concurrent(host: str, port: int, user: str, password: str, sessions: int) -> float:
    """Seconds for ``sessions`` logged-in clients to each SELECT and UID FETCH 1:* (FLAGS).

    Logins happen first and are not timed: they cost a password hash, not serving mail.
    """
    clients = await logins(host, port, [(user, password)] * sessions, parallel=sessions)
    try:

        async def one(client: ImapClient) -> None:
            await client.command("SELECT INBOX")
            await client.command("UID FETCH 1:* (FLAGS)")

        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in clients))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.logout() for c in clients), return_exceptions=True)


async def logins(
    host: str,
    port: int,
    accounts: list[tuple[str, str]],
    parallel: int = 20,
    then: Callable[[ImapClient], Awaitable[object]] | None = None,
) -> list[ImapClient]:
    """Log every account in, at most ``parallel`` at a time, and run ``then`` on each session.

    Bounded so a thousand logins neither overflow the server's listen backlog (Twisted's is 50)
    nor queue a thousand password hashes at once; either would measure something else.
    """
    gate = asyncio.Semaphore(parallel)
    clients: list[ImapClient] = []

    async def one(user: str, password: str) -> None:
        async with gate:
            client = await ImapClient.login(host, port, user, password)
            clients.append(client)
            if then is not None:
                await then(client)

    try:
        await asyncio.gather(*(one(u, p) for u, p in accounts))
    except BaseException:
        for client in clients:
            client.writer.close()
        raise
    return clients


def main(argv: list[str] | None = None) -> int:
    """Command line for one measured session against any server's populated INBOX."""
    parser = argparse.ArgumentParser(prog="python -m bench.imap_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2143)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    times = asyncio.run(session(args.host, args.port, args.user, args.password))
    print(times)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
