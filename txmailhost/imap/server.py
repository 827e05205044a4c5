"""The IMAP4rev1 session (RFC 3501): reading commands and literals, state, login, TLS, IDLE and
the untagged updates that keep a client in step with its mailbox.

One ``IMAPServer`` per connection. A command is assembled from its line and the literals its
``{n}`` markers announce (§4.3; RFC 7888 ``{n+}``): the size is checked against the limit
*before* the ``+`` continuation, so an oversized literal costs nothing (``NO [TOOBIG]``, no ``+``),
and so is an APPEND literal that would take the mailbox owner past the quota (``NO
[OVERQUOTA]``; the usage is read with reading paused, ``_look_at_quota``).
The command is then checked once against ``COMMANDS`` (states allowed, UID form allowed) and run
by its handler (``commands.py``, ``messages.py``); reading pauses while it runs, so pipelined
commands execute in order. Handlers return a ``Done`` or raise an ``IMAPError``; ``_finish``
writes it, logs it and counts it.

Untagged updates (§7.4.1, RFC 7162 §3.2.10): another session's flag change or expunge, or an SMTP
delivery, wakes the session through the store's change bus; what changed is read from the index
(``changes_since(modseq)``) when a command ends, or at once while the client IDLEs (RFC 2177).
EXPUNGE is never sent while a FETCH, STORE or SEARCH runs, so sequence numbers stay consistent.

Why not Twisted's IMAP4Server: STARTTLS injection, unbounded file literals, no UIDNEXT/UNSEEN on
SELECT, no expunge notification and 3.5 s for ``UID FETCH 1:* (FLAGS)`` on 100k messages
(notes/twisted-mail-audit.md §4). Reused from Twisted: LineReceiver, TimeoutMixin, twisted.cred
and the ``imap4-utf-7`` codec.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from txmailhost._safeio import out_of_space
from txmailhost.imap import append, replies, urlauth
from txmailhost.imap.acl import AclCommands
from txmailhost.imap.commands import MailboxCommands
from txmailhost.imap.compress import CompressCommands, CompressionError, Deflate
from txmailhost.imap.keycache import SortKeyCache
from txmailhost.imap.login import LoginCommands
from txmailhost.imap.messages import MessageCommands
from txmailhost.imap.metadata import MetadataCommands
from txmailhost.imap.notify import NotifyCommands
from txmailhost.imap.parser import LITERAL_MARKER, LiteralFile, ParseError, Reader
from txmailhost.imap.quotaroom import QuotaRoom
from txmailhost.imap.rendered import RenderedBatches
from txmailhost.imap.replies import Done, IMAPError, printable
from txmailhost.imap.session import SelectedMailbox
from txmailhost.imap.sort import SortCommands
from txmailhost.imap.state import ANY, AUTH, SELECTED, UNAUTH, State
from txmailhost.imap.threadcache import KeptThreads
from txmailhost.imap.updates import UpdateMixin
from txmailhost.ops import metrics
from txmailhost.outage import BurstLog
from txmailhost.peer import OutputPressure, PlaintextAuth, quick_ack
from txmailhost.sendnow import write_now
from txmailhost.session.auth import PasswordLogin
from txmailhost.session.tls import SessionTLS
from txmailhost.store import staging
from txmailhost.store.interfaces import (
    IFileDelivery,
    InvalidMailboxName,
    MailboxExists,
    NoSuchMailbox,
    NoSuchMessage,
    StoreError,
    TooManyMailboxes,
)

log = Logger(namespace="txmailhost.imap")

MAX_AUTH_FAILURES = 3
MAX_BAD_COMMANDS = 20
MAX_ECHOED_TAG = 256  # the tag of an over-long line is sent back only up to this length
INFLATE_CHUNKS_A_TURN = 16  # of compress.INFLATE_CHUNK: 256 KiB of commands, then the others
# Commands one session runs back to back from what it has read before the next waits for the
# reactor's next turn: a pipelined flood of quick commands (NOOP) answered each at once kept
# the reactor for every line in the buffer, 256 KiB (32,000 commands) of inflated COMPRESS
# input a turn, and every other session waited ~3 s a turn (~1 s for 64 KiB read plain).
COMMANDS_A_TURN = 64
MAX_LITERALS = 64  # literals in one command
MAX_SMALL_LITERAL = 64 * 1024  # any literal but APPEND's message, after login
# Before login a command has little to carry in literals (LOGIN's name and password, ID's
# fields): what an unauthenticated connection may make the server hold stays small (64
# literals of 64 KiB held 4 MiB a connection until the idle timeout)
MAX_PRELOGIN_LITERAL = 8 * 1024
MAX_PRELOGIN_LITERALS = 16
IN_MEMORY_LITERAL = 256 * 1024  # larger APPEND literals go to a file in the staging directory
DISCARD_LIMIT_FACTOR = 2  # an oversized {n+} up to this many times the limit is read and dropped
SKIPPED_TAIL = 32  # octets of a skipped line's end kept, to find a "{n+}" there


class Gone(Exception):
    """The client went while its command was writing replies (``drained``)."""


@dataclass(frozen=True)
class Command:
    """How a verb is run: its handler, the states allowing it, whether ``UID`` may prefix it and
    whether EXPUNGE responses may follow it (§7.4.1: not after FETCH, STORE, SEARCH)."""

    handler: Callable[..., Awaitable[Done]]
    states: frozenset[State]
    uid: bool = False
    expunges: bool = True


class _LiteralSink:
    """Receives one literal: in memory when small, else into a file in the staging directory
    (written as it arrives; fsync'd later in the store's pool, by ``append_staged``). A store
    that keeps no files (no staging directory) gets it from memory: ``max_literal_size``
    bounds it."""

    def __init__(self, size: int, directory: str | None) -> None:
        self.remaining = size
        self.size = size
        self._chunks: list[bytes] = []
        self._file: Any = None
        self.path: str | None = None
        if directory is not None and size > IN_MEMORY_LITERAL:
            fd, self.path = tempfile.mkstemp(prefix=staging.prefix("imap-append"), dir=directory)
            self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.remaining -= len(data)
        if self._file is not None:
            self._file.write(data)
        else:
            self._chunks.append(data)

    def close(self) -> None:
        """Write out what is buffered: a full disk shows here, not later."""
        if self._file is not None:
            self._file.close()

    def value(self) -> bytes | LiteralFile:
        if self._file is not None:
            self._file.close()
            assert self.path is not None
            return LiteralFile(self.path, self.size)
        return b"".join(self._chunks)

    def discard(self) -> None:
        if self._file is not None:
            with suppress(OSError):  # what is buffered can't be written: dropped anyway
                self._file.close()
            with suppress(OSError):
                os.unlink(self.path)  # type: ignore[arg-type]


class IMAPServer(
    LoginCommands,
    CompressCommands,
    MetadataCommands,
    NotifyCommands,
    AclCommands,
    UpdateMixin,
    MailboxCommands,
    SortCommands,
    MessageCommands,
    LineReceiver,
    TimeoutMixin,
):
    """One IMAP session; see the module docstring for its shape."""

    factory: IMAPFactory
    # A line ends at LF; a CR before it is dropped (``lineReceived``). RFC 9051 asks for CRLF,
    # but an administrator typing into ``nc`` sends bare LF, and Dovecot accepts it too.
    delimiter = b"\n"

    def __init__(self) -> None:
        self.state = State.NOT_AUTHENTICATED
        self.peer_text = "-"
        self._peer: Any = None
        self._tls = SessionTLS(None, implicit=False)  # set up when the connection is made
        self._logins: PasswordLogin | None = None
        self.account: Any = None
        self.user: str | None = None
        self._logout: Callable[[], None] | None = None
        self.view: SelectedMailbox | None = None
        self.condstore = False
        self.qresync = False
        self.rev2 = False  # ENABLE IMAP4rev2: RFC 9051's behaviour (revisions.py)
        self.utf8 = False  # ENABLE UTF8=ACCEPT or IMAP4rev2: mailbox names in UTF-8
        self.deflate: Deflate | None = None  # COMPRESS=DEFLATE (compress.py) once it is on
        self._inflating = False
        self._bad_commands = 0
        self.quota_room: QuotaRoom  # set up when the connection is made (the factory's clock)
        # command assembly
        self._segments: list[bytes] = []
        self._literals: dict[int, bytes | LiteralFile] = {}
        self._assembled = 0
        self._looked = 0  # octets of the command parsed for looks at the quota (_announced)
        self._sink: _LiteralSink | None = None
        self._discard_literal = 0
        self._discard_reply: tuple[bytes, IMAPError, bool] | None = None  # (tag, error, bad)
        self._discarding_line = False  # skipping the rest of a refused command (_skip_line)
        self._skipped_tail = b""  # the end of the line being skipped so far
        self._skip_octets = 0  # octets of a {n+} literal of the refused command still to drop
        self._reparse = False
        self._line_waiter: Deferred[bytes] | None = None
        self._running = False
        self._commands_in_turn = 0  # commands answered since the last read or the last wait
        self._after_reply: Callable[[], None] | None = None
        self._out: list[bytes] = []
        self._pressure = OutputPressure(self._output_drained)  # the client reads our replies
        self._closing = False
        self.lost = False
        UpdateMixin.__init__(self)

    # -- connection ------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.callLater = factory.reactor.callLater  # TimeoutMixin: the injected clock
        self.quota_room = QuotaRoom(factory.reactor)
        self.MAX_LENGTH = factory.max_line_length
        self._peer = self.transport.getPeer()
        host = self._peer.host if isinstance(self._peer, (IPv4Address, IPv6Address)) else None
        self.peer_text = printable(host or str(self._peer))
        self._tls = SessionTLS(factory.tls_creator, factory.implicit_tls)
        self._logins = PasswordLogin(
            factory.portal, factory.reactor, "imap", failure_delay=factory.auth_failure_delay
        )
        if ITCPTransport.providedBy(self.transport):
            with suppress(OSError, AttributeError):  # gone already; or a test transport
                self.transport.setTcpNoDelay(True)
        # Before login, Dovecot's 3 minutes: an idle unauthenticated session only holds a
        # connection (RFC 9051 5.4 asks 30 minutes of a logged-in one: ``idle_timeout``).
        self.setTimeout(min(factory.idle_timeout, factory.login_timeout))
        self._pressure.register(self.transport)
        caps = " ".join(self.capabilities())
        self.write(f"* OK [CAPABILITY {caps}] txmailhost IMAP4rev1 ready\r\n".encode())
        self.flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self._pressure.connection_lost()
        if self._line_waiter is not None:
            waiter, self._line_waiter = self._line_waiter, None
            waiter.errback(reason if isinstance(reason, Failure) else connectionDone)
        self.setTimeout(None)
        if self._logins is not None:
            self._logins.cancel()
        if self._sink is not None:
            self._sink.discard()
            self._sink = None
        self._drop_literals()
        self.notify_stop()
        self.unselect()
        if self.user is not None:
            log.info("imap session end {user} from {peer}", user=self.user, peer=self.peer_text)
        if self.deflate is not None:
            log.info(
                "imap deflate for {peer}: {plain_in}/{wire_in} octets in,"
                " {plain_out}/{wire_out} out (plain/compressed)",
                peer=self.peer_text,
                plain_in=self.deflate.octets_in,
                wire_in=self.deflate.wire_in,
                plain_out=self.deflate.octets_out,
                wire_out=self.deflate.wire_out,
            )
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    def timeoutConnection(self) -> None:
        """RFC 3501 §5.4 autologout. In the middle of a response (a client that stopped
        reading a large FETCH) a BYE would land inside a literal: abort instead."""
        log.info("imap idle timeout for {peer}", peer=self.peer_text)
        if self._running and not self._idling:
            self._closing = True
            self.transport.abortConnection()
            return
        self.write(b"* BYE autologout; idle for too long\r\n")
        self.close()

    # -- output ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._out.append(data)
        if len(self._out) > 256:
            self.flush()

    def flush(self) -> None:
        if self._out and not self.lost:
            data = b"".join(self._out)
            self._out.clear()
            if self.deflate is not None:
                data = self.deflate.compress(data)
            # At once, not on the reactor's next turn (sendnow.py): a client in lock-step
            # (APPEND: "+", the literal, the tagged OK) waits for each of these.
            write_now(self.transport, data)

    async def drained(self) -> None:
        """Wait until the client has read what the transport holds (a slow reader can't make
        the server buffer a whole FETCH 1:* of bodies; see ``OutputPressure``). ``Gone`` when
        the client has gone: a long FETCH stops there rather than reading and rendering the
        rest of the mailbox for nobody (``_run`` ends a command of a lost session quietly)."""
        while self._pressure.blocked and not self.lost:
            await self._pressure.wait()
        if self.lost:
            raise Gone()

    def _output_drained(self) -> None:
        """The client has read the replies that piled up: take its next command (or the line
        a running IDLE or AUTHENTICATE waits for)."""
        if not self._running or self._line_waiter is not None:
            self._resume()

    def close(self) -> None:
        self.flush()
        self._closing = True
        self.state = State.LOGOUT
        # Reading is paused while a command runs (LOGOUT too) and resumes here: a TLS close
        # waits for the client's close_notify (one descriptor and one connection-limit slot
        # lost per IMAPS LOGOUT otherwise). What arrives now is dropped (``dataReceived``).
        self._pressure.close(self.transport, self.factory.reactor)

    # -- input: lines, literals, over-long lines -------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if data:
            self._commands_in_turn = 0  # a read from the connection: a turn of the reactor
        if self.deflate is None:
            self._plain_received(data)
            return
        # COMPRESS: inflate a chunk at a time, and only while the session reads (a command
        # that runs pauses it; LineReceiver.resumeProducing calls back here with b"").
        self.deflate.feed(data)
        if self._inflating:
            return  # re-entered from a line handler: the loop below goes on
        self._inflating = True
        try:
            self._plain_received(b"")
            chunks = 0
            while self.deflate.has_input() and not (self.paused or self._closing or self.lost):
                if chunks == INFLATE_CHUNKS_A_TURN:
                    # Other connections get their turn: a few KiB on the wire can inflate to
                    # megabytes of commands (each refused at once, none "running"); the rest
                    # is read on the reactor's next turn.
                    self._pause()
                    self.factory.reactor.callLater(0, self._read_next_turn)
                    break
                chunks += 1
                self._plain_received(self.deflate.inflate())
        except CompressionError as error:
            log.info("imap bad deflate data from {peer}: {error}", peer=self.peer_text, error=error)
            self.write(b"* BYE invalid compressed data\r\n")
            self.close()
        finally:
            self._inflating = False

    def _read_next_turn(self) -> None:
        """Go on with what the session has read, after other connections had their turn
        (``INFLATE_CHUNKS_A_TURN``, ``COMMANDS_A_TURN``)."""
        if not self._running and self._line_waiter is None:
            self._resume()  # LineReceiver.resumeProducing: buffered lines, dataReceived(b"")

    def setLineMode(self, extra: bytes = b"") -> None:
        """As LineReceiver's, but what follows a literal is already inflated: it must not go
        back through ``dataReceived``."""
        self.line_mode = 1
        if extra:
            self._plain_received(extra)

    def _plain_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._discarding_line:
            data = self._skip_line(data)
            if not data:
                return
        super().dataReceived(data)
        # After an over-long line LineReceiver stops; what followed it is still to be read.
        while self._reparse and not self._busyReceiving:
            self._reparse = False
            if self._discarding_line:
                rest = self._skip_line(self.clearLineBuffer())
                if not rest:
                    return
                self._buffer = rest
            super().dataReceived(b"")

    def _skip_line(self, data: bytes) -> bytes:
        """Drop the rest of a refused command from ``data``; return what follows it.

        The command goes on to its line's end, and past it when that line ends with a
        non-synchronizing literal (``{n+}``, RFC 7888): its n octets and the line after
        them are the same command's, however many there are. They are never commands: a
        refused APPEND's second message, or the literal of a refused SEARCH, would
        otherwise be read as commands, each of its lines (a mail's body) run as one. A
        synchronizing ``{n}`` ends it: the client waits for a "+" that never comes."""
        while True:
            if self._skip_octets:
                taken = min(len(data), self._skip_octets)
                self._skip_octets -= taken
                data = data[taken:]
                if self._skip_octets:
                    return b""
            end = data.find(b"\n")
            if end < 0:
                self._skipped_tail = (self._skipped_tail + data)[-SKIPPED_TAIL:]
                return b""
            tail = (self._skipped_tail + data[:end])[-SKIPPED_TAIL:].rstrip(b"\r")
            self._skipped_tail = b""
            data = data[end + 1 :]
            if not self._skip_literal_of(tail):
                self._discarding_line = False
                return b"" if self._closing else data

    def _skip_literal_of(self, line_end: bytes) -> bool:
        """Whether the refused command's line ending ``line_end`` goes on past a literal of
        its own (then dropped as it comes). One too large to read through ends the session:
        the stream can't be followed (RFC 7888 §4)."""
        marker = LITERAL_MARKER.search(line_end)
        if marker is None or not marker[2]:
            return False
        size = int(marker[1])
        if size > self.factory.max_literal_size * DISCARD_LIMIT_FACTOR or size > 2**31:
            self.write(b"* BYE literal too large\r\n")
            self.close()
            self._skip_octets = 0
            return False
        self._skip_octets = size
        return True

    def lineLengthExceeded(self, line: bytes) -> None:
        """``BAD`` with the tag (if one can be read), skip to the next line end, keep the
        session. A line a running command waits for (IDLE's DONE, a SASL response) ends that
        command with the ``BAD`` instead: it is no command, and its start no tag."""
        first, sep, rest = line.partition(b"\n")
        if not sep:
            self._discarding_line = True
            self._skipped_tail = line[-SKIPPED_TAIL:]
        elif self._skip_literal_of(first[-SKIPPED_TAIL:].rstrip(b"\r")):
            self._discarding_line = True  # the too-long line's own literal is dropped too
        waiter, self._line_waiter = self._line_waiter, None
        if waiter is not None:
            self._pause()  # as after any line the command waited for (``lineReceived``)
            waiter.errback(replies.LineTooLong())
        else:
            tag = self._tag_of(self._segments[0] if self._segments else line)
            self._reset_command()
            self._refused(tag if len(tag) <= MAX_ECHOED_TAG else b"*", replies.LineTooLong())
        if sep and rest and not self._closing:
            self._buffer = rest
            self._reparse = True

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self.resetTimeout()
        if self._line_waiter is not None:
            waiter, self._line_waiter = self._line_waiter, None
            self._pause()  # lines after DONE wait until IDLE (or AUTHENTICATE) has answered
            waiter.callback(line)
            return
        if self.state is State.LOGOUT:
            return
        marker = LITERAL_MARKER.search(line)
        if marker is None:
            self._segments.append(line)
            text = b"".join(self._segments)
            literals = self._literals
            self._segments, self._literals, self._assembled, self._looked = [], {}, 0, 0
            self._execute(text, literals)
            return
        self._start_literal(line, int(marker[1]), bool(marker[2]))

    def _start_literal(self, line: bytes, size: int, non_sync: bool) -> None:
        self._segments.append(line)
        self._assembled += len(line)
        first = self._segments[0]
        before_login = self.state is State.NOT_AUTHENTICATED
        is_append = not before_login and _verb_of(first) == b"APPEND"
        if is_append:
            limit = self.factory.max_literal_size
        else:
            limit = MAX_PRELOGIN_LITERAL if before_login else MAX_SMALL_LITERAL
        error: IMAPError | None = None
        if len(self._literals) >= (MAX_PRELOGIN_LITERALS if before_login else MAX_LITERALS):
            error = replies.Limit("too many literals in one command")
        elif size > limit:
            error = replies.TooBig(f"literal too large (limit {limit} octets)")
        elif self._assembled > self.factory.max_line_length * 4:
            error = replies.LineTooLong()
        if error is not None:
            self._refuse_literal(error, size, non_sync, limit)
            return
        if is_append and size and self.factory.quota_of is not None:
            announced = self._announced(size)
            if announced is not None and not self._append_fits(announced):
                self._look_at_quota(announced, size, non_sync, limit)
                return
        self._accept_literal(size, non_sync, is_append)

    def _refuse_literal(
        self, error: IMAPError, size: int, non_sync: bool, limit: int, bad: bool = True
    ) -> None:
        """Answer the command ``error`` instead of reading the literal it announced: in place
        of the ``+`` for a ``{n}``, after its octets (read and dropped) for a ``{n+}``.
        ``bad``: it counts toward ``MAX_BAD_COMMANDS`` (``_refused``)."""
        tag = self._tag_of(self._segments[0])
        self._reset_command()
        log.info("imap refused a {size}-octet literal from {peer}", size=size, peer=self.peer_text)
        if not non_sync:
            self._refused(tag, error, bad)  # and no "+": the client never sends the octets
        elif size <= limit * DISCARD_LIMIT_FACTOR and size <= 2**31:
            self._discard_literal = size
            self._discard_reply = (tag, error, bad)
            self.setRawMode()
        else:
            # RFC 7888 §4: a non-synchronizing literal we won't read; the stream is lost.
            self._reply(tag, replies.BadCommand("literal too large", closes=True))
            self.write(b"* BYE literal too large\r\n")
            self.close()

    def _announced(self, size: int) -> append.Announced | None:
        """What the APPEND being assembled says before this ``size``-octet literal
        (``append.announced``): the command so far is parsed again at each literal of it,
        so a command of many literals after long lines could cost that many times its
        length; once those parses add up to the longest command (``max_line_length`` × 4)
        the rest of its literals are read without a look."""
        text = b"".join(self._segments)
        self._looked += len(text)
        if self._looked > self.factory.max_line_length * 4:
            return None
        return append.announced(text, self._literals, size, self.utf8)

    def _look_at_quota(
        self, announced: append.Announced, size: int, non_sync: bool, limit: int
    ) -> None:
        """Before an APPEND literal's octets come, whether they would take the mailbox owner
        past the quota (``_append_refused_early``): then ``NO [OVERQUOTA]`` instead of the
        ``+`` (a 40 MiB draft saved into a full mailbox is not sent for nothing), or after the
        octets of a ``{n+}``, dropped as they come. The usage is read in the store's threads
        (DESIGN invariant 3), so the session stops reading meanwhile, as while a command
        runs: what the client sent after the marker line waits in the buffer, and is read
        as the literal (or dropped) once the answer is known. Nothing was sent to the
        client: the refusal does not count as a bad command."""
        self._running = True  # no other command starts, and untagged lines wait
        self._pause()

        def looked(refusal: IMAPError | None) -> None:
            self._running = False
            if self.lost or self._closing:
                return
            self.notify_flush()
            if refusal is not None:
                self._refuse_literal(refusal, size, non_sync, limit, bad=False)
            else:
                self._accept_literal(size, non_sync, True)
            self._resume()

        def failed(failure: Failure) -> None:
            log.failure("imap could not look at the quota before a literal", failure)
            return None  # the literal is read; the command answers

        d = Deferred.fromCoroutine(self._append_refused_early(announced))
        d.addErrback(failed)
        d.addCallback(looked)
        d.addErrback(lambda f: log.failure("imap session failed", f))

    def _accept_literal(self, size: int, non_sync: bool, is_append: bool) -> None:
        """Read the literal: into memory, or for an APPEND over a store of files into its
        staging directory; ``+`` first for a synchronizing one."""
        staging = None
        store = self.account.store if self.account is not None else None
        if is_append and IFileDelivery.providedBy(store):
            # A store of files adds a large literal by linking the file it was written to.
            staging = store.staging_directory(self.account.address)
        try:
            self._sink = _LiteralSink(size, staging)
        except OSError as error:
            if out_of_space(error):  # in memory, and the store will say OVERQUOTA
                log.warn("imap could not stage an APPEND literal: {error}", error=str(error))
            else:
                log.failure("imap could not stage an APPEND literal")
            self._sink = _LiteralSink(size, None)
        if not non_sync:
            self.write(b"+ Ready for literal data\r\n")
            self.flush()
        else:
            quick_ack(self.transport)  # no reply to carry the ACK: the literal may be waiting
        if size == 0:
            self._literal_done(b"")
        else:
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        if self._discard_reply is not None:
            taken = data[: self._discard_literal]
            self._discard_literal -= len(taken)
            if not self._discard_literal:
                assert self._discard_reply is not None
                tag, error, bad = self._discard_reply
                self._discard_reply = None
                self._refused(tag, error, bad)
                if self._closing:
                    return
                # The rest of the refused command's line follows the literal: skip it.
                self.line_mode = 1
                self._discarding_line = True
                rest = self._skip_line(data[len(taken) :])
                if rest:
                    self._plain_received(rest)
            return
        sink = self._sink
        assert sink is not None
        taken = data[: sink.remaining]
        try:
            sink.write(taken)
            if not sink.remaining:
                sink.close()
        except OSError as error:
            if out_of_space(error):
                self._literal_failed(sink, error, data[len(taken) :])
                return
            log.failure("imap could not write an APPEND literal")
            self.write(b"* BYE server storage error\r\n")
            self.close()
            return
        rest = data[len(taken) :]
        if sink.remaining or not rest:
            # More of the literal, or the rest of its line, is to come, often as a small write
            # of its own that the client's Nagle holds until this data is acknowledged.
            quick_ack(self.transport)
        if not sink.remaining:
            self._literal_done(rest)

    def _literal_failed(self, sink: _LiteralSink, error: OSError, rest: bytes) -> None:
        """No room for the rest of an APPEND literal: the command is answered ``NO
        [OVERQUOTA]`` once its octets have been read (and dropped), as a literal refused
        up front is, and the session goes on. Not a bad command: a client saving a draft
        while the disk is full is not misbehaving, and twenty of them must not end it."""
        log.warn("imap APPEND literal for {user} not stored: {error}",
                 user=self.user or self.peer_text, error=str(error))  # fmt: skip
        tag = self._tag_of(self._segments[0])
        sink.discard()
        self._sink = None
        self._reset_command()
        self._discard_literal = sink.remaining
        self._discard_reply = (tag, replies.StorageFull(), False)
        self.rawDataReceived(rest)

    def _literal_done(self, rest: bytes) -> None:
        sink, self._sink = self._sink, None
        assert sink is not None
        self._literals[self._assembled] = sink.value()
        self.setLineMode(rest)

    def _reset_command(self) -> None:
        self._drop_literals()
        self._segments, self._assembled, self._looked = [], 0, 0

    def _drop_literals(self, literals: dict[int, Any] | None = None) -> None:
        for value in (literals if literals is not None else self._literals).values():
            if isinstance(value, LiteralFile):
                with suppress(OSError):
                    os.unlink(value.path)
        if literals is None:
            self._literals = {}

    @staticmethod
    def _tag_of(line: bytes) -> bytes:
        try:
            return Reader(line).tag()
        except ParseError:
            return b"*"

    async def read_line(self) -> bytes:
        """The next line from the client, for SASL responses and IDLE's DONE."""
        waiter = self._line_waiter = Deferred()
        self._resume()  # may hand over a line already buffered at once (a pipelined DONE)
        try:
            return await waiter
        finally:
            self._pause()

    # -- dispatch --------------------------------------------------------------------------------

    def _execute(self, text: bytes, literals: dict[int, bytes | LiteralFile]) -> None:
        reader = Reader(text, literals)
        tag = b"*"
        try:
            tag = reader.tag()
            reader.sp()
            verb = reader.atom().upper()
            by_uid = False
            if verb == b"UID":
                reader.sp()
                verb = reader.atom().upper()
                by_uid = True
        except ParseError as error:
            self._drop_literals(literals)
            self._refused(tag, replies.BadCommand(str(error)))
            return
        command = COMMANDS.get(verb.decode("ascii", "replace"))
        if command is None or (by_uid and not command.uid):
            self._drop_literals(literals)
            self._refused(tag, replies.BadCommand("unknown command"))
            return
        if self.state not in command.states:
            self._drop_literals(literals)
            error = (
                replies.WrongState("log in first")
                if self.state is State.NOT_AUTHENTICATED
                else replies.WrongState(f"command not valid in {self.state.value} state")
            )
            self._refused(tag, error)
            return
        self._running = True
        self._pause()
        name = ("UID " if by_uid else "") + verb.decode("ascii", "replace")
        d = Deferred.fromCoroutine(
            metrics.imap_command(name, self._run(tag, command, reader, by_uid))
        )
        d.addErrback(lambda f: log.failure("imap session failed", f))
        d.addBoth(lambda _: self._drop_literals(literals))

    async def _run(self, tag: bytes, command: Command, reader: Reader, by_uid: bool) -> None:
        try:
            result: Done | IMAPError = await command.handler(self, reader, by_uid)
        except IMAPError as error:
            result = error
        except ParseError as error:
            result = replies.BadCommand(str(error))
        except StoreError as error:
            result = store_error(error)
        except Exception as error:
            if self.lost:
                return
            if out_of_space(error):
                log.warn("imap command for {user} failed, storage full: {error}",
                         user=self.user or self.peer_text, error=str(error))  # fmt: skip
                result = replies.StorageFull()
            else:
                log.failure("imap command failed for {user}", user=self.user or self.peer_text)
                result = replies.ServerBug()
        if self.lost:
            return
        if self.view is not None and self.state is State.SELECTED:
            try:
                await self.sync(expunges=command.expunges or by_uid)
            except Exception:
                log.failure("imap could not update {user}", user=self.user)
        if self.lost:
            return
        self.notify_flush()
        self._reply(tag, result)
        self.flush()
        after, self._after_reply = self._after_reply, None
        if after is not None:
            after()
        self._running = False
        if isinstance(result, IMAPError) and result.closes:
            self.close()
        elif not self._closing:
            self._commands_in_turn += 1
            if self._commands_in_turn < COMMANDS_A_TURN:
                self._resume()
            else:
                self._commands_in_turn = 0
                self.factory.reactor.callLater(0, self._read_next_turn)

    def _refused(self, tag: bytes, error: IMAPError, bad: bool = True) -> None:
        """Answer a command refused before it runs (malformed, wrong state, a literal too
        large or too many). Each counts as a bad command, TOOBIG and LIMIT as well as ``BAD``
        (not an APPEND refused for the quota before its literal: ``bad`` False),
        and, as after a command that ran, reading stops while
        the client doesn't read its replies: a client announcing oversized literals without
        reading the refusals grew the server by 635 MiB for 112 MiB sent."""
        self._reply(tag, error, bad=bad)
        if self._closing:
            return
        self.flush()
        if self._pressure.blocked:
            self._pause()  # _output_drained resumes

    def _reply(self, tag: bytes, result: Done | IMAPError, bad: bool = False) -> None:
        """The one place a tagged reply is written, logged and counted. A ``BAD``, or a reply
        ``bad`` says counts as one (``_refused``), counts toward ``MAX_BAD_COMMANDS``."""
        metrics.imap_reply(getattr(result, "status", "OK"))
        if bad or isinstance(result, replies.BadCommand):
            self._bad_commands += 1
            status, text = getattr(result, "status", ""), getattr(result, "reply_text", "")
            log.debug("imap {peer} {status} {text}", peer=self.peer_text, status=status, text=text)
            if self._bad_commands >= MAX_BAD_COMMANDS:
                self.write(result.render(tag))
                self.write(b"* BYE too many invalid commands\r\n")
                self.close()
                return
        self.write(result.render(tag))

    def _pause(self) -> None:
        if not self.paused and not self._closing and not self.lost:
            self.pauseProducing()

    def _resume(self) -> None:
        """Read again, unless the client isn't reading our replies (``_output_drained``)."""
        if self.paused and not self._closing and not self.lost and not self._pressure.blocked:
            self.resumeProducing()


def _verb_of(line: bytes) -> bytes:
    reader = Reader(line)
    try:
        reader.tag()
        reader.sp()
        verb = reader.atom().upper()
        if verb == b"UID":
            reader.sp()
            verb = reader.atom().upper()
        return verb
    except ParseError:
        return b""


# A store that fails (its database down) fails every session's every command alike: one
# traceback a kind of failure, then a count a minute (``outage.BurstLog``).
_STORE_ERRORS = BurstLog(log, time.monotonic, "imap store error")


def store_error(error: StoreError) -> IMAPError:
    """Store failures as IMAP replies (RFC 5530 codes)."""
    if isinstance(error, NoSuchMailbox):
        return replies.Nonexistent()
    if isinstance(error, InvalidMailboxName):
        return replies.InvalidName(str(error) if "INBOX" in str(error) else None)
    if isinstance(error, MailboxExists):
        return replies.AlreadyExists()
    if isinstance(error, NoSuchMessage):
        return replies.ExpungeIssued()
    if isinstance(error, TooManyMailboxes):
        return replies.Limit(str(error))
    _STORE_ERRORS.failed(Failure(error))
    return replies.Unavailable()


COMMANDS: dict[str, Command] = {
    "CAPABILITY": Command(LoginCommands._capability, ANY),
    "NOOP": Command(LoginCommands._noop, ANY),
    "LOGOUT": Command(LoginCommands._logout_cmd, ANY),
    "ID": Command(MailboxCommands._id, ANY),
    "STARTTLS": Command(LoginCommands._starttls, UNAUTH),
    "LOGIN": Command(LoginCommands._login_cmd, UNAUTH),
    "AUTHENTICATE": Command(LoginCommands._authenticate, UNAUTH),
    "ENABLE": Command(MailboxCommands._enable, AUTH),
    "SELECT": Command(MailboxCommands._select, AUTH),
    "EXAMINE": Command(MailboxCommands._examine, AUTH),
    "CREATE": Command(MailboxCommands._create, AUTH),
    "DELETE": Command(MailboxCommands._delete, AUTH),
    "RENAME": Command(MailboxCommands._rename, AUTH),
    "SUBSCRIBE": Command(MailboxCommands._subscribe, AUTH),
    "UNSUBSCRIBE": Command(MailboxCommands._unsubscribe, AUTH),
    "LIST": Command(MailboxCommands._list, AUTH),
    "LSUB": Command(MailboxCommands._lsub, AUTH),
    "STATUS": Command(MailboxCommands._status, AUTH),
    "APPEND": Command(MailboxCommands._append, AUTH),
    "NAMESPACE": Command(MailboxCommands._namespace, AUTH),
    "GETQUOTAROOT": Command(MailboxCommands._getquotaroot, AUTH),
    "GETQUOTA": Command(MailboxCommands._getquota, AUTH),
    "SETQUOTA": Command(MailboxCommands._setquota, AUTH),
    "IDLE": Command(UpdateMixin._idle, AUTH),
    "NOTIFY": Command(NotifyCommands._notify_cmd, AUTH),
    "COMPRESS": Command(CompressCommands._compress, AUTH),
    "GETMETADATA": Command(MetadataCommands._getmetadata, AUTH),
    "SETMETADATA": Command(MetadataCommands._setmetadata, AUTH),
    "SETACL": Command(AclCommands._setacl, AUTH),
    "DELETEACL": Command(AclCommands._deleteacl, AUTH),
    "GETACL": Command(AclCommands._getacl, AUTH),
    "MYRIGHTS": Command(AclCommands._myrights, AUTH),
    "LISTRIGHTS": Command(AclCommands._listrights, AUTH),
    "CHECK": Command(MessageCommands._check, SELECTED),
    "CLOSE": Command(MessageCommands._close, SELECTED),
    "UNSELECT": Command(MessageCommands._unselect, SELECTED),
    "EXPUNGE": Command(MessageCommands._expunge, SELECTED, uid=True),
    "SEARCH": Command(SortCommands._search_with_context, SELECTED, uid=True, expunges=False),
    "SORT": Command(SortCommands._sort, SELECTED, uid=True, expunges=False),
    "THREAD": Command(SortCommands._thread, SELECTED, uid=True, expunges=False),
    "CANCELUPDATE": Command(SortCommands._cancelupdate, SELECTED),
    "FETCH": Command(MessageCommands._fetch, SELECTED, uid=True, expunges=False),
    "STORE": Command(MessageCommands._store, SELECTED, uid=True, expunges=False),
    "COPY": Command(MessageCommands._copy, SELECTED, uid=True),
    "MOVE": Command(MessageCommands._move, SELECTED, uid=True),
    "GENURLAUTH": Command(urlauth.genurlauth, AUTH),
    "URLFETCH": Command(urlauth.urlfetch, AUTH),
    "RESETKEY": Command(urlauth.resetkey, AUTH),
}


class IMAPFactory(Factory):
    """Builds ``IMAPServer``s from explicit collaborators; knows nothing of the config file.

    ``portal`` must hand out ``IMailAccount`` avatars (their ``store`` is where mail lives).
    ``tls_creator`` enables STARTTLS; ``implicit_tls`` marks an IMAPS listener (port 993).
    ``reactor`` drives timeouts and the pause after a failed login, so tests can pass a Clock.
    ``quota_of(address)`` (a Deferred of bytes, or None for unlimited, e.g.
    ``Router.quota_of``) is the limit QUOTA reports; without it, or for an unlimited account,
    usage is reported against a limit of 1 PiB. Enforcement is the delivery path's job.
    ``observers`` (``IMailboxObserver``) hear of messages copied, moved or appended.
    """

    noisy = False
    protocol = IMAPServer
    auth_failure_delay = 1.0

    def __init__(
        self,
        portal: Portal,
        *,
        reactor: Any = None,
        hostname: str = "localhost",
        tls_creator: Any = None,
        implicit_tls: bool = False,
        plaintext_auth: PlaintextAuth | None = None,
        name: str = "imap",
        idle_timeout: float = 1800,
        login_timeout: float = 180,
        max_literal_size: int = 50 * 1024 * 1024,
        max_line_length: int = 64 * 1024,
        quota_of: Callable[[str], Deferred[int | None]] | None = None,
        observers: Sequence[Any] = (),
        urlauth: bool = False,
        sort_keys: SortKeyCache | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.portal = portal
        self.reactor = reactor
        self.hostname = printable(hostname)
        self.tls_creator = tls_creator
        self.implicit_tls = implicit_tls
        self.name = name  # the listener, for log lines ("imap", "imaps")
        # where passwords may be sent without TLS (peer.PlaintextAuth; default: same address)
        self.plaintext_auth = plaintext_auth or PlaintextAuth()
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout  # idle seconds allowed before a login
        self.max_literal_size = max_literal_size
        self.max_line_length = max_line_length
        self.quota_of = quota_of
        # IMailboxObservers told of COPY/MOVE/APPEND (imap/observers.py: spam training)
        self.observers = tuple(observers)
        # URLAUTH (RFC 4467, imap/urlauth.py) is offered only when asked for: its use is a
        # submission server fetching by URL (BURL, RFC 4468), which txmailhost's doesn't do yet.
        self.urlauth = urlauth
        # Large index-only FETCH batches, reused by the next session asking for the same lines
        self.rendered = RenderedBatches()
        # Sort keys loaded by one session, kept for the next of the same mailbox (keycache.py);
        # pass one to share it between listeners (143 and 993)
        self.sort_keys = sort_keys if sort_keys is not None else SortKeyCache()
        # The last THREAD answer of each mailbox, for the next session asking the same
        self.kept_threads = KeptThreads()
