"""Our ESMTP client: one connection, one mail transaction, per-recipient replies.

Written on ``LineReceiver`` rather than taken from ``twisted.mail.smtp`` (audit §2: its
per-chunk dot-stuffing lets message content end DATA early at 16 KiB boundaries). What it does:

- Replies (RFC 5321 4.2) are parsed strictly: ``NNN-text`` continuation lines then ``NNN text``;
  anything else (garbage, mixed codes, over-long lines) fails the session with the offending
  line recorded, never a guess.
- Every wait has its own timeout (RFC 5321 4.5.3.2): greeting 5 min, MAIL 5 min, RCPT 5 min,
  DATA initiation 2 min, each data block 3 min, end of data 10 min.
- EHLO with our host name, HELO if EHLO is refused; SIZE (RFC 1870) and BODY=8BITMIME
  (RFC 6152) on MAIL when offered; PIPELINING (RFC 2920): MAIL, every RCPT and DATA in one
  write, replies read in order.
- STARTTLS (RFC 3207) per the destination's policy. Replies buffered before the handshake are
  discarded and EHLO is sent again afterwards (4.2), so a server can't inject answers.
- The message is streamed from the spool file through :class:`DotStuffer`, whose state spans
  chunk boundaries: every line starting with "." gets another, and bare CR or LF become CRLF,
  so nothing in the content can end DATA early (SMTP smuggling). Our own ``Return-Path:`` is
  left out (RFC 5321 4.4). To a server offering CHUNKING (RFC 3030) it goes as BDAT chunks
  instead, exactly as spooled (``send_chunks``).

A failure that concerns the host (refused, closed, timed out, garbage, TLS trouble) raises
:class:`HostFailure`, so the courier can try the next MX; replies to MAIL/RCPT/DATA become
per-recipient :class:`~txmailhost.queue.interfaces.DeliveryResult`\\ s.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from txmailhost.asciinum import is_number
from txmailhost.queue.interfaces import DeliveryResult

CHUNK = 64 * 1024
_REPLY = re.compile(rb"^([2-5][0-9][0-9])(?:([ -])(.*))?$", re.DOTALL)
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")
_NEWLINES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for each reply (RFC 5321 4.5.3.2 minimums as defaults)."""

    connect: float = 30.0
    greeting: float = 300.0
    ehlo: float = 300.0
    starttls: float = 120.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_end: float = 600.0
    quit: float = 10.0


class HostFailure(Exception):
    """This host can't take the message now; ``tls`` marks a STARTTLS/handshake problem."""

    def __init__(self, reason: str, *, tls: bool = False, permanent: bool = False) -> None:
        super().__init__(reason)
        self.tls = tls
        self.permanent = permanent


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.code} " + " ".join(line for line in self.lines if line)

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463) if the reply has one, else one from its class."""
        first = self.lines[0] if self.lines else ""
        match = _ENHANCED.match(first)
        if match and match.group(1)[0] == str(self.code)[0]:
            return match.group(1)
        return f"{self.code // 100}.0.0"

    def result(self, remote_mta: str) -> DeliveryResult:
        if self.code < 400:
            return DeliveryResult.delivered(self.text, remote_mta)
        if self.code < 500:
            return DeliveryResult.temporary(self.status, self.text, remote_mta)
        return DeliveryResult.permanent(self.status, self.text, remote_mta)


class DotStuffer:
    """Turns message text into DATA content, whatever the chunk boundaries (RFC 5321 4.5.2)."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._pending_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._pending_cr:
            data, self._pending_cr = b"\r" + data, False
        if data.endswith(b"\r"):  # might be the first half of a CRLF split across chunks
            data, self._pending_cr = data[:-1], True
        if not data:
            return b""
        data = _NEWLINES.sub(b"\r\n", data)
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._at_line_start = data.endswith(b"\r\n")
        return data

    def end(self) -> bytes:
        """What terminates the content: a line end if the text lacked one, then ``.``."""
        tail = b""
        if self._pending_cr:
            tail, self._pending_cr, self._at_line_start = b"\r\n", False, True
        if not self._at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


