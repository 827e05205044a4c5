"""The POP3 session: RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595) and SASL PLAIN (RFC 5034).

One ``POP3Server`` per connection. Each command line is checked once against ``ALLOWED`` (what the
session state permits) and handed to one handler, which returns a reply, raises a ``POP3Error``,
or returns a Deferred (login, QUIT's commit, opening a message). RETR and TOP come back as a
``_Retrieval`` whose bytes a pull producer streams 64 KiB at a time through a ``DotStuffer``, so
a 50 MiB message never sits in memory. While a Deferred or a stream is pending, reading pauses:
lines the client pipelined wait in LineReceiver's buffer and run afterwards, in order.

The maildrop is the store snapshot taken at login: message numbers are fixed for the session
(RFC 1939 §5). DELE only marks; the marked messages are expunged when QUIT moves the session to
UPDATE (§6), and the +OK goes out only after the store says they are gone. A dropped connection
deletes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, ClassVar

from twisted.cred.error import LoginFailed
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPullProducer, ITCPTransport
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.peer import OutputPressure, PlaintextAuth, describe_tls
from txmailhost.pop3 import replies
from txmailhost.pop3.replies import (
    OK,
    Continuation,
    DotStuffer,
    POP3Error,
    printable,
    stuffed_message,
)
from txmailhost.sasl import SASLError
from txmailhost.sendnow import write_now
from txmailhost.session.auth import (
    Credentials,
    PasswordExchange,
    PasswordLogin,
    passwords_allowed,
)
from txmailhost.session.tls import SessionTLS
from txmailhost.store.interfaces import INBOX, MessageInfo, NoSuchMailbox, StoreError
from txmailhost.store.interfaces import NoSuchMessage as StoreNoSuchMessage

log = Logger(namespace="txmailhost.pop3")

_SASL_ERRORS = {
    "base64": replies.BadBase64,
    "malformed": replies.BadPlainResponse,
    "authzid": replies.AuthzidRefused,
    "cancelled": replies.AuthCancelled,
}
_MAX_BATCHED_REPLIES = 64  # replies to pipelined commands held for one write, at most
_MAX_BATCHED_BYTES = 64 * 1024  # ... and octets of them
READ_AHEAD = 16  # small messages fetched ahead of a RETR, in one trip to the store
READ_AHEAD_LOW = 4  # ... when fewer than this many are still ahead
READ_AHEAD_BYTES = 256 * 1024  # ... and at most this much per trip
MAX_AUTH_FAILURES = 3  # wrong passwords in one session before we hang up
MAX_BAD_COMMANDS = 10  # unknown verbs, wrong-state commands, bad arguments, over-long lines


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"  # RFC 1939 §4
    TRANSACTION = "TRANSACTION"  # RFC 1939 §5
    UPDATE = "UPDATE"  # RFC 1939 §6: after QUIT, while deletions are committed


ALLOWED: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset({"CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"CAPA", "STAT", "LIST", "UIDL", "TOP", "RETR", "DELE", "RSET", "NOOP", "QUIT"}
    ),
    State.UPDATE: frozenset(),
}
_WRONG_STATE_TEXT = {
    State.AUTHORIZATION: "command not valid before login",
    State.TRANSACTION: "command not valid after login",
    State.UPDATE: "session is ending",
}


def _file_chunks(file: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    return iter(partial(file.read, chunk_size), b"")


def _top_chunks(file: BinaryIO, chunk_size: int, body_lines: int) -> Iterator[bytes]:
    """The header, the blank line after it and the first ``body_lines`` body lines (RFC 1939
    §7 TOP), read with a bounded readline so one huge line costs no more than a chunk."""
    in_header, at_line_start = True, True
    while in_header or body_lines > 0 or not at_line_start:
        piece = file.readline(max(chunk_size, 2))
        if not piece:
            return
        if at_line_start:
            if in_header:
                in_header = piece not in (b"\r\n", b"\n")
            else:
                body_lines -= 1
        at_line_start = piece.endswith(b"\n")
        yield piece


@dataclass
class _Retrieval:
    """A RETR or TOP response: the +OK line, then the message file, dot-stuffed."""

    header: bytes
    file: BinaryIO
    chunks: Iterator[bytes]
    is_retr: bool
    size: int  # octets in the file; at most one chunk is answered without a producer


@dataclass(frozen=True)
class _Prepared:
    """A whole RETR response, +OK line to terminator, of a message that was read ahead."""

    response: bytes


def _retr_response(info: MessageInfo, content: bytes) -> _Prepared:
    header = OK(f"{info.size} octets").render()
    if len(content) == info.size:  # the CRLF form the store promises, of the listed size
        return _Prepared(header + stuffed_message(content))
    stuffer = DotStuffer()
    return _Prepared(header + stuffer.stuff(content) + stuffer.finish())


@implementer(IPullProducer)
class _MessageSender:
    """Writes one ``_Retrieval`` when the transport asks for more, one coalesced write per call.

    The first write carries any replies still buffered and the +OK line along with the first
    chunk, and the last one carries the terminator, so a small message leaves in one segment
    (no Nagle/delayed-ACK stall, see the audit's latency addendum).
    """

    def __init__(self, protocol: POP3Server, retrieval: _Retrieval, prefix: bytes) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._retrieval = retrieval
        self._prefix = prefix + retrieval.header
        self._stuffer = DotStuffer()
        self._finished = False

    def resumeProducing(self) -> None:
        if self._finished:
            return
        self._protocol.resetTimeout()
        pieces, size, done = [self._prefix], 0, False
        self._prefix = b""
        try:
            while size < self._protocol.chunk_size:
                chunk = next(self._retrieval.chunks, b"")
                if not chunk:
                    done = True
                    break
                stuffed = self._stuffer.stuff(chunk)
                pieces.append(stuffed)
                size += len(stuffed)
        except OSError:
            log.failure("pop3 could not read a message for {peer}", peer=self._protocol.peer_text)
            self._transport.write(b"".join(pieces))
            self._end(ok=False)
            return
        if done:
            pieces.append(self._stuffer.finish())
        self._transport.write(b"".join(pieces))
        if done:
            self._end(ok=True)

    @property
    def is_retr(self) -> bool:
        return self._retrieval.is_retr

    def stopProducing(self) -> None:
        self._finished = True
        self._retrieval.file.close()

    def _end(self, ok: bool) -> None:
        self.stopProducing()
        self._transport.unregisterProducer()
        self._protocol.retrieval_done(self, ok)


@dataclass(frozen=True)
class _Command:
    handler: Callable[[POP3Server, list[bytes]], Any]
    min_args: int
    max_args: int | None  # None: the rest of the line is one argument (PASS: spaces allowed)
    usage: str


class POP3Server(LineReceiver, TimeoutMixin):
    """One POP3 session; see the module docstring for its shape."""

    chunk_size = 64 * 1024
    factory: POP3Factory
    # A line ends at LF; a CR before it is dropped (``lineReceived``). RFC 1939 asks clients for
    # CRLF, but an administrator typing into ``nc`` sends bare LF, and Dovecot accepts it too.
    delimiter = b"\n"

    def __init__(self) -> None:
        self.state = State.AUTHORIZATION
        self.peer_text = "-"
        self._peer: Any = None
        self._tls = SessionTLS(None, implicit=False, command="STLS")  # set up on connection
        self._logins: PasswordLogin | None = None
        self._username: bytes | None = None  # from USER, waiting for PASS
        self._sasl: PasswordExchange | None = None  # AUTH sent "+ ": the next line answers it
        self._bad_commands = 0
        self._logout: Callable[[], None] | None = None
        self._user: str | None = None
        self._mailbox: Any = None
        self._uidvalidity = 0
        self._messages: tuple[MessageInfo, ...] = ()
        self._deleted: set[int] = set()  # message numbers marked by DELE
        self._retrieved = 0
        self._expunged = 0
        self._sender: _MessageSender | None = None
        self._waiting = False  # a command's Deferred is pending; reading is held for it
        self._pressure = OutputPressure(self._output_drained)  # the client reads our replies
        self._outbuf: list[bytes] = []
        self._outbuf_size = 0
        self._batch_depth = 0
        self._receiving = 0
        self._leftover: bytes | None = None  # input after an over-long line, to parse again
        self._discarding = False  # inside an over-long line: drop bytes up to the next LF
        self._closing = False
        self._lost = False
        self._session_timer: Any = None
        self._prefetched: dict[int, bytes] = {}  # uid -> content read ahead (small messages)
        self._upcoming: tuple[int, _Prepared] | None = None  # (uid, response) of the next one
        self._prefetching: set[int] = set()
        self._ahead_through = 0  # message number up to which reading ahead has been asked for
        self._retrieving = 0  # the message number of the last RETR
        self._awaiting: tuple[int, Deferred[None]] | None = None  # a RETR waiting for its batch

    # -- connection ------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.callLater = factory.reactor.callLater  # TimeoutMixin: the injected clock
        self.MAX_LENGTH = factory.max_line_length
        self._peer = self.transport.getPeer()
        host = self._peer.host if isinstance(self._peer, (IPv4Address, IPv6Address)) else None
        self.peer_text = printable(host or str(self._peer))
        self._tls = SessionTLS(factory.tls_creator, factory.implicit_tls, command="STLS")
        self._logins = PasswordLogin(
            factory.portal, factory.reactor, "pop3", failure_delay=factory.auth_failure_delay
        )
        if ITCPTransport.providedBy(self.transport):
            with suppress(OSError):  # e.g. the socket is already gone
                self.transport.setTcpNoDelay(True)
        self.setTimeout(factory.idle_timeout)
        self._session_timer = self.callLater(factory.session_timeout, self._session_expired)
        self._pressure.register(self.transport)
        self._write(OK(f"txmailhost POP3 ready {factory.hostname}").render())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._pressure.connection_lost()
        self.setTimeout(None)
        if self._session_timer is not None and self._session_timer.active():
            self._session_timer.cancel()
        if self._logins is not None:
            self._logins.cancel()
        if self._sender is not None:
            self._sender.stopProducing()
            self._sender = None
        log.info(
            "pop3 session end {user} from {peer}: {retrieved} retrieved, {deleted} deleted",
            user=self._user or "-",
            peer=self.peer_text,
            retrieved=self._retrieved,
            deleted=self._expunged,
        )
        self._end_avatar()

    def _session_expired(self) -> None:
        """A whole-session limit, however busy (a slow-drip client can't hold a slot forever);
        like the idle timeout it closes without UPDATE, so nothing is deleted."""
        log.info("pop3 session timeout for {peer}", peer=self.peer_text)
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        """RFC 1939 §3 autologout: close without entering UPDATE, so nothing is deleted."""
        log.info("pop3 idle timeout for {peer}", peer=self.peer_text)
        if self._sender is not None:
            self.transport.abortConnection()  # the client stopped reading a response
        else:
            self._close()

    # -- input -----------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._discarding:
            data = self._discard(data)
        self._receiving += 1
        try:
            with self._batched():
                super().dataReceived(data)
                while self._receiving == 1 and self._leftover is not None and not self._stopped():
                    leftover, self._leftover = self._leftover, None
                    super().dataReceived(leftover)
        finally:
            self._receiving -= 1
        self._prepare_upcoming()

    def lineLengthExceeded(self, line: bytes) -> None:
        """Answer ``-ERR line too long`` and skip to the next line end, keeping the session."""
        self._sasl = None
        _, sep, rest = line.partition(b"\n")
        if sep:
            self._leftover = rest
        else:
            self._discarding = True
        self._send(replies.LineTooLong())

    def _discard(self, data: bytes) -> bytes:
        end = data.find(b"\n")
        if end < 0:
            return b""
        self._discarding = False
        return data[end + 1 :]

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        # The idle timer restarts per command (and per chunk sent), not per byte received, so
        # a client dribbling a byte a minute without ever finishing a line is still idle.
        self.resetTimeout()
        try:
            result = self._dispatch(line)
        except POP3Error as error:
            result = error
        except Exception:
            log.failure("pop3 command failed for {peer}", peer=self.peer_text)
            result = replies.TempError("internal error")
        self._deliver(result)
        if self._pressure.blocked:
            self._hold()  # the client isn't reading: no further command until it does

    def _dispatch(self, line: bytes) -> Any:
        if self._sasl is not None:  # a response to "+ ", not a command; "*" cancels (RFC 5034 §4)
            exchange, self._sasl = self._sasl, None
            return self._sasl_step(exchange, exchange.respond, line.strip())
        verb_bytes, _, rest = line.partition(b" ")
        verb = verb_bytes.decode("ascii", "replace").upper()
        command = self._COMMANDS.get(verb)
        if command is None:
            raise replies.UnknownCommand()
        if verb not in ALLOWED[self.state]:
            raise replies.WrongState(_WRONG_STATE_TEXT[self.state])
        if command.max_args is None:
            args = [rest] if rest else []
            if not args:
                raise replies.BadArguments(f"usage: {command.usage}")
        else:
            args = rest.split()
            if not command.min_args <= len(args) <= command.max_args:
                raise replies.BadArguments(f"usage: {command.usage}")
        return command.handler(self, args)

    # -- output ----------------------------------------------------------------------------------

    def _deliver(self, result: Any) -> None:
        """Send a reply now, or pause reading until a Deferred or a stream has finished."""
        if result is None:
            return
        if isinstance(result, Deferred):
            self._hold()
            self._waiting = True
            result.addCallbacks(self._settle, self._settle_failure)
        elif isinstance(result, _Prepared):
            self._write(result.response)
            self._retrieved += 1
        elif isinstance(result, _Retrieval) and result.size <= self.chunk_size:
            # One read, one write: the producer's registration round trips cost more than
            # the message for the usual small mail (bench: RETR/s).
            self._send_small(result)
        elif isinstance(result, _Retrieval):
            self._hold()
            prefix = b"".join(self._outbuf)
            self._outbuf.clear()
            self._outbuf_size = 0
            self._sender = _MessageSender(self, result, prefix)
            self.transport.unregisterProducer()  # one producer at a time: the message's now
            self.transport.registerProducer(self._sender, False)
        else:
            self._send(result)

    def _settle(self, result: Any) -> None:
        self._waiting = False
        if self._lost:
            if isinstance(result, _Retrieval):
                result.file.close()
            return
        with self._batched():
            self._deliver(result)
            if self._sender is None:  # no producer streaming a long message: carry on
                self._release()
        self._prepare_upcoming()

    def _settle_failure(self, failure: Failure) -> None:
        if self._lost:
            return
        if failure.check(POP3Error):
            error = failure.value
        else:
            log.failure("pop3 command failed for {peer}", failure, peer=self.peer_text)
            error = replies.TempError("internal error")
        self._settle(error)

    def _send_small(self, retrieval: _Retrieval) -> None:
        try:
            with retrieval.file:
                content = b"".join(retrieval.chunks)
        except OSError:
            log.failure("pop3 could not read a message for {peer}", peer=self.peer_text)
            self._close()
            return
        stuffer = DotStuffer()
        self._write(retrieval.header + stuffer.stuff(content) + stuffer.finish())
        if retrieval.is_retr:
            self._retrieved += 1

    def retrieval_done(self, sender: _MessageSender, ok: bool) -> None:
        """Called by the producer at the end of a RETR/TOP: resume the pipelined commands."""
        if self._sender is sender:
            self._sender = None
        if not self._lost:
            self._pressure.register(self.transport)  # the transport is the session's again
        if not ok:
            self._close()
            return
        if sender.is_retr:
            self._retrieved += 1
        with self._batched():
            self._release()

    def _send(self, reply: OK | Continuation | POP3Error) -> None:
        """The one place a reply is written, logged and counted."""
        if isinstance(reply, replies.BadCommand):
            self._bad_commands += 1
            if self._bad_commands >= MAX_BAD_COMMANDS:
                reply = replies.TooManyBadCommands(closes=True)
        if isinstance(reply, POP3Error):
            log.debug("pop3 {peer} <- {reply}", peer=self.peer_text, reply=reply.render())
        self._write(reply.render())
        if isinstance(reply, (OK, POP3Error)) and reply.closes:
            self._close()

    @contextmanager
    def _batched(self) -> Iterator[None]:
        """Coalesce the replies to pipelined commands into one transport.write."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth:
                self._flush()

    def _write(self, data: bytes) -> None:
        self._outbuf.append(data)
        self._outbuf_size += len(data)
        if (
            not self._batch_depth
            or len(self._outbuf) >= _MAX_BATCHED_REPLIES
            or self._outbuf_size >= _MAX_BATCHED_BYTES
        ):
            # Bounded batches, in replies and in octets (one UIDL of 20,000 messages is
            # 458 KB): the transport learns while a pipeline is worked through if the client
            # has stopped reading (``lineReceived`` then holds further commands).
            self._flush()

    def _flush(self) -> None:
        if self._outbuf and not self._lost:
            data = b"".join(self._outbuf)
            self._outbuf.clear()
            self._outbuf_size = 0
            write_now(self.transport, data)

    def _close(self) -> None:
        self._flush()
        self._closing = True
        # Reading may be paused for a pending command and resumes here, dropping what comes
        # (``dataReceived``); see ``OutputPressure.close``.
        self._pressure.close(self.transport, self.factory.reactor)

    def _stopped(self) -> bool:
        return self._closing or self._lost

    def _hold(self) -> None:
        if not self.paused:
            self.pauseProducing()

    def _release(self) -> None:
        if self.paused and not self._stopped() and not self._pressure.blocked:
            self.resumeProducing()

    def _output_drained(self) -> None:
        """The client has read the replies that piled up: take its next commands."""
        if not self._waiting and self._sender is None and not self._stopped():
            with self._batched():
                self._release()

    # -- authorization ---------------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        """The logged-in user, None before login (``txmailhost who``, ops/control.py)."""
        return self._user

    def _secure(self) -> bool:
        return self._tls.active(self.transport)

    def _tls_how(self) -> str | None:
        """How this session got TLS, for log lines: implicit (995), STLS, or not at all."""
        return self._tls.how(self.transport)

    def _plaintext_allowed(self) -> bool:
        return passwords_allowed(
            self._secure(), self.factory.plaintext_auth, self._peer, self.transport.getHost()
        )

    def _require_plaintext_allowed(self) -> None:
        if not self._plaintext_allowed():
            raise replies.PlaintextRefused()

    def _capa(self, args: list[bytes]) -> OK:
        """RFC 2449 §5. What AUTHORIZATION offers is listed in both states, as §5 requires."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._plaintext_allowed():
            caps += ["USER", "SASL PLAIN"]
        if self._tls.available(self.transport):
            caps.append("STLS")
        caps.append("IMPLEMENTATION txmailhost")
        return OK("capability list follows", tuple(caps))

    def _stls(self, args: list[bytes]) -> None:
        """RFC 2595 §4. Whatever the client sent after STLS, before the handshake, is dropped:
        processing it would run plaintext-injected commands inside the TLS session
        (CVE-2011-0411). What we learnt before TLS (a pending USER) is forgotten too."""
        if self._secure():
            raise replies.TLSActive()
        if not self._tls.available(self.transport):
            raise replies.TLSUnavailable()
        self._write(OK("begin TLS negotiation").render())
        self._flush()
        self._username = None
        self._tls.start(self.transport, self.clearLineBuffer, "pop3", self.peer_text)

    def _user_cmd(self, args: list[bytes]) -> OK:
        # RFC 1939 §7 USER: the same answer for every name, so it reveals nothing.
        self._require_plaintext_allowed()
        self._username = args[0]
        return OK("send PASS")

    def _pass(self, args: list[bytes]) -> Deferred[OK]:
        self._require_plaintext_allowed()
        if self._username is None:
            raise replies.NeedUser()
        username, self._username = self._username, None
        return Deferred.fromCoroutine(self._login(Credentials(username, args[0], "USER")))

    def _auth(self, args: list[bytes]) -> Any:
        """RFC 5034: ``AUTH PLAIN [initial-response]``; bare ``AUTH`` lists the mechanisms."""
        if not args:
            return OK("SASL mechanisms follow", ("PLAIN",) if self._plaintext_allowed() else ())
        try:
            exchange = PasswordExchange(args[0], offered=("PLAIN",))
        except SASLError:
            raise replies.UnsupportedMechanism() from None
        self._require_plaintext_allowed()
        return self._sasl_step(exchange, exchange.begin, args[1] if len(args) == 2 else None)

    def _sasl_step(
        self, exchange: PasswordExchange, step: Callable[[Any], Any], response: bytes | None
    ) -> Any:
        """RFC 4616 PLAIN through the shared exchange: a "+ " to wait for, or the login."""
        try:
            result = step(response)
        except SASLError as e:
            raise _SASL_ERRORS[e.reason]() from None
        if isinstance(result, Credentials):
            return Deferred.fromCoroutine(self._login(result))
        self._sasl = exchange
        return Continuation()

    async def _login(self, credentials: Credentials) -> OK:
        assert self._logins is not None  # set up when the connection was made
        try:
            account, logout = await self._logins.login(
                credentials, self._peer, self.peer_text, printable(credentials.username)
            )
        except LoginThrottled:
            raise replies.LoginThrottled(closes=True) from None
        except LoginFailed:
            closes = self._logins.failures >= MAX_AUTH_FAILURES
            raise replies.AuthFailed(closes=closes) from None
        self._logout = logout
        if self._lost:
            self._end_avatar()
            return OK()
        try:
            mailbox = await account.store.open(account.address, INBOX)
            snapshot = await mailbox.snapshot()
        except Exception as error:
            self._end_avatar()
            log.failure("pop3 could not open INBOX of {user}", user=printable(account.address))
            if isinstance(error, StoreError) and error.permanent:
                raise replies.PermError("mailbox unavailable") from None
            raise replies.MailboxUnavailable() from None
        if self._lost:
            return OK()
        self._user = printable(account.address)
        self._mailbox, self._uidvalidity = mailbox, snapshot.uidvalidity
        self._messages = snapshot.messages
        self.state = State.TRANSACTION
        count, octets = self._totals()
        log.info(
            "pop3 {listener} login {user} from {peer} via {mechanism} tls={tls}: {count} messages",
            listener=self.factory.name,
            user=self._user,
            peer=self.peer_text,
            mechanism=credentials.mechanism,
            tls=describe_tls(self.transport, self._tls_how()),
            count=count,
        )
        return OK(f"{self._user} has {count} messages ({octets} octets)")

    def _end_avatar(self) -> None:
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    # -- transaction -----------------------------------------------------------------------------

    def _visible(self) -> Iterator[tuple[int, MessageInfo]]:
        """(number, message) for every message not marked deleted (RFC 1939 §5: hidden)."""
        for number, info in enumerate(self._messages, 1):
            if number not in self._deleted:
                yield number, info

    def _totals(self) -> tuple[int, int]:
        sizes = [info.size for _, info in self._visible()]
        return len(sizes), sum(sizes)

    def _message(self, arg: bytes) -> tuple[int, MessageInfo]:
        if not arg.isdigit():
            raise replies.InvalidNumber()
        number = int(arg) if len(arg) <= 9 else 0
        if not 1 <= number <= len(self._messages):
            raise replies.NoSuchMessage(f"no such message, only {len(self._messages)} in maildrop")
        if number in self._deleted:
            raise replies.MessageDeleted(f"message {number} already deleted")
        return number, self._messages[number - 1]

    def _uid(self, info: MessageInfo) -> str:
        # Stable across sessions while UIDVALIDITY holds; 0x21-0x7E only (RFC 1939 §7 UIDL).
        return f"{self._uidvalidity}.{info.uid}"

    def _stat(self, args: list[bytes]) -> OK:
        count, octets = self._totals()
        return OK(f"{count} {octets}")

    def _list(self, args: list[bytes]) -> OK:
        if args:
            number, info = self._message(args[0])
            return OK(f"{number} {info.size}")
        count, octets = self._totals()
        lines = tuple(f"{number} {info.size}" for number, info in self._visible())
        return OK(f"{count} messages ({octets} octets)", lines)

    def _uidl(self, args: list[bytes]) -> OK:
        if args:
            number, info = self._message(args[0])
            return OK(f"{number} {self._uid(info)}")
        lines = tuple(f"{number} {self._uid(info)}" for number, info in self._visible())
        return OK("unique-id listing follows", lines)

    def _retr(self, args: list[bytes]) -> _Prepared | _Retrieval | Deferred[Any]:
        number, info = self._message(args[0])
        self._read_ahead(number)
        prepared = self._read_ahead_response(info)
        if prepared is not None:
            return prepared
        if info.uid in self._prefetching:  # a fast client caught up with the read-ahead
            return Deferred.fromCoroutine(self._after_read_ahead(number, info))
        return Deferred.fromCoroutine(self._open_retr(number, info))

    def _open_retr(self, number: int, info: MessageInfo) -> Any:
        header = OK(f"{info.size} octets").render()
        return self._open(number, info, header, _file_chunks, True)

    async def _after_read_ahead(self, number: int, info: MessageInfo) -> _Prepared | _Retrieval:
        """Wait for the batch already reading this message rather than read it a second time."""
        waiter: Deferred[None] = Deferred()
        self._awaiting = (info.uid, waiter)
        await waiter
        prepared = self._read_ahead_response(info)
        if prepared is not None:
            return prepared
        return await self._open_retr(number, info)  # the batch failed

    def _read_ahead_response(self, info: MessageInfo) -> _Prepared | None:
        """The response to a RETR of ``info`` from what was read ahead: made already, after
        the reply before it went out (``_prepare_upcoming``), or made now."""
        upcoming = self._upcoming
        if upcoming is not None and upcoming[0] <= info.uid:
            self._upcoming = None  # taken, or passed (dropped, as passed read-ahead content is)
            if upcoming[0] == info.uid:
                return upcoming[1]
        content = self._prefetched.pop(info.uid, None)
        return None if content is None else _retr_response(info, content)

    def _prepare_upcoming(self) -> None:
        """Dot-stuff the message after the last one retrieved, if it was read ahead, now that
        the replies are written: the work is done while the client reads them, off the path
        of its next RETR, and a message at a time (a batch stuffed on arrival held the
        reactor for a dozen messages' worth, and a RETR arriving then waited for it all)."""
        number = self._retrieving + 1
        if self._upcoming is not None or self._lost or number > len(self._messages):
            return
        info = self._messages[number - 1]
        content = self._prefetched.pop(info.uid, None)
        if content is not None:
            self._upcoming = (info.uid, _retr_response(info, content))

    def _read_ahead(self, number: int) -> None:
        """Fetch the next small messages, in batches, while the client reads this one.

        Clients download in order; reading ahead in the store's pool while this one is on the
        wire takes the thread round trip out of each RETR, without reading files on the
        reactor thread. One trip per ``READ_AHEAD`` messages, not one per RETR: the trips were
        17% of the reactor's time with 10 sessions, and RETR/s doubled without them. A message
        read ahead is dot-stuffed, with its +OK line, once the reply before it is written
        (while the client reads that one), so its RETR is a look-up and one write.
        Messages fetched for positions the client has passed are dropped (it jumped ahead).
        """
        if self._mailbox is None or not hasattr(self._mailbox, "messages"):
            return
        if number < self._retrieving:  # the client went back: read ahead from here again
            self._ahead_through = number
        self._retrieving = number
        if number + READ_AHEAD_LOW <= self._ahead_through:
            return  # the next few are asked for already: one look, not a scan, per RETR
        current = self._messages[number - 1].uid
        for uid in [uid for uid in self._prefetched if uid < current]:
            del self._prefetched[uid]
        last = len(self._messages)
        start = max(number, self._ahead_through) + 1
        wanted: list[int] = []
        octets, ahead = 0, start
        for ahead in range(start, min(number + 1 + READ_AHEAD, last + 1)):
            info = self._messages[ahead - 1]
            if ahead in self._deleted or info.size > self.chunk_size:
                continue
            if info.uid in self._prefetched or info.uid in self._prefetching:
                continue
            octets += info.size
            if wanted and octets > READ_AHEAD_BYTES:
                ahead -= 1
                break
            wanted.append(info.uid)
        self._ahead_through = max(self._ahead_through, ahead)
        if not wanted:
            return
        self._prefetching.update(wanted)

        def arrived(messages: list[Any]) -> None:
            self._prefetching.difference_update(wanted)
            if not self._lost:
                for message in messages:
                    if message.content is not None:
                        self._prefetched[message.uid] = message.content
            self._wake(wanted)

        def failed(failure: Failure) -> None:
            self._prefetching.difference_update(wanted)  # RETR will open the file itself
            self._wake(wanted)

        self._mailbox.messages(wanted, False, True).addCallbacks(arrived, failed)

    def _wake(self, batch: list[int]) -> None:
        if self._awaiting is not None and self._awaiting[0] in batch:
            _uid, waiter = self._awaiting
            self._awaiting = None
            waiter.callback(None)

    def _top(self, args: list[bytes]) -> Deferred[_Retrieval]:
        number, info = self._message(args[0])
        if not args[1].isdigit():
            raise replies.InvalidLineCount()
        lines = int(args[1]) if len(args[1]) <= 9 else 10**9
        chunks = partial(_top_chunks, body_lines=lines)
        header = OK("top of message follows").render()
        return Deferred.fromCoroutine(self._open(number, info, header, chunks, False))

    async def _open(
        self, number: int, info: MessageInfo, header: bytes, chunks: Any, is_retr: bool
    ) -> _Retrieval:
        try:
            file = await self._mailbox.open_message(info.uid)
        except StoreNoSuchMessage:
            # Expunged by another session (IMAP, a second POP3 client) since our snapshot.
            raise replies.MessageGone(f"message {number} is no longer available") from None
        except NoSuchMailbox:
            raise replies.MailboxGone(closes=True) from None
        return _Retrieval(header, file, chunks(file, self.chunk_size), is_retr, info.size)

    def _dele(self, args: list[bytes]) -> OK:
        number, _info = self._message(args[0])
        self._deleted.add(number)
        return OK(f"message {number} deleted")

    def _rset(self, args: list[bytes]) -> OK:
        self._deleted.clear()
        count, octets = self._totals()
        return OK(f"maildrop has {count} messages ({octets} octets)")

    def _noop(self, args: list[bytes]) -> OK:
        return OK()

    def _quit(self, args: list[bytes]) -> OK | Deferred[OK]:
        if self.state is State.AUTHORIZATION:
            return OK("txmailhost POP3 server signing off", closes=True)
        self.state = State.UPDATE
        return Deferred.fromCoroutine(self._commit())

    async def _commit(self) -> OK:
        """RFC 1939 §6: remove the messages marked by DELE, then say +OK."""
        uids = [self._messages[number - 1].uid for number in sorted(self._deleted)]
        if uids:
            try:
                removed = await self._mailbox.expunge(uids)
            except NoSuchMailbox:
                raise replies.MailboxGone(closes=True) from None
            except Exception:
                log.failure("pop3 could not expunge for {user}", user=self._user)
                raise replies.CommitFailed(closes=True) from None
            self._expunged = len(removed)
        left = len(self._messages) - len(self._deleted)
        if uids:
            # The maildrop is not locked (as Dovecot's default): another session may have
            # removed or added mail meanwhile, so the count is the mailbox's, not the snapshot's.
            try:
                left = (await self._mailbox.status()).messages
            except Exception:
                log.failure("pop3 could not count what is left for {user}", user=self._user)
        return OK(f"txmailhost POP3 server signing off ({left} messages left)", closes=True)

    _COMMANDS: ClassVar[dict[str, _Command]] = {
        "CAPA": _Command(_capa, 0, 0, "CAPA"),
        "STLS": _Command(_stls, 0, 0, "STLS"),
        "USER": _Command(_user_cmd, 1, 1, "USER name"),
        "PASS": _Command(_pass, 1, None, "PASS password"),
        "AUTH": _Command(_auth, 0, 2, "AUTH [mechanism [initial-response]]"),
        "STAT": _Command(_stat, 0, 0, "STAT"),
        "LIST": _Command(_list, 0, 1, "LIST [msg]"),
        "UIDL": _Command(_uidl, 0, 1, "UIDL [msg]"),
        "RETR": _Command(_retr, 1, 1, "RETR msg"),
        "TOP": _Command(_top, 2, 2, "TOP msg lines"),
        "DELE": _Command(_dele, 1, 1, "DELE msg"),
        "RSET": _Command(_rset, 0, 0, "RSET"),
        "NOOP": _Command(_noop, 0, 0, "NOOP"),
        "QUIT": _Command(_quit, 0, 0, "QUIT"),
    }


class POP3Factory(Factory):
    """Builds ``POP3Server``s from explicit collaborators; knows nothing of the config file.

    ``tls_creator`` enables STLS; ``implicit_tls`` marks a POP3S listener (port 995), whose
    sessions count as encrypted from the start. ``reactor`` drives the idle timeout and the
    pause after a failed login, so tests can pass a Clock.
    """

    noisy = False

    protocol = POP3Server
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
        name: str = "pop3",
        idle_timeout: float = 600,
        session_timeout: float = 4 * 3600,
        max_line_length: int = 1024,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.portal = portal
        self.reactor = reactor
        self.hostname = printable(hostname)
        self.tls_creator = tls_creator
        self.implicit_tls = implicit_tls
        self.name = name  # the listener, for log lines ("pop3", "pop3s")
        # where passwords may be sent without TLS (peer.PlaintextAuth; default: same address)
        self.plaintext_auth = plaintext_auth or PlaintextAuth()
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.max_line_length = max_line_length
