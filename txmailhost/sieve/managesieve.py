"""The ManageSieve server (RFC 5804): users upload, check and activate their Sieve scripts.

One ``ManageSieveServer`` per connection. The greeting is the capability list (IMPLEMENTATION,
SASL, SIEVE with the extensions of ``language.EXTENSIONS``, STARTTLS, VERSION, MAXREDIRECTS),
repeated after STARTTLS (RFC 5804 2.2). Each command is parsed from the input buffer with its
literals (``wire.py``), checked once against the commands its state allows (:data:`ALLOWED`),
and handled by one method returning a :class:`wire.Response`, or a Deferred of one for work on
disk, which runs in the reactor's thread pool. While one is pending, further input waits in
the buffer: pipelined commands run afterwards, in order.

Security is the same as IMAP's (``txmailhost.session``): passwords only over TLS or where
``[security] plaintext_auth_from`` allows (otherwise no SASL mechanism is offered), STARTTLS
drops whatever was pipelined after it, logins go through the throttled Portal, three failures
end the session, and an idle or endless session is closed. Errors become ``NO``/``BYE`` with
RFC 5804 response codes; a traceback is logged, never sent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from txmailhost.accounts.throttle import LoginThrottled
from txmailhost.peer import OutputPressure, PlaintextAuth, describe_tls, printable
from txmailhost.sasl import SASLError
from txmailhost.session.auth import Credentials, PasswordExchange, PasswordLogin, passwords_allowed
from txmailhost.session.tls import SessionTLS
from txmailhost.sieve import wire
from txmailhost.sieve.grammar import SieveSyntaxError
from txmailhost.sieve.language import EXTENSIONS, compile_script
from txmailhost.sieve.scripts import ScriptError, ScriptStore, check_name
from txmailhost.sieve.wire import Command, Response, WireError, bye, no, ok

_LINE_LITERAL = re.compile(rb"\{([0-9]+)\+?\}\r?\n$")  # a line ending in a literal's start

log = Logger(namespace="txmailhost.managesieve")

MAX_AUTH_FAILURES = 3
MAX_BAD_COMMANDS = 10
MECHANISMS = ("PLAIN", "LOGIN")


class State(enum.Enum):
    NONAUTH = "non-authenticated"
    AUTH = "authenticated"
    LOGOUT = "logout"


_ANY = {"CAPABILITY", "NOOP", "LOGOUT"}
ALLOWED: dict[State, frozenset[str]] = {
    State.NONAUTH: frozenset(_ANY | {"STARTTLS", "AUTHENTICATE"}),
    State.AUTH: frozenset(
        _ANY
        | {
            "HAVESPACE",
            "PUTSCRIPT",
            "LISTSCRIPTS",
            "SETACTIVE",
            "GETSCRIPT",
            "DELETESCRIPT",
            "RENAMESCRIPT",
            "CHECKSCRIPT",
            "UNAUTHENTICATE",
        }
    ),  # fmt: skip
    State.LOGOUT: frozenset(),
}


class _Failed(Exception):
    """A command's NO (or BYE), raised from any depth."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.text)
        self.response = response


