"""The ESMTP server protocol (RFC 5321) and its factory.

Why not ``twisted.mail.smtp.ESMTP`` (audit §1): it executes commands pipelined after STARTTLS,
turns the rest of a DATA line longer than 16 KiB into commands (smuggling), lets replies of
pipelined commands overtake a pending asynchronous one, keeps an unbounded line buffer, drops
MAIL/RCPT parameters and answers temporary failures with 550. This protocol keeps its own
buffer and:

- processes pipelined commands strictly in order (RFC 2920): while a command waits for the
  store or the accounts database, reading pauses and later lines wait in the buffer; replies
  are collected and written in one ``write`` per burst (no Nagle stalls);
- switches to ``DataReader`` for DATA, where only ``<CRLF>.<CRLF>`` ends the message and bare
  CR/LF make it refused (RFC 5321 2.3.8, SMTP smuggling);
- answers a command line over the limit with ``500 5.5.2`` and skips to the next line end,
  never into another mode;
- discards everything pipelined after STARTTLS and forgets the session (RFC 3207 4.2);
- counts errors and closes with ``421`` after too many; has idle and whole-session timeouts.

Session state is an enum; ``_SEQUENCE`` says in which states each verb may run, checked once
before dispatch. Every handler returns an ``SMTPReply`` (or a Deferred of one); ``_reply``
is the one place that writes, counts and logs replies.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet import interfaces
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from txmailhost._safeio import log_not_stored
from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.delivery.incoming import IncomingMessage
from txmailhost.delivery.interfaces import BODY_BINARYMIME, ISubmission
from txmailhost.filters.chain import Decision, FilterChain, render_fields
from txmailhost.filters.interfaces import Action, Client, Transaction, Verdict
from txmailhost.ops import metrics
from txmailhost.ops.eventlog import PRERENDERED
from txmailhost.peer import OutputPressure, PlaintextAuth, describe_tls, printable, quick_ack
from txmailhost.sasl import SASLError
from txmailhost.session.auth import (
    Credentials,
    PasswordExchange,
    PasswordLogin,
    passwords_allowed,
)
from txmailhost.session.tls import SessionTLS
from txmailhost.smtp import replies
from txmailhost.smtp.address import AddressError, parse_path_argument
from txmailhost.smtp.datastream import DataReader, LineEnds
from txmailhost.smtp.params import ParameterError, mail_options, rcpt_options
from txmailhost.smtp.policy import Envelope, InboundPolicy
from txmailhost.smtp.rates import ClientRates
from txmailhost.smtp.replies import SMTPReply
from txmailhost.store.interfaces import QuotaExceeded

log = Logger()


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The RFC 5322 date for Received:, formatted once per second (it was 2% of the reactor's
    time at one connection)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, localtime=False, usegmt=False))
    return _date_cache[1]


class State(enum.Enum):
    CONNECTED = "connected"  # greeting sent, no HELO/EHLO yet
    GREETED = "greeted"  # HELO/EHLO done, no transaction
    MAIL = "mail"  # MAIL FROM accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading the message
    BDAT = "bdat"  # some BDAT chunks of the message taken, more to come (RFC 3030)
    CHUNK = "chunk"  # reading the octets of one BDAT chunk
    CLOSING = "closing"


_MAX_PENDING = 64 * 1024  # bytes buffered behind a pending command before reading pauses
_MAX_BATCHED_REPLIES = 64  # replies to pipelined commands held for one write, at most
MAX_HELO = 255  # RFC 5321 4.5.3.1.2: the longest domain; a longer HELO name is no name
_ANY = frozenset(State) - {State.DATA, State.CHUNK, State.CLOSING}
_BDAT_ARGS = re.compile(r"^([0-9]{1,20})(?: +(LAST))?$", re.IGNORECASE)
_SEQUENCE: dict[str, frozenset[State]] = {
    "EHLO": _ANY,
    "HELO": _ANY,
    "NOOP": _ANY,
    "RSET": _ANY,
    "QUIT": _ANY,
    "HELP": _ANY,
    "VRFY": _ANY,
    "EXPN": _ANY,
    "STARTTLS": frozenset({State.CONNECTED, State.GREETED}),
    "AUTH": frozenset({State.GREETED}),
    "MAIL": frozenset({State.GREETED}),
    "RCPT": frozenset({State.MAIL, State.RCPT}),
    "DATA": frozenset({State.RCPT}),
    # Checked by the handler: its chunk must be read (and thrown away) even when refused.
    "BDAT": _ANY,
}


@dataclass
class _Chunk:
    """The BDAT chunk being read: octets still to come, whether it ends the message, and,
    for a chunk that is refused, the reply once it has been read and thrown away."""

    remaining: int
    last: bool
    refusal: SMTPReply | None = None
    resume: State = State.GREETED  # where a refused chunk leaves the session


# What a bad SASL exchange is answered with (session/auth.py's reasons).
_SASL_REPLIES = {
    "cancelled": replies.AUTH_CANCELLED,
    "base64": replies.AUTH_BAD_BASE64,
    "malformed": replies.AUTH_BAD_BASE64.with_text("malformed PLAIN response"),
    "authzid": replies.AUTH_FAILED.with_text("may not act for another identity"),
}


def _out_of_sequence(verb: str, state: State, envelope: Envelope | None) -> SMTPReply:
    if state is State.CONNECTED and verb in ("MAIL", "RCPT", "DATA"):
        return replies.NEED_HELO
    if verb == "MAIL":
        return replies.NESTED_MAIL
    if verb == "RCPT":
        if state is State.BDAT:
            return replies.NEED_MAIL.with_text("no RCPT once BDAT has begun")
        return replies.NEED_MAIL
    if verb == "DATA" and state is State.BDAT:
        return replies.DATA_AFTER_BDAT
    if verb in ("DATA", "BDAT"):
        if envelope is None:
            return replies.NEED_MAIL.with_text(f"need MAIL before {verb}")
        if envelope.recipients_tried:
            return replies.NO_VALID_RECIPIENTS
        return replies.NEED_RCPT.with_text(f"need RCPT before {verb}")
    if verb == "STARTTLS":
        return replies.NESTED_MAIL.with_text("STARTTLS not allowed during a mail transaction")
    if verb == "AUTH":
        return replies.NEED_HELO if state is State.CONNECTED else replies.AUTH_IN_TRANSACTION
    return replies.UNKNOWN_COMMAND


def _address_error(error: AddressError, bad_syntax: SMTPReply, esmtp: bool) -> SMTPReply:
    if error.utf8:  # RFC 6531 3.5: 553 5.6.7, whether or not SMTPUTF8 was offered
        return replies.UTF8_NOT_REQUESTED if esmtp else replies.UTF8_NOT_ALLOWED
    if error.in_params:
        return replies.SYNTAX_ERROR.with_text(str(error))
    return bad_syntax


def _printable(text: str, limit: int = 255) -> str:
    """Client text made safe for headers and logs: no CR/LF/controls, bounded length."""
    return "".join(c if 32 < ord(c) < 127 else "?" for c in text[:limit])


def _trace_word(name: str) -> str:
    """The client's HELO name as our Received: shows it: what a domain, an address literal
    or a Windows host name (``my_pc``) is made of, every other character "?". Taken as it
    came, ``evil(x;Mon, 1 Jan 2001`` opened a comment that ran to the field's end and gave
    the field a date of the client's (RFC 5322 3.6.7: a parser takes the last ";")."""
    return "".join(c if c.isalnum() or c in ".-_:[]" else "?" for c in name)


def filter_refusal(verdict: Verdict, at_connect: bool = False) -> SMTPReply:
    """The reply for a filter's TEMPFAIL or REJECT, its reason as the text (the SMTP
    listeners' and ``outbox.Outbox``'s alike)."""
    if verdict.action is Action.REJECT:
        reply = replies.FILTER_REFUSED_CONNECTION if at_connect else replies.FILTER_REJECTED
        if verdict.code and not at_connect:
            reply = SMTPReply(verdict.code, reply.enhanced, reply.text)
    else:
        reply = replies.FILTER_DEFERRED_CONNECTION if at_connect else replies.FILTER_TEMPFAIL
    return reply.with_text(printable(verdict.reason)) if verdict.reason else reply


def set_no_delay(transport: Any) -> None:
    """Turn off Nagle on the TCP socket under any TLS wrapper: replies are written whole, and
    a small final write waiting for the client's delayed ACK costs ~40 ms per command (audit
    addendum)."""
    for _ in range(3):
        if transport is None:
            return
        if interfaces.ITCPTransport.providedBy(transport) and hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
            return
        transport = getattr(transport, "transport", None)


class SMTPServer(Protocol, TimeoutMixin):
    """One SMTP session. Collaborators come from the factory; nothing reads the config."""

    def __init__(self, factory: SMTPFactory) -> None:
        self.factory = factory
        self.policy = factory.policy
        self.callLater = factory.reactor.callLater  # TimeoutMixin uses this, tests pass a Clock
        self.state = State.CONNECTED
        self.helo: str | None = None
        self.esmtp = False
        self._tls = SessionTLS(factory.tls_creator, factory.implicit_tls)
        self._logins = PasswordLogin(factory.portal, factory.reactor, "smtp", verb="auth")
        self.peer_host = "unknown"
        # the client's forward-confirmed reverse DNS name, "" none, None not (yet) known
        self.reverse_name: str | None = None
        self.envelope: Envelope | None = None
        self.authenticated_as: str | None = None
        self._sasl: Callable[[str], SMTPReply | Deferred[SMTPReply] | None] | None = None
        self._buffer = bytearray()
        self._discarding = False  # skipping the rest of an over-long line
        self._busy = False  # an asynchronous command is pending; later lines wait
        self._paused = False  # reading stopped: too much arrived while busy
        self._pressure = OutputPressure(self._output_drained)  # the client reads our replies
        self._out: list[bytes] = []
        self._reader: DataReader | None = None
        self._chunk: _Chunk | None = None
        self._line_ends: LineEnds | None = None  # the BDAT message's bare CR/LF watch
        self._chunked = 0  # octets of the BDAT message so far
        self._message: IncomingMessage | None = None
        self._errors = 0
        self._junk = 0  # NOOP, RSET, VRFY, EXPN, HELP since the last message taken
        self._command = "(connect)"  # what the client last asked, for the refusal log line
        self._pregreet: Any = None  # the delayed greeting ([smtp] greeting_delay)
        self._session_timer: Any = None
        self._connect_filtered = Decision()  # the filters' word at connect
        self._session_filtered = Decision()  # ... and at the latest HELO/EHLO
        self._handlers: dict[str, Callable[[str], SMTPReply | Deferred[SMTPReply]]] = {
            "EHLO": self.do_EHLO,
            "HELO": self.do_HELO,
            "MAIL": self.do_MAIL,
            "RCPT": self.do_RCPT,
            "DATA": self.do_DATA,
            "BDAT": self.do_BDAT,
            "RSET": self.do_RSET,
            "NOOP": self.do_NOOP,
            "QUIT": self.do_QUIT,
            "HELP": self.do_HELP,
            "VRFY": self.do_VRFY,
            "EXPN": self.do_EXPN,
            "STARTTLS": self.do_STARTTLS,
            "AUTH": self.do_AUTH,
        }

    # -- connection ------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """A message is being received or its reply is pending: the server's shutdown waits
        for it (ops/control.py ``Sessions.drain``)."""
        return self._busy or self.envelope is not None or self.state is State.DATA

    @property
    def secure(self) -> bool:
        """TLS from the first byte (submissions, 465) or since STARTTLS."""
        return self._tls.active(self.transport)

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unknown")
        if self.factory.reverse_dns is not None:  # answered while the client greets
            self.factory.reverse_dns.lookup(self.peer_host).addCallback(self._reverse_known)
        set_no_delay(self.transport)
        self._pressure.register(self.transport)
        self.setTimeout(self.factory.idle_timeout)
        self._session_timer = self.callLater(self.factory.session_timeout, self._session_expired)
        greeting = SMTPReply(220, "", f"{self.factory.hostname} ESMTP txmailhost")
        if self.factory.greeting_delay > 0:
            # postscreen's pregreet test: a client that speaks before the 220 is refused
            self._pregreet = self.callLater(
                self.factory.greeting_delay, self._send_greeting, greeting
            )
        else:
            self._send_greeting(greeting)

    def _reverse_known(self, name: str | None) -> None:
        self.reverse_name = name

    def _send_greeting(self, greeting: SMTPReply) -> None:
        self._pregreet = None
        if self.state is State.CLOSING:
            return
        if self.factory.filters is None or not self.factory.filters.asks("connect"):
            self.transport.write(greeting.encode())
        else:  # the greeting waits for the filters' connect hook
            self._wait_for(Deferred.fromCoroutine(self._filter_connect(greeting)))

    # -- content filters (txmailhost.filters) ----------------------------------------------

    def _client(self) -> Client:
        return Client(
            address=self.peer_host,
            reverse_name=self.reverse_name,
            helo=self.helo,
            tls=self.secure,
            authenticated_as=self.authenticated_as,
            listener=self.factory.name,
        )

    @staticmethod
    def _refusal(verdict: Verdict, at_connect: bool = False) -> SMTPReply:
        return filter_refusal(verdict, at_connect)

    async def _filter_connect(self, greeting: SMTPReply) -> SMTPReply | None:
        assert self.factory.filters is not None
        decision = await self.factory.filters.connect(self._client())
        if decision.refusal is not None:
            self._close_with(self._refusal(decision.refusal, at_connect=True))
            return None
        self._connect_filtered = self._session_filtered = decision
        return greeting

    def _after_filters(
        self, stage: str, ask: Callable[[FilterChain], Any], then: Callable[[Decision], Any]
    ) -> Any:
        """``then(decision)`` once the filters had their say at ``stage``, unless they
        refused; at once when no filter takes part in it."""
        chain = self.factory.filters
        if chain is None or not chain.asks(stage):
            return then(Decision())

        async def run() -> Any:
            decision = await ask(chain)
            if decision.refusal is not None:
                return self._refused(self._refusal(decision.refusal))
            return then(decision)

        return Deferred.fromCoroutine(run())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.setTimeout(None)
        if self._pregreet is not None and self._pregreet.active():
            self._pregreet.cancel()
        self._pregreet = None
        if self._session_timer is not None and self._session_timer.active():
            self._session_timer.cancel()
        self._drop_message()
        self._chunk = None
        self.state = State.CLOSING
        self._pressure.connection_lost()

    def timeoutConnection(self) -> None:
        log.info("smtp {peer} idle timeout", peer=self.peer_host)
        self._close_with(replies.IDLE_TIMEOUT)

    def _session_expired(self) -> None:
        log.info("smtp {peer} session timeout", peer=self.peer_host)
        self._close_with(replies.SESSION_TIMEOUT)

    def _close_with(self, reply: SMTPReply) -> None:
        if self.state is State.CLOSING:
            return
        self._out.append(reply.encode())
        self._flush()
        self.state = State.CLOSING
        self._drop_message()
        # What arrives from now on is dropped (``dataReceived``); see ``OutputPressure.close``.
        self._paused = False
        self._pressure.close(self.transport, self.factory.reactor)

    # -- input -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.state is State.CLOSING:
            return
        if self._pregreet is not None:
            self._pregreet.cancel()
            self._pregreet = None
            log.info("smtp {peer} spoke before the greeting: refused", peer=self.peer_host)
            self._close_with(replies.EARLY_TALKER)
            return
        self.resetTimeout()
        if self._reader is not None and not self._busy:
            self._feed_message(data)
            return
        self._buffer += data
        waiting = self._busy or self._pressure.blocked
        if waiting and not self._paused and len(self._buffer) > _MAX_PENDING:
            # Lines keep waiting in the buffer while a command is pending (RFC 2920) or the
            # client isn't reading our replies; stop reading rather than let it grow. (Pausing
            # on every async command instead cost two epoll_ctl calls per command.)
            self._paused = True
            self.transport.pauseProducing()
        self._process()

    def _process(self) -> None:
        limit = self.factory.max_line_length
        while (
            self._buffer
            and not self._busy
            and not self._pressure.blocked
            and self.state not in (State.DATA, State.CLOSING)
        ):
            if self.state is State.CHUNK:
                self._consume_chunk()
                if len(self._out) >= _MAX_BATCHED_REPLIES:
                    self._flush()
                continue
            nl = self._buffer.find(b"\n")
            if self._discarding:
                if nl < 0:
                    self._buffer.clear()
                    break
                del self._buffer[: nl + 1]
                self._discarding = False
                continue
            if nl < 0:
                if len(self._buffer) > limit:
                    start = bytes(self._buffer[:5])
                    self._buffer.clear()
                    self._discarding = True
                    self._line_too_long(start)
                break
            if nl + 1 > limit:
                start = bytes(self._buffer[:5])
                del self._buffer[: nl + 1]
                self._line_too_long(start)
                continue
            line = bytes(self._buffer[:nl]).rstrip(b"\r")
            del self._buffer[: nl + 1]
            self._handle_line(line)
            if len(self._out) >= _MAX_BATCHED_REPLIES:
                self._flush()  # the transport learns now if the client has stopped reading
        self._flush()
        if self.state is State.DATA and self._buffer and not self._busy:
            pending = bytes(self._buffer)
            self._buffer.clear()
            self._feed_message(pending)

    def _line_too_long(self, start: bytes) -> None:
        """500 for a line past the limit; one sent as a SASL response ends the exchange
        (RFC 4954 4: the reply is final), so the line after it is read as a command.

        A SASL response, or an AUTH command whose initial response makes it too long, gets
        RFC 4954 6's ``500 5.5.6`` (authentication exchange line is too long): the client
        learns it was its credentials, not the command, that didn't fit."""
        in_auth = self._sasl is not None or start.upper() == b"AUTH "
        self._sasl = None
        self._command = "AUTH (line too long)" if in_auth else "(line too long)"
        self._error(replies.AUTH_LINE_TOO_LONG if in_auth else replies.LINE_TOO_LONG)

    def _handle_line(self, line: bytes) -> None:
        if self._sasl is not None:
            # A SASL response (RFC 4954 4), not a command: whatever it holds, its answer ends
            # the exchange (one that isn't base64 gets 501), so the next line is a command.
            self._command = "AUTH (response)"
            continuation, self._sasl = self._sasl, None
            text = line.decode("ascii", "replace")
            self._dispatch_result("AUTH", continuation, text.strip())
            return
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            verb = line[:5].upper()
            if verb not in (b"MAIL ", b"RCPT "):
                self._command = "(not ASCII)"
                self._error(replies.BAD_CHARACTERS)
                return
            try:  # SMTPUTF8 addresses: well-formed UTF-8 only (RFC 6531 3.3, RFC 3629)
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                self._command = f"{verb.decode().strip()} (not UTF-8)"
                bad = (
                    replies.BAD_SENDER_SYNTAX if verb == b"MAIL " else replies.BAD_RECIPIENT_SYNTAX
                )
                self._error(bad.with_text("address is not valid UTF-8"))
                return
        if "\x00" in text:
            self._command = "(NUL in line)"
            self._error(replies.BAD_CHARACTERS)
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        # Never a password in the log: AUTH keeps only its mechanism.
        self._command = f"AUTH {arg.partition(' ')[0]}" if verb == "AUTH" else f"{verb} {arg}"
        handler = self._handlers.get(verb)
        if handler is None:
            self._error(replies.UNKNOWN_COMMAND)
            return
        if self.state not in _SEQUENCE[verb]:
            self._error(_out_of_sequence(verb, self.state, self.envelope))
            return
        self._dispatch_result(verb, handler, arg.strip(" "))

    def _dispatch_result(self, verb: str, handler: Callable[[str], Any], arg: str) -> None:
        try:
            result = handler(arg)
        except Exception:
            log.failure("smtp {peer} {verb} failed", peer=self.peer_host, verb=verb)
            result = replies.DELIVERY_FAILED.with_text("local error, try again later")
        if isinstance(result, Deferred):
            self._wait_for(result)
        elif result is not None:
            self._reply(result)

    def _wait_for(self, pending: Deferred[SMTPReply]) -> None:
        """Hold later commands (and reading) until ``pending`` has its reply (RFC 2920 3.1)."""
        self._busy = True
        pending.addErrback(self._internal_error)
        pending.addCallback(self._async_reply)

    def _output_drained(self) -> None:
        """The client has read the replies that piled up: take its next commands."""
        if self.state is State.CLOSING or self._busy:
            return
        self._read_again()
        self._process()

    def _internal_error(self, failure: Failure) -> SMTPReply:
        log.failure("smtp {peer} internal error", failure=failure, peer=self.peer_host)
        return replies.DELIVERY_FAILED.with_text("local error, try again later")

    def _async_reply(self, reply: SMTPReply | None) -> None:
        self._busy = False
        if self.state is State.CLOSING:
            return
        if reply is not None:
            self._reply(reply)
        self._read_again()
        self._process()

    def _read_again(self) -> None:
        """Undo the pause of reading that too much waiting input caused (``dataReceived``)."""
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- output ----------------------------------------------------------------------------

    def _reply(self, reply: SMTPReply, lines: list[str] | None = None) -> None:
        if reply.code >= 400 and self._command:
            self._log_refusal(reply)
        self._out.append(reply.encode(lines))

    def _log_refusal(self, reply: SMTPReply) -> None:
        """Every refused command, with the client and the reply: what an administrator
        looks for when mail goes missing (a 550 5.1.1 at RCPT leaves nothing else)."""
        log.info(
            "smtp {listener} {peer} refused '{command}': {code} {enhanced} {text}",
            listener=self.factory.name,
            peer=self.peer_host,
            command=printable(self._command.strip()),
            code=reply.code,
            enhanced=reply.enhanced,
            text=reply.text,
        )

    def _error(self, reply: SMTPReply) -> None:
        """A refused command: counted; too many and the session ends (slow brute force)."""
        self._errors += 1
        if self._errors > self.factory.max_errors:
            log.info("smtp {peer} too many errors", peer=self.peer_host)
            self._close_with(replies.TOO_MANY_ERRORS)
            return
        self._reply(reply)

    def _refused(self, reply: SMTPReply) -> SMTPReply | None:
        """A refusal decided after a wait (an unknown recipient, a filter's no, a failed
        AUTH): counted as ``_error`` counts; a permanent one past ``max_errors`` is sent,
        then 421 and the session ends, so None is left to send. These once counted without
        ending anything: 128 unknown recipients in one session were each answered. A
        temporary one (greylisting's 451 for each of 50 recipients) never ends it: the
        client is doing what it should."""
        self._errors += 1
        if self._errors <= self.factory.max_errors or reply.code < 500:
            return reply
        self._reply(reply)
        log.info("smtp {peer} too many errors", peer=self.peer_host)
        self._close_with(replies.TOO_MANY_ERRORS)
        return None

    def _flush(self) -> None:
        if self._out:
            self.transport.write(b"".join(self._out))
            self._out.clear()

    # -- commands --------------------------------------------------------------------------

    def _greet(self, arg: str, esmtp: bool, decision: Decision) -> SMTPReply | None:
        if not arg or " " in arg or len(arg) > MAX_HELO:
            self._error(
                replies.SYNTAX_ERROR.with_text("HELO/EHLO needs one domain or address literal")
            )
            return None
        self.helo = _printable(arg)
        self.esmtp = esmtp
        connected = self._connect_filtered
        self._session_filtered = Decision(
            fields=connected.fields + decision.fields,
            junk_all=connected.junk_all or decision.junk_all,
        )
        self._reset_transaction()
        self.state = State.GREETED
        return replies.OK

    def do_EHLO(self, arg: str) -> SMTPReply | Deferred[SMTPReply] | None:
        return self._after_filters(
            "helo", lambda chain: chain.helo(self._client(), arg), lambda d: self._ehlo(arg, d)
        )

    def _ehlo(self, arg: str, decision: Decision) -> SMTPReply | None:
        if self._greet(arg, esmtp=True, decision=decision) is None:
            return None
        lines = [f"{self.factory.hostname} greets {self.helo}"]
        lines += ["PIPELINING", f"SIZE {self.factory.max_message_size}", "8BITMIME"]
        lines += ["ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "SMTPUTF8", "DSN"]
        if self.factory.tls_creator is not None and not self.secure:
            lines.append("STARTTLS")
        if self.secure:
            lines.append("REQUIRETLS")  # RFC 8689 4: only where TLS protects the session
        if self._auth_allowed() and self.authenticated_as is None:
            lines.append("AUTH PLAIN LOGIN")
        lines.append("HELP")
        self._out.append(
            "".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n" for i, line in enumerate(lines)
            ).encode()
        )
        return None

    def _offered(self) -> frozenset[str]:
        """The extensions whose MAIL/RCPT parameters this session takes (what EHLO listed)."""
        if not self.esmtp:
            return frozenset()
        offered = {"SIZE", "8BITMIME", "BINARYMIME", "SMTPUTF8", "DSN"}
        if self.secure:
            offered.add("REQUIRETLS")
        return frozenset(offered)

    def do_HELO(self, arg: str) -> SMTPReply | Deferred[SMTPReply] | None:
        return self._after_filters(
            "helo", lambda chain: chain.helo(self._client(), arg), lambda d: self._helo(arg, d)
        )

    def _helo(self, arg: str, decision: Decision) -> SMTPReply | None:
        if self._greet(arg, esmtp=False, decision=decision) is None:
            return None
        return replies.OK.with_text(f"{self.factory.hostname}")

    def do_MAIL(self, arg: str) -> SMTPReply | None:
        try:
            path = parse_path_argument(arg, "FROM", allow_null=True)
        except AddressError as e:
            self._error(_address_error(e, replies.BAD_SENDER_SYNTAX, self.esmtp))
            return None
        params = path.params
        try:
            options = mail_options(params, self._offered(), self.factory.max_message_size)
        except ParameterError as e:
            if e.reply is replies.MESSAGE_TOO_BIG:
                return e.reply
            self._error(e.reply)
            return None
        authenticated_as = self.authenticated_as
        if authenticated_as is None and not self.factory.message_rates.allow(self.peer_host):
            log.info("smtp {peer} over its message rate", peer=self.peer_host)
            self._close_with(replies.MESSAGE_RATE)
            return None
        filtered = [self._session_filtered]

        def decided(reply: SMTPReply) -> SMTPReply:
            if reply.positive and self.state is State.GREETED:
                self.envelope = Envelope(
                    path.mailbox, params, authenticated_as=authenticated_as, options=options
                )
                self.envelope.fields.extend(f for d in filtered for f in d.fields)
                self.envelope.junk_all = any(d.junk_all for d in filtered)
                self.state = State.MAIL
            return reply

        result = self.policy.check_sender(self, path.mailbox)
        if self.factory.filters is not None and self.factory.filters.asks("mail"):
            result = Deferred.fromCoroutine(self._filter_mail(result, path.mailbox, filtered))
        if isinstance(result, Deferred):
            return result.addCallback(decided)
        return decided(result)

    async def _filter_mail(
        self, policy: SMTPReply | Deferred[SMTPReply], sender: Any, filtered: list[Decision]
    ) -> SMTPReply:
        reply = await policy if isinstance(policy, Deferred) else policy
        if not reply.positive:
            return reply
        assert self.factory.filters is not None
        address = f"{sender.local}@{sender.domain}" if sender is not None else None
        decision = await self.factory.filters.mail_from(self._client(), address)
        if decision.refusal is not None:
            return self._refusal(decision.refusal)
        filtered.append(decision)
        return reply

    def do_RCPT(self, arg: str) -> SMTPReply | Deferred[SMTPReply] | None:
        assert self.envelope is not None
        try:
            utf8 = self.envelope.options.smtputf8
            path = parse_path_argument(arg, "TO", allow_null=False, utf8=utf8)
        except AddressError as e:
            self._error(_address_error(e, replies.BAD_RECIPIENT_SYNTAX, self.esmtp))
            return None
        try:
            dsn = rcpt_options(path.params, self._offered())
        except ParameterError as e:
            self._error(e.reply)
            return None
        envelope = self.envelope
        if len(envelope.recipients) >= self.factory.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if self.authenticated_as is None and not self.factory.recipient_rates.allow(self.peer_host):
            log.info("smtp {peer} over its recipient rate", peer=self.peer_host)
            self._close_with(replies.RECIPIENT_RATE)
            return None
        envelope.recipients_tried += 1
        recipient = path.mailbox
        assert recipient is not None

        address = f"{recipient.local}@{recipient.domain}"
        filtered: list[Decision] = []

        def decided(result: tuple[SMTPReply, list[Any]]) -> SMTPReply | None:
            reply, routes = result
            if reply.positive and self.envelope is envelope:
                envelope.recipients.append(address)
                envelope.routes.extend(r for r in routes if r not in envelope.routes)
                envelope.routes_of[address] = list(routes)
                for route in routes:
                    envelope.recipient_options.setdefault(route.address, dsn)
                for decision in filtered:
                    envelope.fields.extend(decision.fields)
                    envelope.junk |= decision.junk
                self.state = State.RCPT
            elif not reply.positive:
                return self._refused(reply)
            return reply

        async def checked() -> tuple[SMTPReply, list[Any]]:
            reply, routes = await self.policy.check_recipient(self, recipient)
            chain = self.factory.filters
            if chain is None or not chain.asks("rcpt") or not reply.positive:
                return reply, routes
            transaction = Transaction(
                str(envelope.sender) if envelope.sender else None, tuple(envelope.recipients)
            )
            decision = await chain.rcpt_to(self._client(), transaction, address)
            if decision.refusal is not None:
                return self._refusal(decision.refusal), []
            filtered.append(decision)
            return reply, routes

        return Deferred.fromCoroutine(checked()).addCallback(decided)

    def do_DATA(self, arg: str) -> SMTPReply | None:
        if arg:
            self._error(replies.SYNTAX_ERROR.with_text("DATA takes no arguments"))
            return None
        assert self.envelope is not None
        if self.envelope.options.body == BODY_BINARYMIME:
            self._error(replies.BINARYMIME_NEEDS_BDAT)
            return None
        if not self._open_message():
            return replies.DELIVERY_FAILED
        assert self._message is not None
        self._reader = DataReader(self._message.write, self.factory.max_message_size)
        self.state = State.DATA
        return replies.START_DATA

    def _open_message(self) -> bool:
        """The spool file for the transaction's message, with our trace fields on top."""
        try:
            self._message = self.factory.delivery.open()
        except OSError as e:
            log_not_stored(log, e, "smtp {peer}: can't open spool file", peer=self.peer_host)
            return False
        if self.factory.filters is not None or getattr(self.policy, "completes_header", False):
            # filters may add fields on top, the submission policy below Received: (end of data)
            self._message.hold_headers()
        self._message.write_trace(self._trace_headers(self._message.queue_id))
        # text that is no header field goes below an empty line, never onto our Received:
        self._message.judge_first_line()
        return True

    def do_BDAT(self, arg: str) -> SMTPReply | Deferred[SMTPReply] | None:
        """RFC 3030 CHUNKING: ``BDAT <size> [LAST]`` and exactly ``size`` octets follow.

        The octets are read whatever the answer (out of sequence, too big, a failed earlier
        chunk): the client has already sent them, and reading them as commands would let
        message content run as SMTP (3030 2: "the chunk MUST be discarded"). A size that
        doesn't parse leaves no way to find the next command, so the session ends. After
        HELO no extension was offered (RFC 5321 4.1.1.1), CHUNKING neither: the chunk is
        read and refused as one out of sequence, and the transaction fails."""
        match = _BDAT_ARGS.match(arg)
        if match is None:
            self._close_with(replies.BAD_BDAT)
            return None
        size, last = int(match[1]), match[2] is not None
        chunk = _Chunk(size, last, resume=self.state)
        if self.state not in (State.RCPT, State.BDAT):
            chunk.refusal = _out_of_sequence("BDAT", self.state, self.envelope)
        elif not self.esmtp:
            chunk.refusal = replies.BDAT_AFTER_HELO
        elif self._chunked + size > self.factory.max_message_size:
            chunk.refusal = replies.MESSAGE_TOO_BIG
        elif self._message is None:
            if not self._open_message():
                chunk.refusal = replies.DELIVERY_FAILED
            assert self.envelope is not None
            binary = self.envelope.options.body == BODY_BINARYMIME
            self._line_ends = None if binary else LineEnds()
        self._chunk = chunk
        self.state = State.CHUNK
        if size == 0:
            return self._chunk_done()
        return None

    def _consume_chunk(self) -> None:
        """Take the current chunk's octets from the buffer; its reply once all are in."""
        chunk = self._chunk
        assert chunk is not None
        taken = min(chunk.remaining, len(self._buffer))
        data = bytes(self._buffer[:taken])
        del self._buffer[:taken]
        chunk.remaining -= taken
        if chunk.refusal is None:
            self._chunked += taken
            if self._line_ends is not None:
                self._line_ends.feed(data)
            if self._line_ends is None or not self._line_ends.bare:
                assert self._message is not None
                try:
                    self._message.write(data)
                except OSError as e:
                    log_not_stored(
                        log, e, "smtp {peer}: writing spool file failed", peer=self.peer_host
                    )
                    self._close_with(replies.local_error(e))
                    return
        if chunk.remaining == 0:
            self._dispatch_result("BDAT", lambda _: self._chunk_done(), "")

    def _chunk_done(self) -> SMTPReply | Deferred[SMTPReply] | None:
        """A whole chunk is in: its reply, and for the last one the end of the message."""
        chunk, self._chunk = self._chunk, None
        assert chunk is not None
        if chunk.refusal is not None:
            if chunk.resume in (State.RCPT, State.BDAT):  # the transaction fails (3030 2)
                self._end_chunked(chunk.refusal)
                self.state = State.GREETED
            else:
                self.state = chunk.resume
            self._error(chunk.refusal)
            return None
        line_ends = self._line_ends
        if chunk.last and line_ends is not None:
            line_ends.end()
        refusal = None
        if line_ends is not None and line_ends.bare:
            refusal = replies.BARE_NEWLINE
        elif chunk.last and self._message is not None and self._message.header_too_long:
            refusal = replies.HEADER_TOO_LONG
        if refusal is not None:
            self._end_chunked(refusal)
            self.state = State.GREETED
            return refusal
        if not chunk.last:
            self.state = State.BDAT
            return replies.CHUNK_OK.with_text(f"{self._chunked} octets received")
        envelope, message, size = self.envelope, self._message, self._chunked
        assert envelope is not None and message is not None
        self._message = None
        self._reset_transaction()
        self.state = State.GREETED

        def done(reply: SMTPReply) -> SMTPReply:
            self._log_transaction(envelope, message.queue_id, size, reply)
            return reply

        return Deferred.fromCoroutine(self._end_of_data(envelope, message)).addCallback(done)

    def _end_chunked(self, reply: SMTPReply) -> None:
        """A BDAT transaction refused part way: logged, and its message dropped."""
        if self.envelope is not None and self._message is not None:
            self._log_transaction(self.envelope, self._message.queue_id, self._chunked, reply)
        self._reset_transaction()

    def _trace_headers(self, queue_id: str) -> bytes:
        """Return-Path and Received (RFC 5321 4.4), written before the client's text."""
        assert self.envelope is not None
        sender = str(self.envelope.sender) if self.envelope.sender else ""
        # RFC 3848 protocol names: S for TLS, A for authenticated.
        protocol = "ESMTP" if self.esmtp else "SMTP"
        if self.envelope.options.smtputf8:
            protocol = "UTF8SMTP"  # RFC 6531 3.7.3
        if self.esmtp:
            protocol += ("S" if self.secure else "") + ("A" if self.authenticated_as else "")
        recipients = self.envelope.recipients
        recipient = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
        # Postfix's TCP-info: the verified name, "unknown" when there is none; nothing while
        # it isn't known (not looked up, or DNS still hasn't answered)
        name = self.reverse_name
        named = "" if name is None else f"{_trace_word(name) or 'unknown'} "
        origin = f"from {_trace_word(self.helo)} ({named}[{self.peer_host}])\r\n\t"
        if self.authenticated_as and self.factory.hide_client_ip:
            origin = ""
        return (
            f"Return-Path: <{sender}>\r\n"
            f"Received: {origin}by {self.factory.hostname} (txmailhost) with {protocol} id {queue_id}"
            f"{recipient};\r\n\t{_date_now()}\r\n"
        ).encode("utf-8" if self.envelope.options.smtputf8 else "ascii", "replace")

    def _feed_message(self, data: bytes) -> None:
        assert self._reader is not None
        try:
            rest = self._reader.feed(data)
        except OSError as e:
            log_not_stored(log, e, "smtp {peer}: writing spool file failed", peer=self.peer_host)
            self._drop_message()
            self._close_with(replies.local_error(e))
            return
        if rest is None:
            # More to come; a client whose last write (often ``.<CRLF>`` alone) waits in its
            # Nagle buffer for our ACK must not wait for the delayed-ACK timer (40 ms).
            quick_ack(self.transport)
            return
        reader, message, envelope = self._reader, self._message, self.envelope
        assert message is not None and envelope is not None
        self._reader = None
        self._message = None
        self._buffer[:0] = rest
        self._reset_transaction()
        self.state = State.GREETED
        if reader.bare_newline or reader.too_big or message.header_too_long:
            message.discard()
            if reader.bare_newline:
                reply = replies.BARE_NEWLINE
            else:
                reply = replies.MESSAGE_TOO_BIG if reader.too_big else replies.HEADER_TOO_LONG
            self._log_transaction(envelope, message.queue_id, reader.size, reply)
            self._reply(reply)
            self._process()
            return

        def done(reply: SMTPReply) -> SMTPReply:
            self._log_transaction(envelope, message.queue_id, reader.size, reply)
            return reply

        self._wait_for(
            Deferred.fromCoroutine(self._end_of_data(envelope, message)).addCallback(done)
        )
        self._flush()

    async def _end_of_data(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply:
        """The message is in: the policy's last word, then the one durable hand-off
        (``ISubmission.submit``); its reply is ``250`` only once that fired (invariant 1)."""
        try:
            refusal = await self.policy.check_message(envelope, message)
            if refusal is not None:
                message.discard()
                return refusal
            if getattr(self.policy, "completes_header", False):  # RFC 6409 8 (submission)
                fields = self.policy.missing_fields(envelope, message, self.factory.hostname)
                if fields:
                    message.add_fields(fields)
            junk, dropped = await self._filter_message(envelope, message)
            receipt = await self.factory.delivery.submit(envelope.handoff(junk, dropped), message)
        except _Refused as refused:
            message.discard()
            return refused.reply
        except QuotaExceeded as e:
            # a direct recipient filled up since its RCPT (other messages received at the
            # same time, on this node or another): nothing stored; the retry's RCPT answers
            # for that recipient alone
            message.discard()
            log.info("quota: {queue_id} not stored: {error}", queue_id=message.queue_id, error=e)
            return replies.QUOTA_FULL_TEMPORARY
        except Exception as e:
            message.discard()
            log_not_stored(log, e, "delivery of {queue_id} failed", queue_id=message.queue_id)
            return replies.local_error(e)
        self._junk = 0  # a client that sends mail may tidy up between messages
        how = "queued" if receipt.queued else "delivered"
        return replies.DELIVERED.with_text(f"OK {how} as {receipt.queue_id}")

    async def _filter_message(
        self, envelope: Envelope, message: IncomingMessage
    ) -> tuple[frozenset[str], frozenset[str]]:
        """The filters' end-of-data verdict: (recipients for Junk, recipients dropped); their
        header fields, and those of earlier stages, go on top of the message now, before it
        is made durable. Raises ``_Refused`` for a TEMPFAIL or REJECT."""
        chain = self.factory.filters
        if chain is None:
            return frozenset(), frozenset()
        sender = str(envelope.sender) if envelope.sender else None
        transaction = Transaction(sender, tuple(envelope.recipients), message.queue_id)
        decision = await chain.end_of_data(self._client(), transaction, message.reader)
        if decision.refusal is not None:
            raise _Refused(self._refusal(decision.refusal))
        if decision.remove:
            message.remove_fields(decision.remove)
        fields = [*envelope.fields, *decision.fields]
        if fields:
            message.prepend(render_fields(fields))
        return decision.junk, decision.dropped

    def _log_transaction(
        self, envelope: Envelope, queue_id: str, size: int, reply: SMTPReply
    ) -> None:
        # The reply to the end of data is logged here, not as a refusal too.
        self._command = ""
        metrics.smtp_transaction(self.factory.name, reply.code, reply.enhanced, size)
        fields = {
            "listener": self.factory.name,
            "peer": self.peer_host,
            "helo": self.helo or "-",
            "tls": describe_tls(self.transport, self._tls_how()),
            "user": self.authenticated_as or "-",
            "queue_id": queue_id,
            "sender": str(envelope.sender or ""),
            "recipients": ",".join(envelope.recipients),
            "size": size,
            "code": reply.code,
            "enhanced": reply.enhanced,
        }
        # One event per message: rendered here once (an f-string) rather than by each log
        # observer's str.format machinery; the fields stay on the event for the JSON log.
        line = (
            "smtp {listener} {peer} id={queue_id} from=<{sender}> to={recipients} size={size}"
            " result={code} {enhanced} helo={helo} tls={tls} user={user}"
        ).format_map(fields)
        log.info(PRERENDERED, line=line, **fields)

    def _tls_how(self) -> str | None:
        return self._tls.how(self.transport)

    def _junk_command(self) -> bool:
        """A command that moves no mail (NOOP, RSET, VRFY, EXPN, HELP): counted, and past
        ``max_junk_commands`` since the last message taken the session ends, as Postfix's
        ``smtpd_junk_command_limit`` has it: a client looping on them holds a connection
        slot while sending nothing (3,000 NOOPs in half a second were all answered). True
        when the session is being closed."""
        self._junk += 1
        if self._junk <= self.factory.max_junk_commands:
            return False
        log.info("smtp {peer} too many commands without mail", peer=self.peer_host)
        self._close_with(replies.TOO_MANY_JUNK)
        return True

    def do_RSET(self, arg: str) -> SMTPReply | None:
        if self._junk_command():
            return None
        if arg:  # RFC 5321 4.1.1.5: no parameters; as Postfix answers it, nothing is reset
            self._error(replies.SYNTAX_ERROR.with_text("RSET takes no arguments"))
            return None
        self._reset_transaction()
        if self.state is not State.CONNECTED:
            self.state = State.GREETED
        return replies.RESET_OK

    def do_NOOP(self, arg: str) -> SMTPReply | None:
        if self._junk_command():
            return None
        return replies.OK

    def do_QUIT(self, arg: str) -> None:
        self._close_with(
            replies.SERVICE_CLOSING.with_text(f"{self.factory.hostname} closing connection")
        )

    def do_HELP(self, arg: str) -> None:
        if self._junk_command():
            return
        self._reply(
            replies.HELP,
            [
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
                "See RFC 5321; administrator contact: postmaster",
            ],
        )

    def do_VRFY(self, arg: str) -> SMTPReply | None:
        if self._junk_command():
            return None
        if not arg:
            self._error(replies.SYNTAX_ERROR.with_text("VRFY needs an argument"))
            return None
        # Never confirm or deny a user: VRFY would enumerate accounts (security.md).
        return replies.CANNOT_VRFY

    def do_EXPN(self, arg: str) -> SMTPReply | None:
        if self._junk_command():
            return None
        return replies.NOT_IMPLEMENTED.with_text("EXPN not available")

    def do_STARTTLS(self, arg: str) -> SMTPReply | None:
        if arg:
            self._error(replies.SYNTAX_ERROR.with_text("STARTTLS takes no arguments"))
            return None
        if self.secure:
            return replies.ALREADY_TLS
        if not self._tls.available(self.transport):
            self._error(replies.NOT_IMPLEMENTED.with_text("STARTTLS not available"))
            return None
        self._reply(replies.READY_FOR_TLS)
        self._flush()
        # RFC 3207 4.2 / CVE-2011-0411: bytes sent before the handshake are not trusted.
        self._tls.start(self.transport, self._drop_buffer, "smtp", self.peer_host)
        self.authenticated_as = None
        self.helo = None
        self.esmtp = False
        self._reset_transaction()
        self.state = State.CONNECTED
        return None

    def _drop_buffer(self) -> bytes:
        pending = bytes(self._buffer)
        self._buffer.clear()
        return pending

    def _auth_allowed(self) -> bool:
        """AUTH is offered when a portal is configured and passwords can't be sniffed:
        over TLS, or where ``factory.plaintext_auth`` allows clear text (DESIGN invariant 6,
        RFC 8314): by default only from the server's own address."""
        return self.factory.portal is not None and passwords_allowed(
            self.secure,
            self.factory.plaintext_auth,
            self.transport.getPeer(),
            self.transport.getHost(),
        )

    def do_AUTH(self, arg: str) -> SMTPReply | Deferred[SMTPReply] | None:
        """RFC 4954 with PLAIN (RFC 4616) and LOGIN (the de facto draft)."""
        if self.factory.portal is None:
            self._error(replies.NOT_IMPLEMENTED.with_text("AUTH not available on this port"))
            return None
        if self.authenticated_as is not None:
            return replies.ALREADY_AUTHENTICATED
        if not self._auth_allowed():
            return replies.AUTH_NEEDS_TLS
        mechanism, _, initial = arg.partition(" ")
        initial = initial.strip()
        try:
            exchange = PasswordExchange(mechanism, offered=("PLAIN", "LOGIN"))
        except SASLError:
            self._error(replies.AUTH_BAD_MECHANISM)
            return None
        if initial == "*":  # a cancel in place of the initial response
            return replies.AUTH_CANCELLED
        return self._sasl_step(exchange, exchange.begin, initial.encode("ascii") or None)

    def _sasl_step(
        self, exchange: PasswordExchange, step: Callable[[Any], Any], response: bytes | None
    ) -> SMTPReply | Deferred[SMTPReply | None]:
        """One step of the shared SASL exchange: a ``334`` challenge, or the login."""
        try:
            result = step(response)
        except SASLError as e:
            return _SASL_REPLIES[e.reason]
        if isinstance(result, Credentials):
            return Deferred.fromCoroutine(self._login(result))
        self._sasl = lambda text: self._sasl_step(exchange, exchange.respond, text.encode("utf-8"))
        return replies.AUTH_CHALLENGE.with_text(result.encoded().decode("ascii"))

    async def _login(self, credentials: Credentials) -> SMTPReply | None:
        user = _printable(credentials.username.decode("utf-8", "replace"), 320)
        try:
            account, _logout = await self._logins.login(
                credentials, self.transport.getPeer(), self.peer_host, user
            )
        except LoginThrottled:
            return replies.AUTH_THROTTLED
        except LoginFailed:
            return self._refused(replies.AUTH_FAILED)
        except Exception:
            log.failure("smtp auth error for {user}", user=user)
            return replies.AUTH_UNAVAILABLE
        self.authenticated_as = account.address
        log.info(
            "smtp auth ok for {user} from {peer} via {mechanism}",
            user=account.address,
            peer=self.peer_host,
            mechanism=credentials.mechanism,
        )
        return replies.AUTH_OK

    # -- helpers ---------------------------------------------------------------------------

    def _reset_transaction(self) -> None:
        self.envelope = None
        self._drop_message()
        self._line_ends = None
        self._chunked = 0

    def _drop_message(self) -> None:
        if self._message is not None:
            self._message.discard()
            self._message = None
        self._reader = None


class _Refused(Exception):
    """A filter refused the message at the end of data; ``reply`` says how."""

    def __init__(self, reply: SMTPReply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class SMTPFactory(Factory):
    """Builds ``SMTPServer`` sessions; embeddable with any policy and delivery.

    ``policy`` accepts or refuses senders, recipients and messages (``InboundPolicy`` for
    port 25); ``delivery`` (an ``ISubmission``, ``txmailhost.delivery.Submission``) hands out
    the files messages are streamed into and makes accepted ones durable; ``portal`` (a twisted.cred
    Portal handing out ``IMailAccount``, ideally a ``ThrottledPortal``) enables AUTH;
    ``hide_client_ip`` keeps authenticated clients' addresses out of Received:; ``tls_creator`` (an
    ``IOpenSSLServerConnectionCreator``) enables STARTTLS; ``implicit_tls`` marks a listener
    that is TLS from the first byte (submissions, 465); ``filters`` (a ``FilterChain``)
    asks the content filters at each stage (``txmailhost.filters``).
    """

    noisy = False

    protocol = SMTPServer

    def __init__(
        self,
        policy: InboundPolicy,
        delivery: ISubmission,
        *,
        hostname: str = "localhost",
        reactor: Any = None,
        tls_creator: Any = None,
        implicit_tls: bool = False,
        plaintext_auth: PlaintextAuth | None = None,
        name: str = "smtp",
        portal: Any = None,
        hide_client_ip: bool = False,
        max_message_size: int = 50 * 1024 * 1024,
        max_recipients: int = 100,
        max_line_length: int = 2048,
        idle_timeout: float = 300,
        session_timeout: float = 3600,
        max_errors: int = 20,
        max_junk_commands: int = 100,
        filters: FilterChain | None = None,
        greeting_delay: float = 0.0,
        client_message_rate: int = 0,
        client_recipient_rate: int = 0,
        rate_window: float = 60.0,
        reverse_dns: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.policy = policy
        self.delivery = delivery
        self.hostname = hostname
        self.reactor = reactor
        self.tls_creator = tls_creator
        self.implicit_tls = implicit_tls
        self.name = name  # the listener, for log lines ("smtp", "submission", ...)
        # where passwords may be sent without TLS (peer.PlaintextAuth; default: same address)
        self.plaintext_auth = plaintext_auth or PlaintextAuth()
        self.portal = portal
        self.hide_client_ip = hide_client_ip
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.max_line_length = max_line_length
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.max_errors = max_errors
        self.max_junk_commands = max_junk_commands
        self.filters = filters
        # Inbound politeness (port 25): postscreen's pregreet wait, anvil's client rates.
        self.greeting_delay = greeting_delay
        self.message_rates = ClientRates(reactor, client_message_rate, rate_window)
        self.recipient_rates = ClientRates(reactor, client_recipient_rate, rate_window)
        # reversedns.ReverseDNS: each client's name looked up at connect (Received:, the
        # filters' Client.reverse_name); None: not looked up
        self.reverse_dns = reverse_dns

    def buildProtocol(self, addr: Any) -> SMTPServer:
        return SMTPServer(self)