def skip_return_path(first_chunk: bytes) -> bytes:
    """Leave out a leading ``Return-Path:`` line (ours, added on receipt)."""
    if first_chunk[:12].lower() == b"return-path:":
        end = first_chunk.find(b"\r\n")
        if end >= 0:
            return first_chunk[end + 2 :]
    return first_chunk


@implementer(IPushProducer)
class SMTPClientProtocol(LineReceiver):
    """The wire side: sends lines, hands out replies in order, enforces timeouts."""

    MAX_LENGTH = 4096  # RFC 5321 4.5.3.1.5 says 512 for replies; be lenient, not unbounded
    MAX_REPLY_LINES = 1000  # lines of one reply (an EHLO lists a few dozen extensions)
    MAX_UNCLAIMED_REPLIES = 1000  # replies read ahead of the commands waiting for them

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._lines: list[str] = []
        self._code: bytes | None = None
        self._replies: deque[Reply] = deque()
        self._waiters: deque[tuple[Deferred[Reply], Any]] = deque()
        self._error: HostFailure | None = None
        self._paused: Deferred[None] | None = None
        self.connected_deferred: Deferred[SMTPClientProtocol] = Deferred()
        self.messages_sent = 0

    # -- receiving ------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        # Commands and the final dot are small writes that wait on the previous reply or
        # segment; with Nagle's algorithm each would sit out a 40 ms delayed ACK.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self.connected_deferred.callback(self)

    def lineReceived(self, line: bytes) -> None:
        match = _REPLY.match(line)
        if not match or (self._code is not None and match.group(1) != self._code):
            self._fail(HostFailure(f"garbage reply from server: {line[:120]!r}"))
            return
        self._code = match.group(1)
        if len(self._lines) >= self.MAX_REPLY_LINES:
            # each line is bounded, a reply must be too: endless "250-" lines grew the
            # server by 1 GiB in 20 s
            self._fail(HostFailure(f"reply longer than {self.MAX_REPLY_LINES} lines"))
            return
        self._lines.append((match.group(3) or b"").decode("utf-8", "replace"))
        if match.group(2) != b"-":
            reply = Reply(int(self._code), tuple(self._lines))
            self._code, self._lines = None, []
            if self._waiters:
                d, timer = self._waiters.popleft()
                timer.cancel()
                d.callback(reply)
            elif len(self._replies) >= self.MAX_UNCLAIMED_REPLIES:
                self._fail(HostFailure("the server sends replies nothing asked for"))
            else:
                self._replies.append(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._fail(HostFailure(f"reply line longer than {self.MAX_LENGTH} octets"))

    def connectionLost(self, reason: Any = None) -> None:
        if self._error is None:
            self._error = HostFailure(f"connection closed by server: {reason.getErrorMessage()}")
            self._error.tls = "SSL" in reason.getErrorMessage() or "TLS" in str(reason.value)
        self._fail_waiters()
        if self._paused is not None:
            paused, self._paused = self._paused, None
            paused.callback(None)

    def _fail(self, error: HostFailure) -> None:
        if self._error is None:
            self._error = error
        self._fail_waiters()
        if self.transport is not None:
            self.transport.abortConnection()

    def _fail_waiters(self) -> None:
        while self._waiters:
            d, timer = self._waiters.popleft()
            if timer.active():
                timer.cancel()
            assert self._error is not None
            d.errback(self._error)

    def next_reply(self, timeout: float, phase: str) -> Deferred[Reply]:
        """The next reply, in order; fails with HostFailure on timeout or a lost connection."""
        if self._replies:
            return Deferred.fromCoroutine(_value(self._replies.popleft()))
        if self._error is not None:
            return Deferred.fromCoroutine(_raise(self._error))
        d: Deferred[Reply] = Deferred()
        timer = self._reactor.callLater(
            timeout,
            lambda: self._fail(HostFailure(f"timeout after {timeout:g}s waiting for {phase}")),
        )
        self._waiters.append((d, timer))
        return d

    def idle_ok(self) -> bool:
        """Still connected, and the server said nothing since its last expected reply."""
        return (
            self._error is None
            and not self._replies
            and not self._lines
            and self.transport is not None
            and getattr(self.transport, "connected", False)
            and not getattr(self.transport, "disconnecting", False)
        )

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def discard_buffered(self) -> None:
        """Forget replies and bytes received so far (before a TLS handshake, RFC 3207 4.2)."""
        self._replies.clear()
        self._lines, self._code = [], None
        self.clearLineBuffer()

    # -- sending --------------------------------------------------------------------------------

    def send_lines(self, *lines: str) -> None:
        if self._error is not None:
            raise self._error
        self.transport.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    async def send_message(
        self, read_chunk: Callable[[int], Deferred[bytes]], block_timeout: float
    ) -> None:
        """Stream the message (dot-stuffed) and the final dot, respecting flow control."""
        stuffer = DotStuffer()
        self.transport.registerProducer(self, True)
        try:
            first = True
            while True:
                chunk = await read_chunk(CHUNK)
                if not chunk:
                    break
                if first:
                    chunk, first = skip_return_path(chunk), False
                if self._error is not None:
                    raise self._error
                self.transport.write(stuffer.feed(chunk))
                if self._paused is not None:
                    await self._wait_for_drain(block_timeout)
            if self._error is not None:
                raise self._error
            self.transport.write(stuffer.end())
        finally:
            if self.transport is not None:
                self.transport.unregisterProducer()

    async def send_chunks(
        self, read_chunk: Callable[[int], Deferred[bytes]], timeouts: Any, pipelined: bool
    ) -> Reply:
        """Stream the message as BDAT chunks (RFC 3030): no dot-stuffing and no end marker,
        so the content is sent exactly as spooled and nothing in it can end it early. Returns
        the reply that decides the transaction: the first refusal of a chunk, else the reply
        to the LAST one. With PIPELINING the chunks don't wait for each other's replies (3030
        4.2); all replies are read, so the session stays in step."""
        self.transport.registerProducer(self, True)
        sent = 0
        try:
            chunk = skip_return_path(await read_chunk(CHUNK))
            while True:
                following = await read_chunk(CHUNK) if chunk else b""
                last = b" LAST" if not following else b""
                if self._error is not None:
                    raise self._error
                self.transport.write(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
                sent += 1
                if self._paused is not None:
                    await self._wait_for_drain(timeouts.data_block)
                if not pipelined:
                    reply = await self.next_reply(timeouts.data_block, "a BDAT reply")
                    sent -= 1
                    if reply.code >= 300 or last:
                        return reply
                if last:
                    break
                chunk = following
        finally:
            if self.transport is not None:
                self.transport.unregisterProducer()
        decisive: Reply | None = None
        for i in range(sent):
            timeout = timeouts.data_end if i == sent - 1 else timeouts.data_block
            reply = await self.next_reply(timeout, "a BDAT reply")
            if decisive is None and (reply.code >= 300 or i == sent - 1):
                decisive = reply
        assert decisive is not None
        return decisive

    async def _wait_for_drain(self, timeout: float) -> None:
        assert self._paused is not None
        paused = self._paused
        timer = self._reactor.callLater(
            timeout,
            lambda: self._fail(HostFailure(f"timeout after {timeout:g}s sending a data block")),
        )
        try:
            await paused
        finally:
            if timer.active():
                timer.cancel()
        if self._error is not None:
            raise self._error

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        if self._paused is not None:
            paused, self._paused = self._paused, None
            paused.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()


async def _value(reply: Reply) -> Reply:
    return reply


async def _raise(error: Exception) -> Reply:
    raise error


@dataclass
class Capabilities:
    """What the server's EHLO reply offers (RFC 5321 4.1.1.1)."""

    extensions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: Reply) -> Capabilities:
        found = {}
        for line in reply.lines[1:]:
            keyword, _, args = line.strip().partition(" ")
            if keyword:
                found[keyword.upper()] = args
        return cls(found)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.extensions

    def max_size(self) -> int | None:
        value = self.extensions.get("SIZE", "")
        return int(value) if is_number(value) and int(value) > 0 else None