def _text(value: bytes | str, what: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _Failed(no(f"{what} is not UTF-8")) from None


class ManageSieveServer(Protocol, TimeoutMixin):
    """One ManageSieve session; see the module docstring."""

    factory: ManageSieveFactory

    def __init__(self) -> None:
        self.state = State.NONAUTH
        self.peer_text = "-"
        self._peer: Any = None
        self._tls = SessionTLS(None, implicit=False)
        self._logins: PasswordLogin | None = None
        self._buffer = bytearray()
        self._skipping = False  # dropping the rest of a refused command (``_skip``)
        self._skip_octets = 0
        self._skip_tail = b""
        self._waiting = False
        self._reading_paused = False  # the transport's reading, by ``_throttle``
        self._closing = False
        self._lost = False
        self._bad_commands = 0
        self._user: str | None = None
        self._logout: Callable[[], None] | None = None
        self._sasl: PasswordExchange | None = None  # an AUTHENTICATE waiting for a response
        self._session_timer: Any = None
        # A client that pipelines commands without reading the replies: no further command
        # runs until it reads (peer.OutputPressure), so its input, not our memory, fills up.
        self._pressure = OutputPressure(self._process)

    @property
    def user(self) -> str | None:
        """The logged-in user, None before login (``txmailhost who`` and ``kick``,
        ops/control.py)."""
        return self._user

    # -- connection ----------------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.callLater = factory.reactor.callLater  # TimeoutMixin: the injected clock
        self._peer = self.transport.getPeer()
        host = self._peer.host if isinstance(self._peer, (IPv4Address, IPv6Address)) else None
        self.peer_text = printable(host or str(self._peer))
        self._tls = SessionTLS(factory.tls_creator, factory.implicit_tls)
        self._logins = PasswordLogin(
            factory.portal,
            factory.reactor,
            "managesieve",
            failure_delay=factory.auth_failure_delay,
            verb="authenticate",
        )
        if ITCPTransport.providedBy(self.transport):
            with suppress(OSError):  # the socket may be gone already
                self.transport.setTcpNoDelay(True)
        self.setTimeout(factory.idle_timeout)
        self._session_timer = self.callLater(factory.session_timeout, self._expired)
        self._pressure.register(self.transport)
        self.transport.write(self._capabilities() + ok("txmailhost ManageSieve ready").render())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._pressure.connection_lost()
        self.setTimeout(None)
        if self._session_timer is not None and self._session_timer.active():
            self._session_timer.cancel()
        if self._logins is not None:
            self._logins.cancel()
        self._end_avatar()

    def timeoutConnection(self) -> None:
        log.info("managesieve idle timeout for {peer}", peer=self.peer_text)
        self._send(bye("idle for too long", "TRYLATER"))

    def _expired(self) -> None:
        log.info("managesieve session timeout for {peer}", peer=self.peer_text)
        self._send(bye("session too long", "TRYLATER"))

    def _end_avatar(self) -> None:
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    # -- input ---------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        self._process()

    def _process(self) -> None:
        self._take_commands()
        self._throttle()

    def _throttle(self) -> None:
        """Stop reading while a command (or a failed login's delay) runs or the client isn't
        reading our replies, so what it sends meanwhile waits in its socket, not in our
        memory; read again once neither holds."""
        if self._closing or self._lost:
            return
        stalled = self._waiting or self._pressure.blocked
        if stalled and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not stalled and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _take_commands(self) -> None:
        factory = self.factory
        while (
            not self._waiting and not self._closing and self._buffer and not self._pressure.blocked
        ):
            if self._skipping:
                self._skip()
                continue
            if self._sasl is not None:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > factory.max_line_length:
                        self._send(bye("line too long"))
                    return
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                self.resetTimeout()
                self._deliver(self._sasl_response(line))
                continue
            try:
                found = wire.take_command(
                    self._buffer, factory.max_line_length, factory.max_literal_size
                )
            except WireError as e:
                line_end = bytes(self._buffer[max(0, e.consumed - 32) : e.consumed])
                ended = line_end.endswith(b"\n")
                del self._buffer[: e.consumed]
                self._bad(bye(str(e)) if e.closes else no(str(e)))
                if not e.closes:  # the rest of the refused command is never a command
                    self._skip_tail = b"" if ended else line_end  # a marker may go on later
                    self._skipping = not ended or self._skip_literal_of(line_end)
                continue
            if found is None:
                return
            command, consumed = found
            del self._buffer[:consumed]
            self.resetTimeout()
            self._deliver(self._dispatch(command))

    def _skip(self) -> None:
        """Drop what is left of a refused command: to its line's end, and past it when that
        line ends with a literal (``{n}`` or ``{n+}``: RFC 5804 sends both without waiting)
        whose octets, and the line after them, are the same command's. A refused PUTSCRIPT's
        script (a webmail's user's text) was otherwise read as commands."""
        if self._skip_octets:
            taken = min(self._skip_octets, len(self._buffer))
            del self._buffer[:taken]
            self._skip_octets -= taken
            return
        end = self._buffer.find(b"\n")
        if end < 0:
            self._skip_tail = (self._skip_tail + bytes(self._buffer))[-32:]
            self._buffer.clear()
            return
        line_end = (self._skip_tail + bytes(self._buffer[: end + 1]))[-32:]
        self._skip_tail = b""
        del self._buffer[: end + 1]
        self._skipping = self._skip_literal_of(line_end)

    def _skip_literal_of(self, line_end: bytes) -> bool:
        """Does a refused command's line ``line_end`` announce a literal still to come (then
        counted in ``_skip_octets``)? One too large to read through ends the session."""
        marker = _LINE_LITERAL.search(line_end)
        if marker is None:
            return False
        size = int(marker[1])
        if size > self.factory.max_literal_size:
            self._send(bye(f"literal larger than {self.factory.max_literal_size} octets"))
            return False
        self._skip_octets = size
        return True

    def _bad(self, response: Response) -> None:
        self._bad_commands += 1
        if self._bad_commands >= MAX_BAD_COMMANDS and not response.closes:
            response = bye("too many bad commands")
        self._send(response)

    def _dispatch(self, command: Command) -> Response | Deferred[Response] | None:
        verb = command.verb
        entry = _COMMANDS.get(verb)
        if entry is None:
            self._bad_commands += 1
            return no(f"unknown command {printable(verb, 40)}")
        if verb not in ALLOWED[self.state]:
            return no(f"{verb} is not allowed {'after' if self._user else 'before'} login")
        handler, fewest, most = entry
        if not fewest <= len(command.arguments) <= most:
            self._bad_commands += 1
            return no(f"{verb}: wrong number of arguments")
        try:
            return handler(self, command.arguments)
        except _Failed as e:
            return e.response
        except Exception:
            log.failure("managesieve {verb} failed for {peer}", verb=verb, peer=self.peer_text)
            return no("internal error", "TRYLATER")

    # -- output --------------------------------------------------------------------------------

    def _deliver(self, result: Response | Deferred[Response] | None) -> None:
        if result is None:
            return
        if isinstance(result, Deferred):
            self._waiting = True
            result.addErrback(self._failure).addCallback(self._settle)
            return
        self._send(result)

    def _failure(self, failure: Failure) -> Response:
        if failure.check(_Failed):
            return failure.value.response
        log.failure("managesieve command failed for {peer}", failure, peer=self.peer_text)
        return no("internal error", "TRYLATER")

    def _settle(self, response: Response) -> None:
        self._waiting = False
        if self._lost:
            return
        self._send(response)
        self._process()

    def _send(self, response: Response) -> None:
        if self._closing or self._lost:
            return
        self.transport.write(response.render())
        if response.closes:
            self._closing = True
            self.state = State.LOGOUT
            # Not a bare loseConnection: over TLS, with our producer registered, Twisted never
            # sends close_notify and the client that waits for us to close waits for ever.
            self._pressure.close(self.transport, self.factory.reactor)

    # -- any state -----------------------------------------------------------------------------

    def _capabilities(self) -> bytes:
        """RFC 5804 1.7: the capability lines (without the final OK)."""
        lines = [
            (b"IMPLEMENTATION", "txmailhost"),
            (b"SIEVE", " ".join(EXTENSIONS)),
            (b"SASL", " ".join(MECHANISMS) if self._passwords_allowed() else ""),
            (b"MAXREDIRECTS", str(self.factory.max_redirects)),
        ]
        if self._tls.available(self.transport) and self.state is State.NONAUTH:
            lines.append((b"STARTTLS", None))
        if self._user is not None:
            lines.append((b"OWNER", self._user))
        lines.append((b"VERSION", "1.0"))
        out = b""
        for name, value in lines:
            out += wire.string(name) + (b" " + wire.string(value) if value is not None else b"")
            out += wire.CRLF
        return out

    def _cmd_capability(self, args: list) -> Response:
        return ok(lines=self._capabilities())

    def _cmd_noop(self, args: list) -> Response:
        if args:
            tag = wire.string(_text(args[0], "the tag")).decode("utf-8")
            return ok("Done", f"TAG {tag}")
        return ok("Done")

    def _cmd_logout(self, args: list) -> Response:
        return Response("OK", "Logout", closes=True)

    # -- non-authenticated ---------------------------------------------------------------------

    def _passwords_allowed(self) -> bool:
        return passwords_allowed(
            self._tls.active(self.transport),
            self.factory.plaintext_auth,
            self._peer,
            self.transport.getHost(),
        )

    def _cmd_starttls(self, args: list) -> None:
        """RFC 5804 2.2: OK, the handshake, then the capabilities again; what the client
        pipelined after STARTTLS is dropped (CVE-2011-0411)."""
        if not self._tls.available(self.transport):
            self._send(no("TLS is not available here" if not self._tls.active(self.transport)
                          else "TLS is already active"))  # fmt: skip
            return
        self._send(ok("Begin TLS negotiation now"))

        def drop() -> bytes:
            dropped, self._buffer = bytes(self._buffer), bytearray()
            return dropped

        self._tls.start(self.transport, drop, "managesieve", self.peer_text)
        self.transport.write(self._capabilities() + ok("TLS active").render())

    def _cmd_authenticate(self, args: list) -> Response | Deferred[Response] | None:
        mechanism = _text(args[0], "the mechanism")
        try:
            exchange = PasswordExchange(mechanism, offered=MECHANISMS)
        except SASLError:
            return no(f"mechanism {printable(mechanism, 20)} is not supported")
        if not self._passwords_allowed():
            return no("passwords only over TLS: use STARTTLS first", "ENCRYPT-NEEDED")
        initial = args[1] if len(args) == 2 else None
        if isinstance(initial, str):
            initial = initial.encode("ascii")
        return self._sasl_step(exchange, exchange.begin, initial)

    def _sasl_response(self, line: bytes) -> Response | Deferred[Response] | None:
        exchange, self._sasl = self._sasl, None
        assert exchange is not None
        try:
            found = wire.take_command(b"X " + line + b"\r\n", self.factory.max_line_length, 4096)
        except WireError:
            found = None
        if found is None or len(found[0].arguments) != 1:
            return no("expected a string with the SASL response")
        response = found[0].arguments[0]
        response = response.encode("ascii") if isinstance(response, str) else response
        return self._sasl_step(exchange, exchange.respond, response)

    def _sasl_step(
        self, exchange: PasswordExchange, step: Callable[[Any], Any], response: bytes | None
    ) -> Response | Deferred[Response] | None:
        try:
            result = step(response)
        except SASLError as e:
            if e.reason == "cancelled":
                return no("authentication cancelled")
            return no(f"bad SASL response ({e.reason})")
        if isinstance(result, Credentials):
            return Deferred.fromCoroutine(self._login(result))
        self._sasl = exchange
        self.transport.write(wire.string(result.encoded()) + wire.CRLF)
        return None

    async def _login(self, credentials: Credentials) -> Response:
        assert self._logins is not None
        try:
            account, logout = await self._logins.login(
                credentials, self._peer, self.peer_text, printable(credentials.username)
            )
        except LoginThrottled:
            return bye("too many failed logins, try again later", "TRYLATER")
        except LoginFailed:
            if self._logins.failures >= MAX_AUTH_FAILURES:
                return bye("authentication failed")
            return no("authentication failed")
        if self._lost:
            logout()
            return ok()
        self._logout = logout
        self._user = account.address
        self.state = State.AUTH
        log.info(
            "managesieve {listener} login {user} from {peer} via {mechanism} tls={tls}",
            listener=self.factory.name,
            user=printable(account.address),
            peer=self.peer_text,
            mechanism=credentials.mechanism,
            tls=describe_tls(self.transport, self._tls.how(self.transport)),
        )
        return ok("Logged in")

    # -- authenticated -------------------------------------------------------------------------

    def _cmd_unauthenticate(self, args: list) -> Response:
        self._end_avatar()
        self._user = None
        self.state = State.NONAUTH
        return ok()

    def _scripts(self, work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``work`` (a ScriptStore method) off the reactor; ScriptError becomes NO."""

        def run() -> Any:
            try:
                return work(*args)
            except ScriptError as e:
                raise _Failed(no(str(e), e.code)) from None
            except SieveSyntaxError as e:
                raise _Failed(no(str(e))) from None

        return deferToThreadPool(self.factory.reactor, self.factory.pool, run)

    def _name(self, value: bytes | str) -> str:
        name = _text(value, "the script name")
        try:
            return check_name(name)
        except ScriptError as e:
            raise _Failed(no(str(e))) from None

    def _cmd_havespace(self, args: list) -> Deferred[Response]:
        name = self._name(args[0])
        size = args[1]
        if not isinstance(size, str) or not size.isdigit() or not size.isascii():
            raise _Failed(no("HAVESPACE: the size is a number"))
        # past 20 digits no script fits (and int() refuses past 4,300): QUOTA/MAXSIZE
        octets = int(size) if len(size) <= 20 else 2**64
        store = self.factory.scripts
        d = self._scripts(store.check_space, self._user, name, octets)
        return d.addCallback(lambda _: ok())

    def _script_text(self, value: bytes | str) -> str:
        if isinstance(value, str):  # an atom is no script
            raise _Failed(no("the script must be a string or a literal"))
        return _text(value, "the script")

    def _cmd_putscript(self, args: list) -> Deferred[Response]:
        name = self._name(args[0])
        text = self._script_text(args[1])
        d = self._scripts(self.factory.scripts.put, self._user, name, text)

        def stored(_: Any) -> Response:
            log.info("managesieve {user} stored script {name}", user=self._user, name=name)
            return ok()

        return d.addCallback(stored)

    def _cmd_checkscript(self, args: list) -> Deferred[Response]:
        text = self._script_text(args[0])
        d = self._scripts(compile_script, text, self.factory.scripts.max_script_size)
        return d.addCallback(lambda _: ok())

    def _cmd_listscripts(self, args: list) -> Deferred[Response]:
        d = self._scripts(self.factory.scripts.list, self._user)

        def listed(scripts: list) -> Response:
            lines = b"".join(
                wire.string(s.name) + (b" ACTIVE" if s.active else b"") + wire.CRLF for s in scripts
            )
            return ok(lines=lines)

        return d.addCallback(listed)

    def _cmd_getscript(self, args: list) -> Deferred[Response]:
        name = self._name(args[0])
        d = self._scripts(self.factory.scripts.get, self._user, name)

        def got(text: str) -> Response:
            data = text.encode("utf-8")
            return ok(lines=b"{%d}\r\n" % len(data) + data + wire.CRLF)

        return d.addCallback(got)

    def _cmd_setactive(self, args: list) -> Deferred[Response]:
        raw = _text(args[0], "the script name")
        name = self._name(raw) if raw else None
        d = self._scripts(self.factory.scripts.set_active, self._user, name)

        def done(_: Any) -> Response:
            log.info("managesieve {user} activated {name}", user=self._user, name=name or "none")
            return ok()

        return d.addCallback(done)

    def _cmd_deletescript(self, args: list) -> Deferred[Response]:
        name = self._name(args[0])
        d = self._scripts(self.factory.scripts.delete, self._user, name)
        return d.addCallback(lambda _: ok())

    def _cmd_renamescript(self, args: list) -> Deferred[Response]:
        old, new = self._name(args[0]), self._name(args[1])
        d = self._scripts(self.factory.scripts.rename, self._user, old, new)
        return d.addCallback(lambda _: ok())


_S = ManageSieveServer
# verb -> (handler, fewest arguments, most arguments)
_COMMANDS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "CAPABILITY": (_S._cmd_capability, 0, 0),
    "NOOP": (_S._cmd_noop, 0, 1),
    "LOGOUT": (_S._cmd_logout, 0, 0),
    "STARTTLS": (_S._cmd_starttls, 0, 0),
    "AUTHENTICATE": (_S._cmd_authenticate, 1, 2),
    "UNAUTHENTICATE": (_S._cmd_unauthenticate, 0, 0),
    "HAVESPACE": (_S._cmd_havespace, 2, 2),
    "PUTSCRIPT": (_S._cmd_putscript, 2, 2),
    "CHECKSCRIPT": (_S._cmd_checkscript, 1, 1),
    "LISTSCRIPTS": (_S._cmd_listscripts, 0, 0),
    "GETSCRIPT": (_S._cmd_getscript, 1, 1),
    "SETACTIVE": (_S._cmd_setactive, 1, 1),
    "DELETESCRIPT": (_S._cmd_deletescript, 1, 1),
    "RENAMESCRIPT": (_S._cmd_renamescript, 2, 2),
}


class ManageSieveFactory(Factory):
    """Builds ``ManageSieveServer``s from explicit collaborators; knows nothing of the config.

    ``scripts`` is the ``ScriptStore``; ``pool`` the thread pool its disk work runs in
    (the reactor's when None).
    """

    noisy = False
    protocol = ManageSieveServer
    auth_failure_delay = 1.0

    def __init__(
        self,
        portal: Any,
        scripts: ScriptStore,
        *,
        reactor: Any = None,
        hostname: str = "localhost",
        tls_creator: Any = None,
        implicit_tls: bool = False,
        plaintext_auth: PlaintextAuth | None = None,
        name: str = "managesieve",
        pool: Any = None,
        idle_timeout: float = 600,
        session_timeout: float = 4 * 3600,
        max_line_length: int = 8192,
        max_redirects: int = 4,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.portal = portal
        self.scripts = scripts
        self.reactor = reactor
        self.hostname = printable(hostname)
        self.tls_creator = tls_creator
        self.implicit_tls = implicit_tls
        self.plaintext_auth = plaintext_auth or PlaintextAuth()
        self.name = name
        self.pool = pool if pool is not None else reactor.getThreadPool()
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.max_line_length = max_line_length
        # A literal may carry a script (PUTSCRIPT, CHECKSCRIPT): the quota, and a little more
        # so that a script just over it gets QUOTA/MAXSIZE rather than a closed connection.
        self.max_literal_size = scripts.max_script_size + 1024
        self.max_redirects = max_redirects
