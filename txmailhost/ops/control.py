"""The control channel: ``txmailhost who`` and ``kick USER`` ask the running server.

Sessions live in the server process, so these can't be answered from files like the queue
commands are. The server listens on a UNIX socket, ``DATA/run/control.sock`` (mode 0600:
only its own user and root may connect), for one request per connection, one line each way:

- ``WHO`` → a JSON list of the open sessions: listener, protocol, the logged-in user (or
  null), the client's address, whether TLS is on. A webmail login counts as a session
  (protocol ``web``, the address it logged in from) though it is a cookie, not a connection;
- ``KICK user@example.org`` → ``{"kicked": N}``: each of the user's connections is told so in
  its protocol's words (IMAP ``* BYE``, POP3 ``-ERR``, SMTP ``421``, ManageSieve ``BYE``)
  and closed, and each of their webmail sessions ends, so the browser's next request goes
  to the login page;
- ``LOGOUT user@example.org`` → ``{"ended": N}``: only the user's webmail sessions end
  (``user passwd``: a changed password logs browsers out, not IMAP clients).

The connections are those the listeners' ``LimitedFactory`` already tracks (limits.py), the
webmail sessions those of the web site's ``SessionStore`` (web/sessions.py), handed over by
``service.build``; nothing is added to the protocols. The socket is made in
``startService``, after twistd has dropped privileges, so it belongs to the server's user.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from txmailhost.imap.server import IMAPServer
from txmailhost.pop3.server import POP3Server
from txmailhost.sieve.managesieve import ManageSieveServer
from txmailhost.smtp.server import SMTPServer
from txmailhost.socketpaths import usable

log = Logger()

SOCKET_NAME = "control.sock"
CLOSE_WAIT = 3.0  # seconds a closed session may take to finish its TLS goodbye at shutdown

# What every session is told when the server stops.
_SHUTDOWN = {
    IMAPServer: b"* BYE [UNAVAILABLE] server shutting down\r\n",
    POP3Server: b"-ERR [SYS/TEMP] server shutting down, nothing was deleted\r\n",
    SMTPServer: b"421 4.3.2 server shutting down, try again later\r\n",
    ManageSieveServer: b'BYE (TRYLATER) "server shutting down, try again later"\r\n',
}

# What a kicked session is told, per protocol, before it is closed.
_KICKED = {
    IMAPServer: b"* BYE [UNAVAILABLE] disconnected by the administrator\r\n",
    POP3Server: b"-ERR [SYS/PERM] disconnected by the administrator\r\n",
    SMTPServer: b"421 4.7.0 disconnected by the administrator\r\n",
    ManageSieveServer: b'BYE "disconnected by the administrator"\r\n',
}

# The protocol's name in ``who``, per session class.
_PROTOCOLS = {
    IMAPServer: "imap",
    POP3Server: "pop3",
    SMTPServer: "smtp",
    ManageSieveServer: "managesieve",
}


class NotRunning(ConnectionError):
    """Nothing listens on the control socket: no server runs on this data directory."""


def socket_path(config: Any, slot: int = 0) -> str:
    """The control socket of worker ``slot`` (0, the only one without ``[server] workers``)."""
    name = SOCKET_NAME if slot == 0 else f"control-{slot}.sock"
    return os.path.join(config.data_dir, "run", name)


def socket_paths(config: Any) -> list[str]:
    """Every worker's control socket that exists: ``who`` and ``kick`` ask them all."""
    run = os.path.join(config.data_dir, "run")
    names = os.listdir(run) if os.path.isdir(run) else []
    extra = sorted(n for n in names if n.startswith("control-") and n.endswith(".sock"))
    return [os.path.join(run, SOCKET_NAME)] + [os.path.join(run, n) for n in extra]


def ask_all(config: Any, request: str) -> list[Any]:
    """``request`` to every worker's control socket: the answers of those that run (the
    first, worker 0's, must answer; a socket left by a worker being restarted is skipped)."""
    answers = []
    for index, path in enumerate(socket_paths(config)):
        try:
            answers.append(ask(path, request))
        except ConnectionError:
            if index == 0:
                raise
    return answers


def _session(protocol: Any) -> Any:
    """The protocol under the connection-limit and TLS wrappers."""
    while isinstance(protocol, ProtocolWrapper):
        protocol = protocol.wrappedProtocol
    return protocol


def _user_of(protocol: Any) -> str | None:
    if isinstance(protocol, IMAPServer | POP3Server | ManageSieveServer):
        return protocol.user
    if isinstance(protocol, SMTPServer):
        return protocol.authenticated_as
    return None


