"""A next-hop SMTP server on loopback for tests of the real server's relay: it offers what a
test asks for (STARTTLS with a certificate of the test's, REQUIRETLS, DSN, SMTPUTF8 ...),
keeps every command it is sent and every message, and runs in a thread of the test process
(``tests/relay/farside.py``'s scripted server runs on the test's own reactor instead)."""

from __future__ import annotations

import socketserver
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class Command:
    line: str
    tls: bool  # sent over TLS


@dataclass
class SinkState:
    plain: list[str]  # EHLO keywords before TLS (STARTTLS added when there is a certificate)
    secure: list[str]  # ... and after it
    context: ssl.SSLContext | None
    refuse_mail: list[str] = field(default_factory=list)  # replies to the next MAILs, in order
    commands: list[Command] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Session(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self) -> None:
        state: SinkState = self.server.state  # type: ignore[attr-defined]
        connection = self.connection
        reader = self.rfile
        tls = False

        def send(line: str) -> None:
            connection.sendall(line.encode() + b"\r\n")

        send("220 mx.sink.test ESMTP sink")
        while True:
            raw = reader.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with state.lock:
                state.commands.append(Command(line, tls))
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                offered = list(state.secure if tls else state.plain)
                if not tls and state.context is not None:
                    offered.append("STARTTLS")
                reply = ["mx.sink.test", *offered]  # the first line names the server
                for i, text in enumerate(reply):
                    send(f"250{'-' if i < len(reply) - 1 else ' '}{text}")
            elif verb == "STARTTLS" and not tls and state.context is not None:
                send("220 2.0.0 go ahead")
                connection = state.context.wrap_socket(connection, server_side=True)
                reader = connection.makefile("rb")
                tls = True
            elif verb == "MAIL":
                with state.lock:
                    refusal = state.refuse_mail.pop(0) if state.refuse_mail else None
                send(refusal or "250 2.1.0 ok")
            elif verb == "RCPT":
                send("250 2.1.5 ok")
            elif verb == "DATA":
                send("354 go on")
                lines = []
                while (part := reader.readline(1 << 20)) not in (b".\r\n", b""):
                    lines.append(part[1:] if part.startswith(b"..") else part)
                with state.lock:
                    state.messages.append(b"".join(lines))
                send("250 2.0.0 queued")
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                return
            elif verb in ("RSET", "NOOP"):
                send("250 2.0.0 ok")
            else:
                send("502 5.5.1 not here")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SinkServer:
    """``SinkServer(["8BITMIME", "DSN"], ["8BITMIME", "DSN", "REQUIRETLS"], cert, key)
    .start()``; ``port``, ``commands``, ``messages``; ``stop()`` when done."""

    def __init__(
        self,
        plain: list[str],
        secure: list[str] | None = None,
        cert: str | None = None,
        key: str | None = None,
    ) -> None:
        context = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        self.state = SinkState(plain, secure if secure is not None else plain, context)
        self._server = _Server(("127.0.0.1", 0), _Session)
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> SinkServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def refuse_next_mail(self, reply: str) -> None:
        with self.state.lock:
            self.state.refuse_mail.append(reply)

    @property
    def commands(self) -> list[Command]:
        with self.state.lock:
            return list(self.state.commands)

    @property
    def messages(self) -> list[bytes]:
        with self.state.lock:
            return list(self.state.messages)

    def lines(self, verb: str) -> list[Command]:
        """The commands starting with ``verb`` (``"MAIL"``, ``"RCPT"``)."""
        return [c for c in self.commands if c.line.upper().startswith(verb)]