class Sessions:
    """The open connections of the listeners ``(label, LimitedFactory)``, and the webmail
    sessions of ``browsers`` ``(label, web.sessions.SessionStore)``."""

    def __init__(
        self, listeners: Sequence[tuple[str, Any]], browsers: Sequence[tuple[str, Any]] = ()
    ) -> None:
        self.listeners = list(listeners)
        self.browsers = list(browsers)

    def _all(self) -> list[tuple[str, Any]]:
        return [
            (label, _session(wrapper))
            for label, factory in self.listeners
            for wrapper in list(factory.protocols)
        ]

    def who(self) -> list[dict[str, Any]]:
        out = []
        for label, protocol in self._all():
            if type(protocol) not in _KICKED or protocol.transport is None:
                continue
            peer = protocol.transport.getPeer()
            out.append(
                {
                    "listener": label,
                    "protocol": _PROTOCOLS[type(protocol)],
                    "user": _user_of(protocol),
                    "client": getattr(peer, "host", str(peer)),
                    "tls": ISSLTransport.providedBy(_transport_of(protocol)),
                }
            )
        for label, store in self.browsers:
            for session in store.live():
                out.append(
                    {
                        "listener": label,
                        "protocol": "web",
                        "user": session.user,
                        "client": session.peer,
                        "tls": True,  # the webmail is served over HTTPS only
                    }
                )
        return out

    async def drain(self, reactor: Any, grace: float) -> None:
        """Shutdown (``service.ServerService``): every session is told goodbye and closed as
        soon as it holds nothing in progress (an SMTP transaction completes and gets its
        reply first; IMAP and POP3 sessions go at once: an IMAP client reconnects, and a POP3
        session that never reached QUIT deletes nothing). After ``grace`` seconds the rest
        are closed anyway. The listeners have stopped accepting before this runs."""
        deadline = reactor.seconds() + grace
        told: dict[int, float] = {}  # protocol -> when it was closed
        while True:
            waiting = 0
            now = reactor.seconds()
            for _label, protocol in self._all():
                transport = _transport_of(protocol)
                if transport is None:
                    continue
                busy = isinstance(protocol, SMTPServer) and protocol.in_transaction
                if busy and now < deadline:
                    waiting += 1
                elif id(protocol) not in told:
                    told[id(protocol)] = now
                    goodbye = _SHUTDOWN.get(type(protocol))  # none for a web page or a scrape
                    if goodbye is not None:
                        transport.write(goodbye)
                    transport.loseConnection()
                elif now - told[id(protocol)] > CLOSE_WAIT and hasattr(
                    transport, "abortConnection"
                ):
                    # a TLS peer that never answers close_notify (an idle HTTP keep-alive
                    # client) would hold the stop for the whole grace period
                    transport.abortConnection()
            if not waiting and not self._open():
                return
            if reactor.seconds() >= deadline + 2:  # closing (TLS goodbyes) takes too long
                return
            await deferLater(reactor, 0.05, lambda: None)

    def _open(self) -> int:
        return sum(len(factory.protocols) for _label, factory in self.listeners)

    def kick(self, user: str) -> int:
        wanted = user.strip().lower()
        kicked = 0
        for _label, protocol in self._all():
            if (_user_of(protocol) or "").lower() != wanted or _transport_of(protocol) is None:
                continue
            protocol.transport.write(_KICKED[type(protocol)])
            protocol.transport.loseConnection()
            kicked += 1
        kicked += self._end_web(wanted, "ended by the administrator")
        if kicked:
            log.info("control: kicked {user} ({n} session(s))", user=wanted, n=kicked)
        return kicked

    def log_out(self, user: str) -> int:
        """End ``user``'s webmail sessions only: their password changed (``user passwd``),
        and a browser's cookie, unlike an IMAP connection, could stay logged in for days
        with the old one (the webmail's own password change does the same)."""
        wanted = user.strip().lower()
        ended = self._end_web(wanted, "password changed")
        if ended:
            log.info("control: logged {user} out ({n} web session(s))", user=wanted, n=ended)
        return ended

    def _end_web(self, wanted: str, why: str) -> int:
        ended = 0
        for _label, store in self.browsers:
            for session in store.live():
                if session.user.lower() == wanted:
                    store.end(session, why)
                    ended += 1
        return ended


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024

    def lineReceived(self, line: bytes) -> None:
        command, _, argument = line.decode("utf-8", "replace").strip().partition(" ")
        sessions: Sessions = self.factory.sessions
        if command.upper() == "WHO":
            answer: Any = sessions.who()
        elif command.upper() == "KICK" and argument:
            answer = {"kicked": sessions.kick(argument)}
        elif command.upper() == "LOGOUT" and argument:
            answer = {"ended": sessions.log_out(argument)}
        else:
            answer = {"error": "expected WHO, KICK user@domain or LOGOUT user@domain"}
        self.sendLine(json.dumps(answer).encode("utf-8"))
        self.transport.loseConnection()


class ControlService(Service):
    """Listens on ``DATA/run/control.sock`` while the server runs."""

    def __init__(self, reactor: Any, path: str, sessions: Sessions) -> None:
        self.reactor = reactor
        self.path = path
        self.sessions = sessions
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        factory = Factory.forProtocol(ControlProtocol)
        factory.noisy = False
        factory.sessions = self.sessions  # type: ignore[attr-defined]
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        try:
            address = usable(self.path)
        except OSError as e:
            self._failed(Failure(e))
            return
        endpoint = UNIXServerEndpoint(self.reactor, address, mode=0o600, wantPID=True)
        endpoint.listen(factory).addCallbacks(self._listening, self._failed)

    def _listening(self, port: Any) -> None:
        self.port = port

    def _failed(self, failure: Any) -> None:
        log.error("control: can't listen on {path}: {why}; 'txmailhost who' and 'kick' won't"
                  " work", path=self.path, why=failure.getErrorMessage())  # fmt: skip

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


def ask(path: str, request: str, timeout: float = 10.0) -> Any:
    """Send one request to a running server's control socket; its JSON answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(usable(path))
            client.sendall(request.encode("utf-8") + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"the server is not running (nothing answers on {path})") from None
    except OSError as e:
        raise ConnectionError(f"{path}: {e.strerror or e}") from None
    return json.loads(b"".join(chunks) or b"null")


# -- the commands ------------------------------------------------------------------------------


def register(commands: Any, with_config: Any) -> None:
    """``txmailhost who`` and ``txmailhost kick USER``."""
    who = commands.add_parser("who", help="sessions open now on the running server")
    who.add_argument("--user", help="only this user's sessions")
    who.add_argument("--json", action="store_true", help="print JSON for scripts")
    who.set_defaults(run=with_config(_who))
    kick = commands.add_parser("kick", help="close every session of a user on the running server")
    kick.add_argument("user")
    kick.add_argument("--json", action="store_true", help="print JSON for scripts")
    kick.set_defaults(run=with_config(_kick))


def _who(args: Any, config: Any) -> int:
    from txmailhost.ops.mailbox_admin import emit

    sessions = [s for answer in ask_all(config, "WHO") for s in answer]
    if args.user:
        sessions = [s for s in sessions if (s["user"] or "").lower() == args.user.lower()]

    def lines() -> list[str]:
        out = [f"{'USER':<32} {'PROTOCOL':<8} {'LISTENER':<12} {'CLIENT':<40} TLS"]
        for s in sorted(sessions, key=lambda s: (s["user"] or "~", s["listener"])):
            out.append(
                f"{s['user'] or '-':<32} {s['protocol']:<8} {s['listener']:<12} "
                f"{s['client']:<40} {'yes' if s['tls'] else 'no'}"
            )
        return out

    emit(args, sessions, lines)
    return 0


def end_sessions(config: Any, users: Sequence[str]) -> int:
    """``KICK`` each of ``users`` on the running server, if one runs; how many sessions
    ended. For ``user del`` and ``domain del``: a session that outlived its account would
    find its mail gone under it. Raises ``ConnectionError`` when a server runs but can't be
    asked (another user's socket)."""
    ended = 0
    for user in users:
        try:
            answers = ask_all(config, f"KICK {user}")
        except NotRunning:
            return ended
        ended += sum(a.get("kicked", 0) for a in answers if isinstance(a, dict))
    return ended


def log_out_web(config: Any, user: str) -> int:
    """``LOGOUT`` ``user`` on the running server, if one runs: how many webmail sessions
    ended. Raises ``ConnectionError`` when a server runs but can't be asked."""
    try:
        answers = ask_all(config, f"LOGOUT {user}")
    except NotRunning:
        return 0
    return sum(a.get("ended", 0) for a in answers if isinstance(a, dict))


def _kick(args: Any, config: Any) -> int:
    from txmailhost.ops.mailbox_admin import emit

    answers = ask_all(config, f"KICK {args.user}")
    answer = {"kicked": sum(a.get("kicked", 0) for a in answers)}
    emit(args, answer, lambda: [f"kicked {answer['kicked']} session(s) of {args.user}"])
    return 0 if answer.get("kicked") else 1


def _transport_of(protocol: Any) -> Any:
    """The connection of a session's protocol; twisted.web's HTTP channel is a wrapper that
    keeps it on the channel inside (``_GenericHTTPChannelProtocol._channel``)."""
    transport = getattr(protocol, "transport", None)
    if transport is None:
        transport = getattr(getattr(protocol, "_channel", None), "transport", None)
    return transport
